"""A freshly built codec passes its input through: latents and output depend on the audio.

Without normalisation layers, PyTorch's default initialisation made a fresh codec an almost
input-independent generator (output difference between two inputs ~0.2 % of the output), and
training then never learnt to use the latent. These tests pin the fixed initialisation.
"""

import math

import pytest
import torch

from after.codec.config import codec_preset
from after.codec.model import Codec, ResidualUnit

torch.set_num_threads(1)
SAMPLES = 16384


def harmonic_note(f0: float, sample_rate: int, seed: int) -> torch.Tensor:
    """A decaying note with 6 harmonics and a silent tail: ``[1, 1, SAMPLES]``, peak ~0.5."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(SAMPLES) / sample_rate
    note = sum(
        torch.rand(1, generator=generator) / k * torch.sin(2 * math.pi * f0 * k * t) for k in range(1, 7)
    )
    envelope = torch.exp(-3.0 * t) * (t < 0.5)
    return (0.5 * note * envelope / note.abs().max()).reshape(1, 1, SAMPLES)  # [1, 1, T]


def rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_fresh_codec_latent_and_output_depend_on_the_input(preset):
    torch.manual_seed(0)
    config = codec_preset(preset)
    codec = Codec.from_config(config).eval()
    a = harmonic_note(220.0, config.sample_rate, seed=1)
    b = harmonic_note(330.0, config.sample_rate, seed=2)
    with torch.no_grad():
        za, zb = codec.encode(a), codec.encode(b)
        ya, yb = codec.decode(za), codec.decode(zb)
    # the default PyTorch initialisation gave ~0.08 for the latent and ~0.002 for the output
    assert (za - zb).std() > 0.5 * za.std(), "latent barely depends on the input"
    assert rms(ya - yb) > 0.5 * rms(ya), "output barely depends on the input"
    # and a silent input gives a (nearly) silent output: no bias-driven signal
    with torch.no_grad():
        silence = codec.decode(codec.encode(torch.zeros_like(a)))
    assert rms(silence) < 0.01 * rms(ya)


def test_initialisation_zeroes_biases_and_keeps_weight_norm_and_pqmf():
    torch.manual_seed(0)
    codec = Codec.from_config(codec_preset("tiny"))
    names = [name for name, _ in codec.named_parameters()]
    assert any("parametrizations.weight.original0" in name for name in names)  # still weight-normalised
    biases = [p for name, p in codec.named_parameters() if name.endswith("conv.bias")]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)
    # the PQMF is untouched: analysis then synthesis still reproduces the input
    x = harmonic_note(440.0, codec.sample_rate, seed=3)
    with torch.no_grad():
        y = codec.pqmf(x)
    lag = codec.pqmf.latency
    assert rms(y[..., lag:] - x[..., : SAMPLES - lag]) < 1e-2 * rms(x)
    # residual branches start small so that stacked residual units do not grow the signal
    for unit in (m for m in codec.modules() if isinstance(m, ResidualUnit)):
        last, first = unit.block[-1].conv.weight, unit.block[1].conv.weight
        assert last.std() < 0.5 * first.std() * math.sqrt(first.shape[1] * first.shape[2] / last.shape[1])
