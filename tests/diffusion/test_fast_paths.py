"""Fast inference paths of the diffusion model match the plain path.

* the per-step AdaLN cache serves exactly what :meth:`Denoiser.condition` computes, and the streaming
  denoiser really uses it (a stale entry would show in the output);
* int8 weights (:func:`after.nn.quantize.quantize_dynamic_int8`): velocity and generated latents within
  the stated tolerance of fp32, streaming within it of offline, and the int8 model scripts, saves and
  loads with outputs equal to the int8 eager model.
"""

import io

import pytest
import torch

from after.nn.quantize import quantize_dynamic_int8
from after.nn.streaming import init_state, reset_state

LATENT_DIM = 8  # as in conftest.small_config
INT8_TOLERANCE = 0.05
"""Relative L2 error allowed for int8 against fp32 (measured ~1 % on these small random models)."""


def _inputs(model, length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, LATENT_DIM, length, generator=g)
    c = torch.rand(1, 8, generator=g) * 2 - 1
    if model.mode == "audio":
        source = torch.randn(1, LATENT_DIM, length, generator=g)
    else:
        source = (torch.rand(1, 2, 128, length, generator=g) > 0.97).float()
    return noise, c, source


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _stream(model, noise, c, s, chunk, steps, guidance=(1.5, 1.2)):
    model.start_stream(1)
    try:
        parts = [
            model.generate_chunk(noise[..., a : a + chunk], c, s[..., a : a + chunk], steps, *guidance)
            for a in range(0, noise.size(-1), chunk)
        ]
    finally:
        model.stop_stream()
    return torch.cat(parts, dim=-1)


def test_cached_condition_is_bitwise_the_plain_condition(make_model):
    den = make_model("audio", chunk_size=2, window=4).denoiser
    t = torch.full([3], 0.25)
    c = torch.rand(3, 8)
    with torch.no_grad():
        plain = den.condition(t, c)
        init_state(den, 3)
        first = den.cached_condition(t, c, 2).clone()
        again = den.cached_condition(t, c, 2)
        assert torch.equal(first, plain) and torch.equal(again, plain)
        assert bool(den.cond_valid[2]) and not bool(den.cond_valid[1])
        other = den.cached_condition(t, c + 0.5, 2)  # a new timbre replaces the entry
        assert torch.equal(other, den.condition(t, c + 0.5))
        reset_state(den)


def test_streaming_denoiser_uses_the_conditioning_cache(make_model):
    """Plant a wrong entry with the right key: the streaming output must change (the cache is read),
    and equal the forward on the planted vectors (nothing else is recomputed)."""
    model = make_model("audio", chunk_size=2, window=4)
    den = model.denoiser
    x = torch.randn(3, LATENT_DIM, 2)
    t = torch.full([3], 0.5)
    c = torch.rand(3, 8)
    s = torch.randn(3, 12, 2)
    with torch.no_grad():
        init_state(den, 3)
        den.cached_condition(t, c, 0)
        den.cond_cache[0].mul_(1.5)  # planted
        planted = den.cond_cache[0].clone()
        streamed = den(x, t, c, s, 0)
        den.clear_caches()
        expected = den.forward_conditioned(x, planted, s, 0)
        reset_state(den)
        assert torch.equal(streamed, expected)
        assert not torch.allclose(streamed, den(x, t, c, s))


@pytest.mark.parametrize(("mode", "chunk"), [("audio", 1), ("midi", 2)])
def test_int8_model_is_close_to_fp32_and_streams_like_its_offline_self(make_model, mode, chunk):
    model = make_model(mode, chunk_size=chunk, window=4)
    int8 = quantize_dynamic_int8(model, min_weights=1)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in int8.modules())
    noise, c, source = _inputs(model, 12)
    with torch.no_grad():
        s = model.encode_structure(source)
        s8 = int8.encode_structure(source)
        x3 = torch.randn(3, LATENT_DIM, 12)
        t3 = torch.full([3], 0.3)
        c3 = torch.rand(3, 8)
        s3 = torch.randn(3, s.size(1), 12)
        assert _rel(int8.denoiser(x3, t3, c3, s3), model.denoiser(x3, t3, c3, s3)) < INT8_TOLERANCE
        offline = model.sample(noise, c, s, 4, 1.5, 1.2)
        offline8 = int8.sample(noise, c, s8, 4, 1.5, 1.2)
        streamed8 = _stream(int8, noise, c, s8, chunk, 4)
    assert _rel(offline8, offline) < INT8_TOLERANCE
    assert _rel(streamed8, offline8) < INT8_TOLERANCE
    assert _rel(streamed8, offline) < INT8_TOLERANCE


def test_int8_model_scripts_saves_loads_with_the_eager_output(make_model):
    model = make_model("audio", chunk_size=2, window=4)
    int8 = quantize_dynamic_int8(model, min_weights=1)
    noise, c, source = _inputs(model, 8)
    with torch.no_grad():
        s = int8.encode_structure(source)
        eager = _stream(int8, noise, c, s, 2, 3)
        init_state(int8, 1)
        init_state(int8.denoiser, 3)
        scripted = torch.jit.script(int8)
        reset_state(int8)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
        loaded.denoiser.clear_caches()
        parts = [
            loaded.generate_chunk(noise[..., a : a + 2], c, s[..., a : a + 2], 3, 1.5, 1.2)
            for a in range(0, 8, 2)
        ]
    torch.testing.assert_close(torch.cat(parts, dim=-1), eager, rtol=1e-5, atol=1e-5)
