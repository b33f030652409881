"""``after demo``: example inputs through the model(s) -> audio + one HTML page to listen to."""

from __future__ import annotations

import argparse

from after.runtime.cpu_threads import DEFAULT_INFERENCE_THREADS, THREADS_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="after-demo", help="output folder (default: after-demo)")
    parser.add_argument(
        "--model", help="audio-to-audio (or MIDI) model name or folder (default: the embedded model)"
    )
    parser.add_argument("--midi-model", help="MIDI-to-audio model name or folder (default: the embedded one)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    parser.add_argument("--guidance-timbre", type=float, help="timbre guidance scale (default: the model's)")
    parser.add_argument(
        "--guidance-structure", type=float, help="structure guidance scale (default: the model's)"
    )
    parser.add_argument("--chunk", type=int, help="latent frames per block (default: the model's chunk)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and the noise (default 0)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each phrase (default 4)")
    parser.add_argument("--phrases", type=int, default=2, help="structure phrases (default 2)")
    parser.add_argument("--references", type=int, default=3, help="timbre references (default 3)")
    parser.add_argument("--format", choices=("wav", "flac"), default="wav", help="audio format (default wav)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--threads", type=int, default=DEFAULT_INFERENCE_THREADS, help=THREADS_HELP)


def run(args: argparse.Namespace) -> int:
    import logging

    from after.runtime.cpu_threads import inference_threads
    from after.runtime.demo import DemoConfig, demo_command

    config = DemoConfig(
        seed=args.seed,
        steps=args.steps,
        guidance_timbre=args.guidance_timbre,
        guidance_structure=args.guidance_structure,
        chunk=args.chunk,
        phrase_seconds=args.seconds,
        n_phrases=args.phrases,
        n_references=args.references,
        audio_format=args.format,
    )
    with inference_threads(args.threads):
        page = demo_command(args.out, args.model, args.midi_model, config, progress=not args.no_progress)
    logging.getLogger("after").info("open %s in a browser", page)
    return 0
