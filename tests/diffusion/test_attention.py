"""The blocked local attention equals dense attention under the documented mask, offline and streaming."""

import pytest
import torch
from torch.nn import functional as F

from after.nn.attention import LocalChunkAttention, apply_rotary, chunk_local_mask, rotary_tables
from after.nn.streaming import streaming


def _dense_reference(layer: LocalChunkAttention, x: torch.Tensor) -> torch.Tensor:
    """Dense attention with absolute rotary positions and the mask visible(q, k)."""
    b, length, dim = x.shape
    h, dh = layer.n_heads, layer.head_dim
    q, k, v = layer.qkv(x).reshape(b, length, 3, h, dh).permute(2, 0, 3, 1, 4).unbind(0)
    cos, sin = rotary_tables(length, layer.rotary_dim)
    q, k = apply_rotary(q, cos, sin, layer.rotary_dim), apply_rotary(k, cos, sin, layer.rotary_dim)
    mask = chunk_local_mask(length, layer.chunk_size, layer.window)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return layer.out(out.transpose(1, 2).reshape(b, length, dim))


@pytest.mark.parametrize(("chunk", "window", "length"), [(1, 5, 17), (4, 8, 23), (4, 3, 18), (2, 6, 30)])
def test_offline_matches_dense_mask(chunk, window, length):
    torch.manual_seed(0)
    layer = LocalChunkAttention(16, 2, chunk, window, max_steps=2, rotary_dim=4 if chunk == 2 else 0)
    x = torch.randn(2, length, 16)
    with torch.no_grad():
        assert torch.allclose(layer(x), _dense_reference(layer, x), atol=1e-5)


def test_mask_definition():
    mask = chunk_local_mask(12, 4, 5)
    # query 5 (chunk [4, 8)): sees 0..7 limited by the window 5 - k <= 5
    assert mask[5].nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert mask[8].nonzero().flatten().tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert not bool(mask[3, 4])  # never beyond the own chunk


@pytest.mark.parametrize(("chunk", "call_frames"), [(1, 1), (1, 3), (4, 4), (4, 8)])
def test_streaming_matches_offline_per_step_cache(chunk, call_frames):
    torch.manual_seed(1)
    layer = LocalChunkAttention(16, 2, chunk, window=5, max_steps=3)
    length = 24
    xs = [torch.randn(2, length, 16) for _ in range(2)]  # two "sampling steps" with their own sequences
    with torch.no_grad():
        offline = [layer(x) for x in xs]
        with streaming(layer, 2):
            outs = [[], []]
            for start in range(0, length, call_frames):
                for step in (0, 1):  # interleave steps: each must use its own cache
                    outs[step].append(layer(xs[step][:, start : start + call_frames], step=step))
    for step in (0, 1):
        assert torch.allclose(torch.cat(outs[step], dim=1), offline[step], atol=1e-5)


def test_streaming_refuses_misaligned_chunks_and_clear_cache_restarts():
    torch.manual_seed(2)
    layer = LocalChunkAttention(16, 2, 4, window=4, max_steps=1)
    x = torch.randn(1, 8, 16)
    with torch.no_grad(), streaming(layer, 1):
        with pytest.raises(ValueError, match="multiple of chunk_size"):
            layer(x[:, :3])
        first = layer(x[:, :4])
        layer(x[:, 4:])
        layer.clear_cache()
        assert torch.equal(layer(x[:, :4]), first)  # no trace of the forgotten past
        with pytest.raises(ValueError, match="max_steps"):
            layer(x[:, :4], step=1)
