"""``after bench``: speed of the streaming chain per component, real-time factor and latency."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="released model folder, run folder or name (default: a preset)")
    parser.add_argument("--preset", default="base", help="random-weight preset: base or tiny (default base)")
    parser.add_argument("--json", help="write the records (one per configuration) to this JSON file")
    parser.add_argument("--markdown", help="write the markdown report to this file")
    parser.add_argument("--plot", help="write the RTF plot to this PNG file")
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    parser.add_argument("--steps", default="1,2,4,8,16", help="sampling steps (default 1,2,4,8,16)")
    parser.add_argument("--chunks", default="1,2,4", help="latent frames per block (default 1,2,4)")
    parser.add_argument("--modes", default="audio,midi", help="audio and/or midi (default both)")
    parser.add_argument(
        "--int8", action="store_true", help="also measure int8 weights (and their error vs fp32)"
    )
    parser.add_argument("--eager", action="store_true", help="run the Python engine instead of TorchScript")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (median)")
    parser.add_argument("--no-export", action="store_true", help="skip the nn~ export size")
    parser.add_argument("--quick", action="store_true", help="a small subset (tiny preset unless --model)")


def run(args: argparse.Namespace) -> int:
    from after.eval.bench import BenchOptions, parse_int_list, run_bench
    from after.eval.bench_report import markdown_report, plot_report, write_json

    settings = {
        "model": args.model,
        "preset": args.preset,
        "threads": parse_int_list(args.threads, "threads"),
        "steps": parse_int_list(args.steps, "steps"),
        "chunks": parse_int_list(args.chunks, "chunks"),
        "modes": tuple(m.strip() for m in args.modes.split(",") if m.strip()),
        "precisions": ("fp32", "int8") if args.int8 else ("fp32",),
        "backend": "eager" if args.eager else "script",
        "repeats": args.repeats,
        "export_size": not args.no_export,
    }
    if args.quick:
        given = {"model": args.model, "modes": settings["modes"], "precisions": settings["precisions"],
                 "backend": settings["backend"]}  # fmt: skip
        if args.preset != "base":
            given["preset"] = args.preset
        options = BenchOptions.quick(**given)
    else:
        options = BenchOptions(**settings)
    result = run_bench(options)
    report = markdown_report(result)
    print(report)
    if args.json:
        write_json(result, args.json)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(report)
    if args.plot:
        plot_report(result, args.plot)
    return 0
