"""``after export-codec``: write a trained codec as an nn~ TorchScript file (encode/decode/forward)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", help="codec run folder (its latest checkpoint), a .ckpt file or a released model (default)"
    )
    parser.add_argument("--out", required=True, help="TorchScript file to write, e.g. codec.ts")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--streaming",
        dest="streaming",
        action="store_true",
        default=True,
        help="keep context between calls, for nn~ and live use (default)",
    )
    mode.add_argument(
        "--offline",
        dest="streaming",
        action="store_false",
        help="process every call from silence, e.g. to encode datasets",
    )


def run(args: argparse.Namespace) -> int:
    from after.export.codec_export import export_codec

    export_codec(args.run_dir, args.out, streaming=args.streaming)
    return 0
