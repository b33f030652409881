"""``after synth OUT_DIR --minutes M --seed S``: render a paired MIDI/audio corpus (argument parsing only)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "out_dir", metavar="OUT_DIR", help="folder for <id>.flac + <id>.mid stems and manifest.jsonl"
    )
    parser.add_argument("--minutes", type=float, required=True, help="stop once this much audio is rendered")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the plan; same seed, same files (default 0)"
    )
    parser.add_argument(
        "--soundfonts",
        nargs="+",
        default=["FluidR3_GM", "TimGM6mb"],
        metavar="NAME_OR_PATH",
        help="FluidR3_GM and/or TimGM6mb (default both); a .sf2/.sf3 path: held-out evaluation only",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--sample-rate", type=int, default=44100, help="Hz (default 44100)")
    parser.add_argument(
        "--split",
        choices=["train", "heldout"],
        default="train",
        help="train (default) never renders the ~10%% held-out pieces; heldout renders only them",
    )
    parser.add_argument(
        "--families",
        nargs="+",
        default=None,
        metavar="FAMILY",
        help="draw instruments from these General MIDI families only (default: every pitched family)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    import logging

    from after.data.synth import SynthConfig, synthesize

    config = SynthConfig(
        minutes=args.minutes,
        seed=args.seed,
        soundfonts=tuple(args.soundfonts),
        sample_rate=args.sample_rate,
        split=args.split,
        families=tuple(args.families or ()),
    )
    records = synthesize(args.out_dir, config, workers=args.workers, progress=not args.no_progress)
    seconds = sum(r["duration_s"] for r in records)
    families = len({r["family"] for r in records})
    logging.getLogger("after").info(
        "synth: %d stems, %.1f min of audio, %d instrument families -> %s",
        len(records),
        seconds / 60,
        families,
        args.out_dir,
    )
    return 0
