"""Shared helpers for the diffusion tests: very small seeded models with non-trivial weights."""

import dataclasses

import pytest
import torch

from after.diffusion.config import DiffusionConfig, diffusion_preset
from after.diffusion.model import AfterModel, build_model

LATENT_DIM = 8


def small_config(mode: str = "audio", chunk_size: int = 1, window: int = 6) -> DiffusionConfig:
    """A tiny-preset variant small enough for CPU tests; ``zero_init=False`` so nothing is trivial."""
    base = diffusion_preset("tiny" if mode == "audio" else "tiny_midi")
    denoiser = dataclasses.replace(
        base.denoiser, dim=32, n_layers=2, n_heads=2, chunk_size=chunk_size, window=window, max_steps=8,
        time_dim=16, structure_embed_dim=8, zero_init=False,
    )  # fmt: skip
    return dataclasses.replace(base, latent_dim=LATENT_DIM, denoiser=denoiser)


def small_model(mode: str = "audio", chunk_size: int = 1, window: int = 6, seed: int = 0) -> AfterModel:
    torch.manual_seed(seed)
    return build_model(small_config(mode, chunk_size, window)).eval()


@pytest.fixture
def make_model():
    """Factory ``make_model(mode, chunk_size, window, seed)`` of small seeded models."""
    return small_model
