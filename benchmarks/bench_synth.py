"""Speed of ``after synth``: seconds of rendered audio per second of wall time, 1 and 2 workers.

Usage: ``.venv/bin/python benchmarks/bench_synth.py [--minutes 10] [--seed 0] [--workers 1 2]``

Each run renders a fresh corpus into a temporary folder (nothing is reused), from the start of the
call (worker start-up, music21 parsing and soundfont loading included) to the written manifest.
A second line per run renders procedural material only, which isolates FluidSynth + file writing.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from after.data.synth import SynthConfig, synthesize


def measure(minutes: float, seed: int, workers: int, music21_share: float) -> tuple[float, float, int]:
    """Returns (audio seconds, wall seconds, stems) of one fresh render."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        config = SynthConfig(minutes=minutes, seed=seed, music21_share=music21_share)
        records = synthesize(folder, config, workers=workers, progress=False)
        wall = time.perf_counter() - start
    return sum(r["duration_s"] for r in records), wall, len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"{'material':<22} {'workers':>7} {'audio (s)':>10} {'wall (s)':>9} {'x RT':>6} {'stems':>6}")
    for label, share in (("default mix", SynthConfig(minutes=1).music21_share), ("procedural only", 0.0)):
        for workers in args.workers:
            audio, wall, stems = measure(args.minutes, args.seed, workers, share)
            print(f"{label:<22} {workers:>7} {audio:>10.1f} {wall:>9.2f} {audio / wall:>6.1f} {stems:>6}")


if __name__ == "__main__":
    main()
