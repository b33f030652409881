"""The ``after`` command: a table of sub-commands, each in its own module of :mod:`after.cli`.

A sub-command module defines ``add_arguments(parser)`` and ``run(args) -> int``. It imports heavy
libraries (torch, ...) inside ``run`` only, so that ``after --help`` stays instant. No logic here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from after import __version__
from after.errors import AfterError

# name -> (module under after.cli, one-line purpose). Keep in the order a user meets them.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "render a paired MIDI/audio corpus with FluidSynth"),
    "prepare": ("prepare", "turn a folder of audio (+ MIDI side-cars) into an lmdb dataset"),
    "info": ("info", "summarise a dataset: chunks, hours, instrument families, skipped files"),
    "train-codec": ("train_codec", "train the streaming audio codec on a dataset"),
    "export-codec": ("export_codec", "export a trained codec as an nn~ TorchScript file"),
    "encode": ("encode", "add codec latents to every chunk of a dataset (resumable)"),
    "train": ("train", "train the diffusion model on a dataset's codec latents"),
    "release": ("release", "write a trained run as a released model folder (safetensors + JSON)"),
    "transfer": ("transfer", "timbre reference + structure (audio or MIDI) -> audio file, offline"),
    "export": ("export", "export a model as an nn~ TorchScript file with its 2-D timbre map"),
    "check-export": ("check_export", "check an exported .ts file the way nn~ loads it"),
    "live": ("live", "run a model in real time from a sound card, MIDI port and OSC"),
    "demo": ("demo", "render example inputs through the model(s) into audio and one HTML page"),
    "eval": ("eval", "score a model on held-out triplets: metrics, copy rows, pass/fail checks"),
    "bench": ("bench", "measure streaming speed per component: real-time factor and latency"),
}

log = logging.getLogger("after")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="after",
        description="AFTER: real-time timbre and structure transfer with a streaming latent diffusion model.",
    )
    parser.add_argument("--version", action="version", version=f"after {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="show warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module_name, purpose) in COMMANDS.items():
        module = importlib.import_module(f"after.cli.{module_name}")
        sub_parser = sub.add_parser(name, help=purpose, description=purpose)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``after`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except AfterError as error:
        log.error("%s", error)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
