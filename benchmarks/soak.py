"""Soak run: stream a long signal through a streaming pipeline and watch it stay healthy.

For each mode (audio-to-audio, MIDI-to-audio) it streams ``--minutes`` of input block by block
through ``pipeline.process`` (the path the live host and nn~ use) and records, per minute of audio:
the process's resident memory, the mean and max time per block, the output level, and whether any
NaN/inf or an unexpected silent minute appeared. The verdict lines say whether memory stayed flat
after warm-up and whether the time per block grew.

    .venv/bin/python benchmarks/soak.py --minutes 30            # both modes, tiny random models
    .venv/bin/python benchmarks/soak.py --model default --minutes 30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import time
from pathlib import Path

import numpy as np
import torch

from after.codec.config import codec_preset
from after.data.procedural import generate_piece
from after.diffusion.config import diffusion_preset
from after.runtime.bundle import load_bundle, random_bundle
from after.runtime.pipeline import build_pipeline
from after.runtime.voices import VoiceAllocator

log = logging.getLogger("soak")


def rss_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def note_events(rng: np.random.Generator, seconds: float, rate: int) -> list[tuple[int, str, int, int]]:
    """(sample, on/off, pitch, velocity) events of procedural pieces covering ``seconds``."""
    events, offset = [], 0.0
    while offset < seconds:
        stems = generate_piece(rng)
        length = 0.0
        for stem in stems[:2]:
            for note in stem.notes:
                start, end = offset + note.start, offset + note.end
                events.append((round(start * rate), "on", note.pitch, note.velocity))
                events.append((round(end * rate), "off", note.pitch, 0))
                length = max(length, note.end)
        offset += max(length, 1.0)
    return sorted(events)


def structure_signal(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """A long, varied test signal [T]: gliding harmonic tones with an envelope, some noise."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = 220.0 * 2 ** (np.sin(2 * np.pi * t / 37.0) + 0.5 * np.sin(2 * np.pi * t / 5.3))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * t * 1.7) ** 2
    return (0.2 * tone * envelope + 0.01 * rng.standard_normal(n)).astype(np.float32)


def soak(pipeline, minutes: float, seed: int) -> dict:
    """Stream ``minutes`` of input through ``pipeline`` and return per-minute statistics."""
    rate, block = pipeline.sample_rate, pipeline.block_size
    rng = np.random.default_rng(seed)
    n_blocks = int(minutes * 60 * rate / block)
    per_minute = int(60 * rate / block)
    allocator = VoiceAllocator(pipeline.n_voices) if pipeline.mode == "midi" else None
    events = note_events(rng, minutes * 60 + 5, rate) if allocator else []
    signal = None if allocator else structure_signal(rng, 600.0, rate)  # looped
    rows, times, levels, bad = [], [], [], 0
    event_index = 0
    for index in range(n_blocks):
        start = index * block
        if allocator is not None:
            while event_index < len(events) and events[event_index][0] < start + block:
                sample, kind, pitch, velocity = events[event_index]
                offset = max(0, sample - start)
                if kind == "on":
                    allocator.note_on(pitch, velocity, offset)
                else:
                    allocator.note_off(pitch, offset)
                event_index += 1
            frames = allocator.render(block // pipeline.hop_length, pipeline.hop_length)
            tick = time.perf_counter()
            out = pipeline.process(np.zeros((0, block), np.float32), frames)
        else:
            position = start % (signal.size - block)
            tick = time.perf_counter()
            # channel 0: the structure; any further channel: the live timbre reference
            channels = [
                np.roll(signal, 7919 * k)[position : position + block] for k in range(pipeline.input_channels)
            ]
            out = pipeline.process(np.stack(channels), None)
        times.append(time.perf_counter() - tick)
        bad += int(not np.isfinite(out).all())
        levels.append(float(np.sqrt(np.mean(np.square(out)))))
        if (index + 1) % per_minute == 0 or index + 1 == n_blocks:
            rows.append(
                {
                    "minute": round((index + 1) * block / rate / 60, 2),
                    "rss_mb": round(rss_mb(), 1),
                    "ms_mean": round(1000 * float(np.mean(times)), 3),
                    "ms_max": round(1000 * float(np.max(times)), 3),
                    "rms": float(np.mean(levels)),
                    "silent_blocks": int(np.sum(np.asarray(levels) < 1e-6)),
                    "nonfinite_blocks": bad,
                }
            )
            log.info("%s", rows[-1])
            times, levels, bad = [], [], 0
    return {"block_ms": 1000 * block / rate, "rows": rows}


def verdict(result: dict) -> dict:
    """Flat memory after warm-up, no NaN, no silent minute, and no growth of the time per block."""
    rows = result["rows"][1:] or result["rows"]  # the first minute is warm-up
    rss = [row["rss_mb"] for row in rows]
    ms = [row["ms_mean"] for row in rows]
    half = max(1, len(ms) // 2)
    return {
        "rss_growth_mb": round(rss[-1] - rss[0], 1),
        "nonfinite_blocks": sum(row["nonfinite_blocks"] for row in result["rows"]),
        "silent_minutes": sum(row["silent_blocks"] == int(60_000 / result["block_ms"]) for row in rows),
        "ms_first_half": round(float(np.mean(ms[:half])), 3),
        "ms_second_half": round(float(np.mean(ms[half:] or ms)), 3),
        "rtf": round(float(np.mean(ms)) / result["block_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--model", default=None, help="audio model (default: a tiny random model)")
    parser.add_argument("--midi-model", default=None, help="MIDI model (default: a tiny random model)")
    parser.add_argument("--modes", default="audio,midi")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--eager", action="store_true", help="run the eager engine (default: scripted)")
    parser.add_argument("--int8", action="store_true", help="int8 weights")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    results = {}
    for mode in args.modes.split(","):
        source = args.model if mode == "audio" else args.midi_model
        if source is None:
            codec = dataclasses.replace(codec_preset("tiny"))
            preset = "tiny" if mode == "audio" else "tiny_midi"
            bundle = random_bundle(codec, diffusion_preset(preset), seed=0, name=f"random-{mode}")
        else:
            bundle = load_bundle(source)
        pipeline = build_pipeline(
            bundle,
            chunk=args.chunk,
            steps=args.steps,
            live_timbre=mode == "audio",
            scripted=not args.eager,
            int8=args.int8,
        )
        log.info("soak: %s mode, model %s, %.0f minutes", mode, bundle.name, args.minutes)
        result = soak(pipeline, args.minutes, seed=0)
        result["verdict"] = verdict(result)
        result["model"] = bundle.name
        log.info("verdict %s: %s", mode, result["verdict"])
        results[mode] = result
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
