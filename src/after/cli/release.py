"""``after release``: turn a diffusion run folder into a released model folder (safetensors + JSON)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="diffusion run folder made by `after train`, or a released model folder (which keeps its "
        "timbre map unless --dataset is given)",
    )
    parser.add_argument("--out", required=True, help="released model folder to write (created)")
    parser.add_argument(
        "--name", default=None, help="model name stored in model.json (default: --out's name)"
    )
    parser.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    parser.add_argument(
        "--dataset",
        default=None,
        help="dataset folder whose chunks fit the 2-D timbre map (default: synthetic)",
    )
    parser.add_argument("--map-steps", type=int, default=2000, help="optimiser steps of the timbre-map fit")
    parser.add_argument("--steps", type=int, default=None, help="default sampling steps (default: the run's)")
    parser.add_argument(
        "--guidance-timbre", type=float, default=None, help="default timbre guidance (default: the run's)"
    )
    parser.add_argument(
        "--guidance-structure",
        type=float,
        default=None,
        help="default structure guidance (default: the run's)",
    )
    parser.add_argument(
        "--decoder-from",
        default=None,
        help="ship the decoder of this codec run, fine-tuned from the run's codec with "
        "`after train-codec --decoder-only` (its encoder must be identical)",
    )
    parser.add_argument(
        "--share-codec-with",
        default=None,
        metavar="MODEL_DIR",
        help="released model folder with the same codec: use its codec file instead of a copy "
        "(the two folders must then stay side by side)",
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from after.runtime.bundle import release_run

    folder = release_run(
        args.run_dir, args.out, name=args.name, fp16=args.fp16, dataset=args.dataset,
        map_steps=args.map_steps, steps=args.steps, guidance_timbre=args.guidance_timbre,
        guidance_structure=args.guidance_structure, decoder_from=args.decoder_from,
        share_codec_with=args.share_codec_with,
    )  # fmt: skip
    logging.getLogger("after").info("released %s", folder)
    return 0
