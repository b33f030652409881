"""``after export``: write a model as an nn~ TorchScript file (NAME.ts) plus its 2-D timbre map (NAME.png)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        nargs="?",
        help="released model folder, diffusion run folder or name (default: embedded model)",
    )
    parser.add_argument("--out", required=True, help="output file NAME.ts (NAME.png is written next to it)")
    parser.add_argument(
        "--midi", action="store_true", help="the model must be a MIDI model (voices as inputs)"
    )
    parser.add_argument(
        "--voices", type=int, default=8, help="MIDI: polyphony, 2 inputs per voice (default 8)"
    )
    parser.add_argument(
        "--chunk", type=int, help="latent frames of the smallest buffer (default: model's chunk)"
    )
    parser.add_argument(
        "--data", help="dataset folder whose timbres place the 2-D map (default: test signals)"
    )
    parser.add_argument("--map-steps", type=int, default=2000, help="training steps of the 2-D map")
    parser.add_argument("--seed", type=int, default=0, help="noise seed stored in the file")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights: 2-3x faster per block, a third of the file size; output within 2-3 %% "
        "(relative L2) of fp32",
    )


def run(args: argparse.Namespace) -> int:
    from after.export.model_export import export_files

    export_files(
        args.model,
        args.out,
        midi=args.midi,
        n_voices=args.voices,
        chunk=args.chunk,
        dataset=args.data,
        map_steps=args.map_steps,
        seed=args.seed,
        int8=args.int8,
    )
    return 0
