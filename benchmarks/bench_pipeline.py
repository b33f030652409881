"""Streaming pipeline: measured latency (impulse test) and CPU cost per block.

Latency: base codec geometry (44.1 kHz, hop 2048; width reduced, random weights) with the tiny
diffusion model (K = 1). An impulse is added at several positions of one block; the first output
sample that differs from the run without it, played by a block-based host one block later, gives
the real-time latency. Speed: tiny codec + tiny diffusion, one thread, seconds of compute per
second of audio (real-time factor, < 1 = faster than real time).

Run: ``.venv/bin/python benchmarks/bench_pipeline.py``
"""

import dataclasses
import time

import numpy as np
import torch

from after.codec.config import CodecConfig, codec_preset
from after.diffusion.config import diffusion_preset
from after.runtime.bundle import random_bundle
from after.runtime.pipeline import AudioToAudioPipeline


def impulse_latency(pipeline: AudioToAudioPipeline, block_index: int = 4, blocks: int = 7) -> int:
    rng = np.random.default_rng(0)
    base = (0.1 * rng.standard_normal(blocks * pipeline.block_size)).astype(np.float32)
    reference = pipeline.transfer_stream(base)[0]
    worst = 0
    start = block_index * pipeline.block_size
    for offset in (0, 1, pipeline.block_size // 2, pipeline.block_size - 1):
        pulsed = base.copy()
        pulsed[start + offset] += 0.9
        first = int(np.flatnonzero(pipeline.transfer_stream(pulsed)[0] != reference)[0])
        worst = max(worst, first + pipeline.block_size - (start + offset))
    return worst


def main() -> None:
    torch.set_num_threads(1)
    config = dataclasses.replace(
        CodecConfig(), channels=4, multipliers=(1, 1, 1, 1, 1, 1), dilations=(1,), latent_dim=8
    )
    bundle = random_bundle(config, diffusion_preset("tiny"), seed=3)
    for chunk in (1, 2, 4):
        pipeline = AudioToAudioPipeline(bundle, chunk=chunk, steps=1)
        worst = impulse_latency(pipeline)
        print(
            f"latency (44.1 kHz, hop 2048, chunk {chunk}): measured worst {worst} samples "
            f"= {1000 * worst / bundle.sample_rate:.1f} ms = {worst / bundle.hop:.2f} frames "
            f"(block {pipeline.block_size} + reported algorithmic {pipeline.latency_samples})"
        )
    tiny = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=0)
    seconds = 10.0
    audio = (0.1 * np.random.default_rng(1).standard_normal(int(seconds * tiny.sample_rate))).astype(
        np.float32
    )
    for chunk in (1, 2, 4):
        for steps in (1, 4):
            pipeline = AudioToAudioPipeline(tiny, chunk=chunk, steps=steps)
            blocks = pipeline.blocks(audio)
            pipeline.reset()
            began = time.perf_counter()
            for block in blocks:
                pipeline.process(block)
            elapsed = time.perf_counter() - began
            per_block_ms = 1000 * elapsed / len(blocks)
            print(
                f"tiny codec + tiny diffusion, chunk {chunk}, {steps} steps: {per_block_ms:.1f} ms per "
                f"{1000 * pipeline.block_size / tiny.sample_rate:.1f} ms block, real-time factor "
                f"{elapsed / seconds:.3f}"
            )


if __name__ == "__main__":
    main()
