"""Per-block cost of the Python pipelines (what `after live` / `after transfer` run), eager vs scripted.

Usage: ``.venv/bin/python benchmarks/bench_fast_runtime.py [--preset base] [--chunk 1] [--steps 4]
[--blocks 20] [--modes audio,midi] [--precisions int8,fp32] [--sizes]``

Times ``pipeline.process(block)`` (random-weight preset bundle, denoiser chunk K = ``--chunk``,
guidance 1.5 / 1.2, one torch thread) after the KV-cache windows are full: median over ``--blocks``
calls; RTF = median / block duration. ``--sizes`` also writes the nn~ files (fp32 and int8) and
prints their size against the weights they hold.
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from after.eval.bench import GUIDANCE, preset_bundle
from after.export.model_export import ExportedAfter
from after.runtime.pipeline import build_pipeline


def time_process(pipeline, blocks: int, warmup: int) -> float:
    rng = np.random.default_rng(0)
    channels = max(pipeline.input_channels, 0)
    block = (0.3 * rng.standard_normal((channels, pipeline.block_size))).astype(np.float32)
    pipeline.reset()
    for _ in range(warmup):
        pipeline.process(block)
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        pipeline.process(block)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--chunk", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--modes", default="audio,midi")
    parser.add_argument("--precisions", default="int8,fp32")
    parser.add_argument("--sizes", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| mode | weights | chunk | steps | engine | ms per block | RTF |")
    print("|---|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        bundle = preset_bundle(args.preset, mode, args.chunk)
        block_ms = 1000.0 * args.chunk * bundle.hop / bundle.sample_rate
        for precision in args.precisions.split(","):
            pipeline = build_pipeline(
                bundle,
                chunk=args.chunk,
                steps=args.steps,
                guidance_timbre=GUIDANCE[0],
                guidance_structure=GUIDANCE[1],
                int8=precision == "int8",
            )
            warmup = bundle.diffusion_config.denoiser.window // args.chunk + 2
            for engine in ("eager", "scripted"):
                if engine == "scripted":
                    start = time.perf_counter()
                    pipeline.use_script()
                    print(f"<!-- scripting + warm-up: {time.perf_counter() - start:.1f} s -->")
                ms = time_process(pipeline, args.blocks, warmup)
                row = f"| {mode} | {precision} | {args.chunk} | {args.steps} | {engine} | {ms:.1f} |"
                print(f"{row} {ms / block_ms:.2f} |", flush=True)
    if args.sizes:
        for mode in args.modes.split(","):
            bundle = preset_bundle(args.preset, mode, args.chunk)
            for int8 in (False, True):
                module = ExportedAfter(bundle, chunk=args.chunk, int8=int8)
                with tempfile.TemporaryDirectory() as folder:
                    path = os.path.join(folder, "model.ts")
                    module.export(path)
                    size = os.path.getsize(path)
                weights = module.engine.weight_bytes()
                print(
                    f"{mode} {'int8' if int8 else 'fp32'}: file {size / 1e6:.1f} MB, "
                    f"weights {weights / 1e6:.1f} MB ({100 * (size / weights - 1):+.1f} %)"
                )


if __name__ == "__main__":
    main()
