"""``after transfer``: timbre reference + structure (audio or MIDI) -> audio file, offline."""

from __future__ import annotations

import argparse

from after.runtime.cpu_threads import DEFAULT_INFERENCE_THREADS, THREADS_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timbre", help="timbre reference audio file (any format)")
    parser.add_argument("--structure", required=True, help="structure: audio file, or .mid for MIDI models")
    parser.add_argument("--out", required=True, help="output .wav or .flac (at the model's sample rate)")
    parser.add_argument("--model", help="model name or folder (default: the embedded default model)")
    parser.add_argument("--steps", type=int, help="sampling steps (>= 1)")
    parser.add_argument("--guidance-timbre", type=float, help="timbre guidance scale (>= 0)")
    parser.add_argument("--guidance-structure", type=float, help="structure guidance scale (>= 0)")
    parser.add_argument(
        "--timbre-vector", metavar="V1,...", help="timbre given by hand: ZT comma-separated values"
    )
    parser.add_argument(
        "--map-xy", metavar="X,Y", help="timbre from a point of the 2-D map, x and y in [-1, 1]"
    )
    parser.add_argument("--chunk", type=int, help="latent frames per block (a multiple of the model's chunk)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--tail", type=float, default=1.0, help="MIDI: seconds added after the last note")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights: 2-3x faster per block; output within 2-3 %% (relative L2) of fp32",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--threads", type=int, default=DEFAULT_INFERENCE_THREADS, help=THREADS_HELP)
    parser.add_argument(
        "--script",
        action="store_true",
        help="run the TorchScript engine (same output, faster per block; a few seconds to compile)",
    )


def run(args: argparse.Namespace) -> int:
    from after.runtime.cpu_threads import inference_threads
    from after.runtime.transfer import transfer_files

    with inference_threads(args.threads):
        transfer_files(
            structure=args.structure,
            out=args.out,
            timbre=args.timbre,
            model=args.model,
            steps=args.steps,
            guidance_timbre=args.guidance_timbre,
            guidance_structure=args.guidance_structure,
            timbre_vector=args.timbre_vector,
            map_xy=args.map_xy,
            chunk=args.chunk,
            seed=args.seed,
            tail_s=args.tail,
            int8=args.int8,
            scripted=args.script,
            progress=not args.no_progress,
        )
    return 0
