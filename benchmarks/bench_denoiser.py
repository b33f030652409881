"""Speed of one streaming denoiser step (guidance batch 3, one chunk of K frames) on the CPU.

Usage: .venv/bin/python benchmarks/bench_denoiser.py [--presets tiny base] [--threads 1 2] [--repeats 50]

For each preset and thread count it reports the median time of
* ``step``: one denoiser call on the 3-way guidance batch for one chunk, warm KV cache, with the
  per-step conditioning cache in use (the AdaLN vectors are reused, as in a real stream);
* ``step_nocache``: the same call with the conditioning recomputed (what a cold step costs);
* ``chunk(N)``: one whole ``generate_chunk`` call with N Euler steps;
and the real-time factor of ``chunk(N)`` against the chunk's duration (K frames at 2048 samples per
frame, 44.1 kHz).
"""

import argparse
import dataclasses
import statistics
import time

import torch

from after.diffusion.config import diffusion_preset
from after.diffusion.model import build_model

HOP_SECONDS = 2048 / 44100


def _median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def bench(preset: str, threads: int, repeats: int, n_steps: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    config = diffusion_preset(preset)
    config = dataclasses.replace(config, denoiser=dataclasses.replace(config.denoiser, zero_init=False))
    torch.manual_seed(0)
    model = build_model(config).eval()
    k = config.denoiser.chunk_size
    d = config.latent_dim
    x = torch.randn(3, d, k)
    t = torch.full((3,), 0.5)
    c = torch.rand(3, config.timbre_dim)
    s = torch.rand(3, config.structure_dim, k)
    den = model.denoiser
    results: dict[str, float] = {}
    with torch.inference_mode():
        model.start_stream(1)
        for _ in range(config.denoiser.window // k + 1):  # fill the cache of step 0
            den(x, t, c, s, 0)
        results["step"] = _median_ms(lambda: den(x, t, c, s, 0), repeats)

        def cold() -> None:
            den.cond_valid.zero_()
            den(x, t, c, s, 0)

        results["step_nocache"] = _median_ms(cold, repeats)
        noise, c1, s1 = x[:1], c[:1], s[:1]
        results[f"chunk({n_steps})"] = _median_ms(
            lambda: model.generate_chunk(noise, c1, s1, n_steps, 1.5, 1.0), max(5, repeats // 5)
        )
        model.stop_stream()
    results["rtf"] = results[f"chunk({n_steps})"] / 1000.0 / (k * HOP_SECONDS)
    results["K"] = k
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    print(f"torch {torch.__version__}; times are medians in ms; batch 3 (guidance)")
    print(f"{'preset':>8} {'K':>2} {'threads':>7} {'step':>8} {'step_nocache':>13} {'chunk':>9} {'RTF':>6}")
    for preset in args.presets:
        for threads in args.threads:
            r = bench(preset, threads, args.repeats, args.steps)
            print(
                f"{preset:>8} {r['K']:>2} {threads:>7} {r['step']:>8.2f} {r['step_nocache']:>13.2f} "
                f"{r[f'chunk({args.steps})']:>9.2f} {r['rtf']:>6.3f}"
            )


if __name__ == "__main__":
    main()
