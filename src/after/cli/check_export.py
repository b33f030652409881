"""``after check-export``: load a .ts file the way nn~ does and report what would break."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="exported model NAME.ts")
    parser.add_argument("--buffer", type=int, default=4096, help="nn~ buffer size to test (default 4096)")


def run(args: argparse.Namespace) -> int:
    from after.export.model_export import check_model_file

    problems, notes = check_model_file(args.file, buffer_size=args.buffer)
    for note in notes:
        log.info("%s", note)
    for problem in problems:
        log.error("%s: %s", args.file, problem)
    if problems:
        log.error("%s: %d problem(s): nn~ cannot use this file as is", args.file, len(problems))
        return 1
    log.info("%s: passes the nn~ contract check", args.file)
    return 0
