"""PQMF bank: reconstruction, reported latency, band separation, streaming equals offline, causality."""

import math

import pytest
import torch

from after.nn.pqmf import PQMF, design_prototype
from after.nn.streaming import streaming


def error_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return 10 * math.log10((estimate - reference).pow(2).mean().item() / reference.pow(2).mean().item())


def delayed_error_db(pqmf: PQMF, x: torch.Tensor, delay: int, margin: int = 512) -> float:
    """Error of analysis+synthesis against the input delayed by ``delay`` (edges excluded)."""
    y = pqmf(x)
    return error_db(y[..., margin + delay : -margin], x[..., margin : y.size(-1) - margin - delay])


@pytest.mark.parametrize("n_bands", [2, 4, 8, 16])
def test_reconstruction_better_than_minus_40_db_at_reported_latency(n_bands):
    torch.manual_seed(0)
    pqmf = PQMF(n_bands).double()
    x = torch.randn(2, 1, 8192, dtype=torch.float64)
    at_latency = delayed_error_db(pqmf, x, pqmf.latency)
    assert at_latency < -40
    # the reported latency is the true delay: one sample off is far worse
    assert delayed_error_db(pqmf, x, pqmf.latency + 1) > at_latency + 20
    assert delayed_error_db(pqmf, x, pqmf.latency - 1) > at_latency + 20
    assert pqmf.analysis_latency + pqmf.synthesis_latency == pqmf.latency


def test_one_band_is_the_identity():
    pqmf = PQMF(1)
    x = torch.randn(1, 1, 100)
    assert torch.equal(pqmf.analysis(x), x) and torch.equal(pqmf.synthesis(x), x)
    assert pqmf.latency == 0


@pytest.mark.parametrize("band", [0, 3, 7])
def test_a_sine_at_a_band_centre_lands_in_that_band(band):
    n_bands, rate = 8, 16000
    pqmf = PQMF(n_bands)
    frequency = (band + 0.5) * rate / 2 / n_bands
    t = torch.arange(16384) / rate
    bands = pqmf.analysis(torch.sin(2 * math.pi * frequency * t).view(1, 1, -1))
    energy = bands[..., 200:].pow(2).mean(dim=-1).flatten()
    assert energy.argmax().item() == band
    assert energy[band] > 0.99 * energy.sum()


def test_prototype_is_symmetric_low_pass():
    h = design_prototype(16)
    assert len(h) >= 32
    assert abs(h - h[::-1]).max() < 1e-12
    assert abs(h.sum() - 1.0) < 1e-6  # unit gain at DC


@pytest.mark.parametrize("n_bands", [4, 16])
def test_streaming_equals_offline_for_analysis_and_synthesis(n_bands):
    torch.manual_seed(1)
    pqmf = PQMF(n_bands)
    x = torch.randn(2, 1, 4096)
    bands = pqmf.analysis(x)
    audio = pqmf.synthesis(bands)
    for sizes in ([1, 5, 0, 17, 300, 3, 1000], [n_bands] * 200, [2 * n_bands] * 100, [4 * n_bands] * 50):
        with streaming(pqmf, 2):
            chunks, start = [], 0
            for size in [*sizes, x.size(-1)]:
                chunks.append(pqmf.analysis(x[..., start : start + size]))
                start += size
        streamed = torch.cat(chunks, dim=-1)
        assert streamed.shape == bands.shape
        assert (streamed - bands).abs().max() <= 1e-5 * bands.abs().max()
    with streaming(pqmf, 2):
        frames = [1, 2, 0, 4, 9]
        chunks, start = [], 0
        for size in [*frames, bands.size(-1)]:
            chunks.append(pqmf.synthesis(bands[..., start : start + size]))
            start += size
    streamed_audio = torch.cat(chunks, dim=-1)
    assert (streamed_audio - audio).abs().max() <= 1e-5 * audio.abs().max()


def test_analysis_and_synthesis_are_block_causal():
    torch.manual_seed(2)
    pqmf = PQMF(8)
    x = torch.randn(1, 1, 2048)
    tau = 1003
    changed = x.clone()
    changed[..., tau:] = 0
    assert torch.equal(pqmf.analysis(x)[..., : tau // 8], pqmf.analysis(changed)[..., : tau // 8])
    assert torch.equal(pqmf(x)[..., : tau // 8 * 8], pqmf(changed)[..., : tau // 8 * 8])


def test_bad_band_count_is_refused():
    with pytest.raises(ValueError, match="n_bands"):
        PQMF(0)
