"""Overhead of the live host around a pipeline (not the model's cost).

Measures, with a pass-through pipeline so that only the host is timed:
- ring buffer: write + read of one 1024-frame callback;
- file mode: host time per block (reading, voices, parameter queue, writing), audio and MIDI;
- voice allocation: render() of one block with an 8-note chord changing every block.

Run: .venv/bin/python benchmarks/bench_live.py
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from after.data.audio import save_audio
from after.runtime.live import LiveHost
from after.runtime.ring import AudioRing
from after.runtime.voices import VoiceAllocator

RATE = 44100


class PassThrough:
    """Audio or MIDI pipeline that costs (almost) nothing."""

    latency_samples = 0

    def __init__(self, mode: str, hop_length: int = 512, frames: int = 4) -> None:
        self.mode = mode
        self.input_channels = 1 if mode == "audio" else 0
        self.sample_rate, self.hop_length, self.n_voices = RATE, hop_length, 8
        self.block_size = hop_length * frames
        self._zeros = np.zeros((1, self.block_size), dtype=np.float32)

    def process(self, block, notes):
        return block if self.mode == "audio" else self._zeros

    def set_parameter(self, name, value):
        pass

    def parameters(self):
        return {}

    def reset(self):
        pass


def bench_ring(repeats: int = 20000) -> float:
    ring = AudioRing(8192)
    block = np.zeros((1, 1024), dtype=np.float32)
    out = np.zeros((1024, 1), dtype=np.float32)
    start = time.perf_counter()
    for _ in range(repeats):
        ring.write(block)
        ring.read_into(out.T)
    return (time.perf_counter() - start) / repeats


def bench_file_mode(mode: str, seconds: float = 60.0) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.wav"
        if mode == "audio":
            source = Path(folder) / "in.wav"
            save_audio(source, np.zeros((1, round(seconds * RATE)), dtype=np.float32), RATE)
            host = LiveHost(PassThrough(mode), input=source, output=out, log_interval=0)
        else:
            host = LiveHost(PassThrough(mode), input=None, output=out, duration=seconds, log_interval=0)
        start = time.perf_counter()
        stats = host.run()
        elapsed = time.perf_counter() - start
    return elapsed / stats.blocks, stats.block_seconds


def bench_voices(blocks: int = 5000) -> float:
    allocator = VoiceAllocator(8)
    start = time.perf_counter()
    for index in range(blocks):
        base = 40 + index % 24
        for pitch in range(base, base + 8):
            allocator.note_on(pitch, 100, 100)
            allocator.note_off(pitch, 1500)
        allocator.render(4, 512)
    return (time.perf_counter() - start) / blocks


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    print(f"ring write+read of 1024 frames: {1e6 * bench_ring():.1f} us")
    for mode in ("audio", "midi"):
        per_block, block_seconds = bench_file_mode(mode)
        print(
            f"file mode, {mode}: host overhead {1e3 * per_block:.3f} ms per 2048-sample block "
            f"({100 * per_block / block_seconds:.2f}% of the block's {1e3 * block_seconds:.1f} ms)"
        )
    print(f"voice allocation, 8 notes on/off per 4-frame block: {1e6 * bench_voices():.0f} us per block")


if __name__ == "__main__":
    main()
