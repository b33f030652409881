"""Denoiser + sampler: streaming == offline, causality, conditioning cache, TorchScript round trip."""

import io

import pytest
import torch

from after.diffusion.sampler import sample_offline, sample_stream
from after.nn.streaming import init_state, reset_state

LATENT_DIM = 8  # as in conftest.small_config


def _inputs(model, batch: int, length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, LATENT_DIM, length, generator=g)
    c = torch.rand(batch, 8, generator=g) * 2 - 1
    if model.mode == "audio":
        source = torch.randn(batch, LATENT_DIM, length, generator=g)
    else:
        source = (torch.rand(batch, 2, 128, length, generator=g) > 0.97).float()
    return noise, c, source


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(
    ("mode", "chunk", "call_frames", "length", "guidance"),
    [
        ("audio", 1, 1, 19, (1.5, 0.7)),
        ("audio", 1, 3, 24, (1.0, 1.0)),
        ("audio", 4, 4, 28, (2.0, 1.0)),
        ("midi", 4, 8, 32, (1.2, 2.0)),
        ("midi", 1, 5, 20, (1.5, 1.5)),
    ],
)
def test_streaming_generation_equals_offline(make_model, mode, chunk, call_frames, length, guidance):
    model = make_model(mode, chunk_size=chunk, window=6)
    noise, c, source = _inputs(model, 2, length)
    g_t, g_s = guidance
    with torch.no_grad():
        s = model.encode_structure(source)
        offline = model.sample(noise, c, s, 3, g_t, g_s)
        model.start_stream(2)
        chunks = []
        for start in range(0, length, call_frames):
            stop = min(start + call_frames, length)
            s_chunk = model.encode_structure(source[..., start:stop])  # the structure streams too
            chunks.append(model.generate_chunk(noise[..., start:stop], c, s_chunk, 3, g_t, g_s))
        model.stop_stream()
        streamed = torch.cat(chunks, dim=-1)
        assert _rel(streamed, offline) < 1e-4
        # the python generators agree as well
        again = torch.cat(list(model.generate_stream(noise, c, s, call_frames * chunk, 3, g_t, g_s)), dim=-1)
        assert _rel(again, offline) < 1e-4
        pieces = [noise[..., a : a + chunk * 2] for a in range(0, length - length % (2 * chunk), 2 * chunk)]
        s_pieces = [s[..., a : a + chunk * 2] for a in range(0, length - length % (2 * chunk), 2 * chunk)]
        gen = torch.cat(list(sample_stream(model.denoiser, pieces, c, s_pieces, 3, g_t, g_s, mode)), dim=-1)
        assert _rel(gen, offline[..., : gen.size(-1)]) < 1e-4
    assert not model.denoiser.streaming


@pytest.mark.parametrize("chunk", [1, 4])
def test_denoiser_never_looks_beyond_its_chunk(make_model, chunk):
    model = make_model("audio", chunk_size=chunk, window=5)
    den = model.denoiser
    x, s, c, t = torch.randn(1, LATENT_DIM, 20), torch.randn(1, 12, 20), torch.rand(1, 8), torch.tensor([0.4])
    cut = 8  # a chunk boundary for both K = 1 and K = 4
    with torch.no_grad():
        v = den(x, t, c, s)
        x2, s2 = x.clone(), s.clone()
        x2[..., cut:] += torch.randn_like(x2[..., cut:])
        s2[..., cut + 1 :] += 1.0
        v2 = den(x2, t, c, s2)
        assert torch.equal(v2[..., :cut], v[..., :cut])
        assert not torch.allclose(v2[..., cut:], v[..., cut:])
        # whole sampler: future noise never changes the past
        noise2 = x.clone()
        noise2[..., cut:] = torch.randn_like(noise2[..., cut:])
        a = sample_offline(den, x, c, s, 3, 1.5, 1.2)
        b = sample_offline(den, noise2, c, s, 3, 1.5, 1.2)
        assert torch.equal(a[..., :cut], b[..., :cut])


def test_first_frames_of_a_stream_see_no_stale_cache(make_model):
    """A restarted stream equals a fresh one: un-filled cache entries are never attended to."""
    model = make_model("audio", chunk_size=1, window=6)
    noise, c, source = _inputs(model, 1, 12)
    with torch.no_grad():
        s = model.encode_structure(source)
        model.start_stream(1)
        first = model.generate_chunk(noise[..., :3], c, s[..., :3], 2, 1.5, 1.0)
        model.generate_chunk(noise[..., 3:9] * 5, c, s[..., 3:9], 2, 1.5, 1.0)
        model.denoiser.clear_caches()
        assert torch.equal(model.generate_chunk(noise[..., :3], c, s[..., :3], 2, 1.5, 1.0), first)
        model.stop_stream()


def test_conditioning_cache_follows_timbre_changes(make_model):
    model = make_model("audio", chunk_size=1, window=4)
    den = model.denoiser
    noise, c, source = _inputs(model, 1, 9)
    c2 = torch.rand(1, 8)
    with torch.no_grad():
        s = model.encode_structure(source)
        timbres = [c, c, c2]
        model.start_stream(1)
        cached = [
            model.generate_chunk(
                noise[..., 3 * i : 3 * i + 3], timbres[i], s[..., 3 * i : 3 * i + 3], 2, 1.3, 0.8
            )
            for i in range(3)
        ]
        # reference: the same stream with the conditioning recomputed on every call
        model.start_stream(1)
        fresh = []
        for i in range(3):
            den.cond_valid.zero_()
            fresh.append(
                model.generate_chunk(
                    noise[..., 3 * i : 3 * i + 3], timbres[i], s[..., 3 * i : 3 * i + 3], 2, 1.3, 0.8
                )
            )
        model.stop_stream()
    for a, b in zip(cached, fresh):
        assert torch.equal(a, b)
    assert not torch.allclose(cached[2], fresh[1])


def test_streaming_refusals(make_model):
    model = make_model("audio", chunk_size=4, window=6)
    noise, c, source = _inputs(model, 1, 8)
    s = model.encode_structure(source)
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="start_stream"):
            model.generate_chunk(noise, c, s, 2)
        model.start_stream(1)
        with pytest.raises(ValueError, match="multiple of chunk_size"):
            model.generate_chunk(noise[..., :3], c, s[..., :3], 2)
        with pytest.raises(ValueError, match="max_steps"):
            model.generate_chunk(noise[..., :4], c, s[..., :4], 9)
        with pytest.raises(RuntimeError, match="not streaming"):
            model.sample(noise, c, s, 2)
        model.stop_stream()


@pytest.mark.parametrize("mode", ["audio", "midi"])
def test_scripted_streaming_round_trip(make_model, mode):
    model = make_model(mode, chunk_size=1, window=4)
    noise, c, source = _inputs(model, 1, 10)
    with torch.no_grad():
        s = model.encode_structure(source)
        offline = model.sample(noise, c, s, 2, 1.5, 0.9)
        init_state(model, 1)  # streaming flags are baked in; caches re-size themselves to the batch
        scripted = torch.jit.script(model)
        reset_state(model)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
        for _ in range(2):  # clear_caches restarts the stream inside TorchScript
            loaded.denoiser.clear_caches()
            out = torch.cat(
                [
                    loaded.generate_chunk(noise[..., a : a + 2], c, s[..., a : a + 2], 2, 1.5, 0.9)
                    for a in range(0, 10, 2)
                ],
                dim=-1,
            )
            assert _rel(out, offline) < 1e-4
        c_loaded = loaded.encode_timbre(noise)
        assert torch.allclose(c_loaded, model.encode_timbre(noise), atol=1e-6)
