"""``after prepare IN_DIR DATASET_DIR``: turn a folder of audio (+ MIDI side-cars) into a dataset."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("in_dir", metavar="IN_DIR", help="folder of audio files (searched recursively)")
    parser.add_argument("dataset_dir", metavar="DATASET_DIR", help="dataset folder (created, or extended)")
    parser.add_argument("--sample-rate", type=int, default=44100, help="dataset sample rate in Hz")
    parser.add_argument("--chunk-seconds", type=float, default=8.0, help="length of each chunk in seconds")
    parser.add_argument(
        "--midi",
        choices=("auto", "sidecar", "transcribe", "none"),
        default="auto",
        help="where notes come from: .mid/.midi side-cars next to the audio, basic-pitch transcription, "
        "or none; auto = sidecar when any side-car exists, else none",
    )
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per core)")
    parser.add_argument(
        "--allow-upsampling",
        action="store_true",
        help="accept files whose sample rate is below the dataset's (they are upsampled)",
    )
    parser.add_argument(
        "--silence-db",
        type=float,
        default=-60.0,
        help="chunks quieter than this RMS level (dBFS) are skipped",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    import logging

    from after.data.prepare import PrepareOptions, prepare

    options = PrepareOptions(
        sample_rate=args.sample_rate,
        chunk_seconds=args.chunk_seconds,
        midi=args.midi,
        workers=args.workers,
        allow_upsampling=args.allow_upsampling,
        silence_db=args.silence_db,
    )
    summary = prepare(args.in_dir, args.dataset_dir, options, progress=not args.no_progress)
    if summary.failed:
        return 1
    if summary.dataset_chunks == 0:
        logging.getLogger("after").error("%s: no usable audio; the dataset is empty", args.in_dir)
        return 1
    return 0
