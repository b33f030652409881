"""``after encode``: add codec latents to every chunk of a dataset (resumable)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="dataset folder made by `after prepare`")
    parser.add_argument(
        "--codec",
        required=True,
        help="codec run folder, checkpoint, released model (e.g. default) or TorchScript file (.ts)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="chunks encoded per batch")
    parser.add_argument(
        "--dtype", default="float16", choices=["float16", "float32"], help="stored latent type"
    )
    parser.add_argument(
        "--sample-rate", type=int, default=None, help="rate of a TorchScript codec that does not state it"
    )
    parser.add_argument("--no-resample", action="store_true", help="refuse a dataset at another sample rate")
    parser.add_argument(
        "--twins",
        action="store_true",
        help="also store structure twins: each chunk's notes played by an instrument of another family "
        "(FluidSynth, training soundfonts), encoded, for `after train --structure-twins`",
    )
    parser.add_argument("--twin-seed", type=int, default=0, help="seed of the twins' instrument choices")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for the codec (default: torch's, every core; batches gain from more threads, "
        "but give 1 beside a training run: more threads than free cores slow it many times over)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    import contextlib
    import logging

    from after.codec.load import load_codec
    from after.data.encode import encode_dataset
    from after.runtime.cpu_threads import inference_threads

    # torch's own count unless --threads is given (a bad count is refused before the codec loads)
    with contextlib.nullcontext() if args.threads is None else inference_threads(args.threads):
        codec = load_codec(args.codec, sample_rate=args.sample_rate)
        count = encode_dataset(
            args.data,
            codec,
            batch_size=args.batch_size,
            dtype=args.dtype,
            resample=not args.no_resample,
            progress=not args.no_progress,
        )
        logging.getLogger("after").info(
            "%d chunk(s) encoded; latents stored as latents/%s", count, codec.codec_id
        )
        if args.twins:
            from after.data.twins import add_structure_twins

            add_structure_twins(
                args.data, codec, batch_size=args.batch_size, dtype=args.dtype, seed=args.twin_seed,
                progress=not args.no_progress,
            )  # fmt: skip
    return 0
