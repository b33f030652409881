"""Throughput of ``after prepare``: seconds of audio turned into dataset chunks per wall-clock second.

Generates a folder of FLAC files with MIDI side-cars (harmonic tones with noise, so that FLAC
cannot compress them away), then prepares it into fresh datasets with 1 and 2 workers.

    .venv/bin/python benchmarks/bench_prepare.py [--files 24] [--seconds 30] [--source-rate 48000]

A source rate other than the dataset's 44.1 kHz includes resampling in the measurement.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from after.data.midi import Note, save_notes
from after.data.prepare import PrepareOptions, prepare


def make_folder(folder: Path, n_files: int, seconds: float, rate: int) -> float:
    """Write ``n_files`` FLAC files of ``seconds`` each; returns the total audio duration in seconds."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * rate)) / rate
    for i in range(n_files):
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        audio = 0.2 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)) + 0.01 * rng.standard_normal(len(t))
        sf.write(folder / f"take{i:03d}.flac", audio.astype(np.float32), rate)
        notes = [
            Note(60 + k % 12, 80, 0.5 * k, 0.5 * k + 0.4, program=8 * (i % 16))
            for k in range(int(2 * seconds))
        ]
        save_notes(folder / f"take{i:03d}.mid", notes)
    return n_files * seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--source-rate", type=int, default=48000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        total = make_folder(root / "in", args.files, args.seconds, args.source_rate)
        print(
            f"{args.files} FLAC files x {args.seconds:g} s at {args.source_rate} Hz -> 44100 Hz, 8 s chunks"
        )
        for workers in args.workers:
            out = root / f"data{workers}"
            start = time.perf_counter()
            summary = prepare(root / "in", out, PrepareOptions(workers=workers))
            elapsed = time.perf_counter() - start
            size_mb = sum(p.stat().st_size for p in out.iterdir()) / 1e6
            print(
                f"workers={workers}: {summary.chunks_added} chunks, {elapsed:.2f} s wall, "
                f"{total / elapsed:.0f} s of audio per s, dataset {size_mb:.1f} MB"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
