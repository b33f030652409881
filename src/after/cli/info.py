"""``after info DATASET_DIR [--json]``: summarise a dataset made by ``after prepare``."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset_dir", metavar="DATASET_DIR", help="dataset folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from after.data.summary import describe_dataset, format_description

    description = describe_dataset(args.dataset_dir)
    text = json.dumps(description, indent=2) if args.json else "\n".join(format_description(description))
    sys.stdout.write(text + "\n")
    return 0
