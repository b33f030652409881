"""Diffusion training speed: optimiser steps per second for each model preset, on this machine.

Each preset trains on synthetic in-memory batches through the real Lightning module
(:class:`after.train.diffusion_module.DiffusionModule`), in the more expensive phase (audio presets:
phase 2, with the structure encoder and the adversarial classifier's extra step; MIDI presets: their
single phase). The first steps are warm-up and are not timed.

    .venv/bin/python benchmarks/bench_train.py [--batch-size 8] [--crop-frames 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import lightning as L
import torch
from torch.utils.data import Dataset

from after.diffusion.config import diffusion_preset
from after.diffusion.model import build_model
from after.train.audio_data import AudioDataModule
from after.train.diffusion_config import train_preset, with_changes
from after.train.diffusion_module import DiffusionModule

LATENT_DIM = {"base": 64, "midi": 64, "tiny": 16, "tiny_midi": 16}  # base / tiny codec latents
TIMED_STEPS = {"base": 4, "midi": 4, "tiny": 12, "tiny_midi": 12}
WARMUP_STEPS = 2


class SyntheticBatches(Dataset):
    def __init__(self, latent_dim: int, frames: int, midi: bool, items: int = 64) -> None:
        self.latent_dim, self.frames, self.midi, self.items = latent_dim, frames, midi, items

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x1 = torch.randn(self.latent_dim, self.frames)
        structure = (torch.rand(2, 128, self.frames) > 0.97).float() if self.midi else x1
        return {
            "x1": x1,
            "structure": structure,
            "reference": torch.randn(self.latent_dim, self.frames),
            "family": torch.tensor(index % 4),
        }


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter() - self._start)


def bench(preset: str, batch_size: int, frames: int) -> tuple[float, int]:
    config = dataclasses.replace(diffusion_preset(preset), latent_dim=LATENT_DIM[preset])
    training = with_changes(train_preset(preset), batch_size=batch_size, crop_frames=frames, phase1_steps=0)
    model = build_model(config)
    params = sum(p.numel() for p in model.parameters())
    module = DiffusionModule(model, config, training)
    data = AudioDataModule(
        SyntheticBatches(config.latent_dim, frames, config.mode == "midi"), None, batch_size
    )
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=WARMUP_STEPS + TIMED_STEPS[preset], logger=False, callbacks=[timer],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    timed = timer.times[WARMUP_STEPS:]
    return len(timed) / sum(timed), params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-frames", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--presets", default="base,midi,tiny,tiny_midi")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"batch {args.batch_size} x {args.crop_frames} latent frames, {args.threads} thread(s)")
    print(f"{'preset':10s} {'params':>9s} {'steps/s':>8s} {'s/step':>8s}")
    for preset in args.presets.split(","):
        rate, params = bench(preset, args.batch_size, args.crop_frames)
        print(f"{preset:10s} {params / 1e6:8.2f}M {rate:8.3f} {1 / rate:8.3f}")


if __name__ == "__main__":
    main()
