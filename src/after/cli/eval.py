"""``after eval``: the evaluation protocol on held-out triplets, with a pass/fail table of checks."""

from __future__ import annotations

import argparse

from after.runtime.cpu_threads import DEFAULT_INFERENCE_THREADS, THREADS_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model name or folder (default: the embedded default model)")
    parser.add_argument("--midi-model", help="a MIDI model to evaluate next to the audio model")
    parser.add_argument("--cases", default="40", help="held-out triplets (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the triplets and the noise (default 0)")
    parser.add_argument(
        "--clip-seconds", type=float, default=8.0, help="seconds of notes per triplet (default 8)"
    )
    parser.add_argument("--steps", type=int, help="sampling steps (default: each model's own)")
    parser.add_argument(
        "--timbre-renders", type=int, default=6, help="renders per program to train timbre-ID (default 6)"
    )
    parser.add_argument("--report", default="eval-report", help="folder for report.md, plots and eval.json")
    parser.add_argument("--json", help="also write the result (rows, summary, checks) to this JSON file")
    parser.add_argument("--model-card", metavar="PATH", help="write a MODEL_CARD.md for the model here")
    parser.add_argument("--training-run", help="the model's diffusion run folder (facts for the model card)")
    parser.add_argument(
        "--int8", action="store_true", help="run the models with int8 weights (compare with an fp32 run)"
    )
    parser.add_argument(
        "--codec",
        action="append",
        default=[],
        metavar="PATH",
        help="also score this codec's reconstructions (run folder, checkpoint, released model or .ts), "
        "as a row 'codec:PATH'; repeat to compare codec checkpoints",
    )
    parser.add_argument("--threads", type=int, default=DEFAULT_INFERENCE_THREADS, help=THREADS_HELP)
    parser.add_argument(
        "--no-transcription", action="store_true", help="skip note/onset F1 (no basic-pitch transcription)"
    )


def run(args: argparse.Namespace) -> int:
    from after.eval.checks import checks_table
    from after.eval.protocol import ProtocolOptions, parse_cases
    from after.eval.protocol_report import checks_of, run_eval
    from after.runtime.cpu_threads import inference_threads

    options = ProtocolOptions(
        cases=parse_cases(args.cases),
        seed=args.seed,
        clip_s=args.clip_seconds,
        transcription=not args.no_transcription,
        steps=args.steps,
        timbre_per_program=args.timbre_renders,
        int8=args.int8,
        codecs=tuple(args.codec),
    )
    with inference_threads(args.threads):
        result = run_eval(
            args.model, args.midi_model, options, args.report, args.json, args.model_card, args.training_run
        )
    for notice in result["notices"]:
        print(f"notice: {notice}")
    print(checks_table(checks_of(result)))
    print(f"report: {args.report}/report.md")
    return 0
