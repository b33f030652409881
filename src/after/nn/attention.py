"""Chunk-causal local self-attention with rotary positions and per-step KV caches.

Mask (absolute frame positions ``q`` for a query and ``k`` for a key, chunk size ``K``, window ``W``)::

    visible(q, k)  <=>  k // K <= q // K   and   q - k <= W

A query sees every frame of its own chunk (up to ``K - 1`` frames of look-ahead, none when ``K = 1``)
and the ``W`` frames before it (when ``W >= K - 1`` it sees its whole chunk). The mask depends only on
absolute positions, so processing a sequence in one call or chunk after chunk gives the same result.

Computation (the same code offline and streaming): the keys/values of the new frames are appended
to the ``W`` frames kept from the past, giving ``[past W | new P]``; each chunk of ``K`` queries reads
the window of ``W + K`` keys that ends with its chunk. Rotary positions are taken *relative to that
window* (keys ``0 .. W+K-1``, queries ``W .. W+K-1``): rotary dot products depend only on position
differences, so this equals rotary with absolute positions, yet no position index ever grows during
an endless stream. Key slots that hold no frame (before the stream start, or right padding of a last
partial chunk offline) are masked out; un-filled cache entries are never attended to.

Streaming: a layer keeps one KV cache per sampling step, ``k_cache/v_cache [S, B, H, W, Dh]`` with
``cache_len [S]`` filled frames. A call with ``step = i`` reads and updates cache ``i`` only, so a
chunk at noise level ``t_i`` attends to the past frames at the same noise level, as in training. In
streaming mode every call must bring a multiple of ``K`` frames (chunks stay aligned with the offline
grid).

Cache sizing: ``max_steps`` is only the largest step index allowed. A stream starts with ``S = 0``
slots (:meth:`LocalChunkAttention.init_state` allocates no cache memory) and the slots grow to the
number of steps actually used, on the first call that needs them (:meth:`reserve_steps`; existing
slots are kept, new ones are empty), or are re-allocated empty when the batch size changes. So memory
follows the sampling steps in use, and a saved TorchScript file of a freshly started model carries no
cache at all.
"""

import torch
from torch import nn
from torch.nn import functional as F

from after.nn.streaming import StreamingModule


def rotary_tables(n_positions: int, dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)`` tables ``[n_positions, dim]`` for rotary embeddings (``dim`` even)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))  # [dim/2]
    angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * inv_freq[None, :]  # [N, dim/2]
    angles = torch.cat([angles, angles], dim=-1)  # [N, dim]
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rot_dim: int) -> torch.Tensor:
    """Rotate the first ``rot_dim`` features of ``x [..., N, Dh]`` with tables ``[N, rot_dim]``."""
    x_rot = x[..., :rot_dim]
    half = rot_dim // 2
    rotated_half = torch.cat([-x_rot[..., half:], x_rot[..., :half]], dim=-1)
    x_rot = x_rot * cos + rotated_half * sin
    if rot_dim == x.size(-1):
        return x_rot
    return torch.cat([x_rot, x[..., rot_dim:]], dim=-1)


def needs_normal_tensor(state: torch.Tensor) -> bool:
    """True when ``state`` was made under ``torch.inference_mode`` but we now run outside it: such a
    tensor cannot be updated in place there, so the caller replaces it by a normal copy (a host may
    run its first call in inference mode and change a setting outside it). TorchScript-compatible."""
    return state.is_inference() and not torch.empty(0).is_inference()


def chunk_local_mask(length: int, chunk_size: int, window: int) -> torch.Tensor:
    """Dense reference mask ``[length, length]`` (query, key): True where ``visible(q, k)``."""
    q = torch.arange(length)[:, None]
    k = torch.arange(length)[None, :]
    return (k // chunk_size <= q // chunk_size) & (q - k <= window)


class LocalChunkAttention(StreamingModule):
    """Multi-head self-attention with the chunk-causal local mask and per-step KV caches.

    Args:
        dim: model width ``d``.
        n_heads: heads ``H`` (``d`` divisible by ``H``).
        chunk_size: ``K`` frames per causal chunk.
        window: ``W`` past frames a query may see.
        max_steps: the most per-step caches a stream may use (steps ``0 .. max_steps - 1``); caches
            are allocated for the steps in use only (see the module docstring).
        rotary_dim: features of each head rotated by the rotary embedding (even; 0 = head dim).

    Shapes: ``x [B, L, d] -> [B, L, d]``; streaming calls need ``L % K == 0``.
    """

    n_heads: int
    head_dim: int
    chunk_size: int
    window: int
    max_steps: int
    rotary_dim: int

    def __init__(
        self,
        dim: int,
        n_heads: int,
        chunk_size: int,
        window: int,
        max_steps: int = 64,
        rotary_dim: int = 0,
    ) -> None:
        super().__init__()
        if dim % n_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        if chunk_size < 1 or window < 1 or max_steps < 1:
            raise ValueError(
                f"chunk_size, window and max_steps must be >= 1, got {chunk_size}, {window}, {max_steps}"
            )
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.chunk_size = chunk_size
        self.window = window
        self.max_steps = max_steps
        self.rotary_dim = rotary_dim if rotary_dim > 0 else self.head_dim
        if self.rotary_dim % 2 != 0 or self.rotary_dim > self.head_dim:
            raise ValueError(
                f"rotary_dim must be even and <= head dim {self.head_dim}, got {self.rotary_dim}"
            )
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        span = window + chunk_size
        cos, sin = rotary_tables(span, self.rotary_dim)
        self.register_buffer("rot_cos", cos, persistent=False)  # [W+K, R]
        self.register_buffer("rot_sin", sin, persistent=False)  # [W+K, R]
        r = torch.arange(chunk_size)[:, None]
        j = torch.arange(span)[None, :]
        # within a window: query r (absolute nK + r) sees key slot j (absolute nK - W + j) iff j >= r
        self.register_buffer("window_mask", j >= r, persistent=False)  # [K, W+K]
        self.register_buffer("self_slot", j == r + window, persistent=False)  # [K, W+K]
        self.register_state("k_cache", torch.zeros(0))
        self.register_state("v_cache", torch.zeros(0))
        self.register_state("cache_len", torch.zeros(0, dtype=torch.long))

    def _empty_caches(
        self, batch_size: int, slots: int, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Empty caches ``[slots, B, H, W, Dh]`` (twice) and filled lengths ``[slots]``."""
        shape = [slots, batch_size, self.n_heads, self.window, self.head_dim]
        k = torch.zeros(shape, dtype=like.dtype, device=like.device)
        v = torch.zeros(shape, dtype=like.dtype, device=like.device)
        n = torch.zeros(slots, dtype=torch.long, device=like.device)
        return k, v, n

    @torch.jit.unused
    def _init_state(self, batch_size: int) -> None:
        # no slot yet: they are added by reserve_steps as the steps are used.
        # rot_cos: a float tensor of the layer's dtype/device that exists even with int8 weights
        self.k_cache, self.v_cache, self.cache_len = self._empty_caches(batch_size, 0, self.rot_cos)

    @torch.jit.export
    def reserve_steps(self, batch_size: int, steps: int) -> None:
        """Make room for steps ``0 .. steps - 1`` of ``batch_size`` streams: a new batch size gets
        empty caches; otherwise missing slots are appended empty and the filled ones are kept."""
        like = self.rot_cos
        if needs_normal_tensor(self.k_cache) or needs_normal_tensor(self.cache_len):
            self.k_cache, self.v_cache = self.k_cache.clone(), self.v_cache.clone()
            self.cache_len = self.cache_len.clone()
        if self.k_cache.dim() != 5 or self.k_cache.size(1) != batch_size:
            self.k_cache, self.v_cache, self.cache_len = self._empty_caches(batch_size, steps, like)
        elif self.k_cache.size(0) < steps:
            k, v, n = self._empty_caches(batch_size, steps, like)
            kept = self.k_cache.size(0)
            k[:kept] = self.k_cache
            v[:kept] = self.v_cache
            n[:kept] = self.cache_len
            self.k_cache, self.v_cache, self.cache_len = k, v, n

    @torch.jit.export
    def clear_cache(self) -> None:
        """Forget the past of every step without reallocating (filled lengths drop to 0)."""
        self.cache_len = torch.zeros_like(self.cache_len)  # not in place: see needs_normal_tensor

    def forward(self, x: torch.Tensor, step: int = 0) -> torch.Tensor:
        """``x [B, L, d] -> [B, L, d]``; in streaming mode uses and appends to cache ``step``."""
        batch, length, dim = x.shape
        kc, w, h, dh = self.chunk_size, self.window, self.n_heads, self.head_dim
        qkv = self.qkv(x).reshape(batch, length, 3, h, dh)  # [B, L, 3, H, Dh]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, L, Dh]

        if self.streaming:
            if length % kc != 0:
                raise ValueError("streaming attention needs a multiple of chunk_size frames per call")
            if step < 0 or step >= self.max_steps:
                raise ValueError("sampling step index is beyond the allocated KV caches (max_steps)")
            self.reserve_steps(batch, step + 1)
            past_k = self.k_cache[step]  # [B, H, W, Dh]
            past_v = self.v_cache[step]
            filled = self.cache_len[step].clone()
        else:
            past_k = torch.zeros(batch, h, w, dh, dtype=x.dtype, device=x.device)
            past_v = past_k
            filled = torch.zeros((), dtype=torch.long, device=x.device)

        n_chunks = (length + kc - 1) // kc
        padded = n_chunks * kc
        pad = padded - length
        keys = torch.cat([past_k, k], dim=2)  # [B, H, W + L, Dh]
        values = torch.cat([past_v, v], dim=2)  # [B, H, W + L, Dh]
        if self.streaming:
            self.k_cache[step].copy_(keys[:, :, keys.size(2) - w :])
            self.v_cache[step].copy_(values[:, :, values.size(2) - w :])
            self.cache_len[step] = torch.clamp(filled + length, max=w)

        slot = torch.arange(w + padded, device=x.device)
        valid = (slot >= w - filled) & (slot < w + length)  # [W + Lp]
        if pad > 0:
            q = F.pad(q, [0, 0, 0, pad])  # [B, H, Lp, Dh]
            keys = F.pad(keys, [0, 0, 0, pad])  # [B, H, W + Lp, Dh]
            values = F.pad(values, [0, 0, 0, pad])
        span = w + kc
        key_windows = keys.unfold(2, span, kc).transpose(-1, -2)  # [B, H, N, W+K, Dh]
        value_windows = values.unfold(2, span, kc).transpose(-1, -2)  # [B, H, N, W+K, Dh]
        valid_windows = valid.unfold(0, span, kc)  # [N, W+K]
        queries = q.reshape(batch, h, n_chunks, kc, dh)  # [B, H, N, K, Dh]

        queries = apply_rotary(queries, self.rot_cos[w:], self.rot_sin[w:], self.rotary_dim)
        key_windows = apply_rotary(key_windows, self.rot_cos, self.rot_sin, self.rotary_dim)
        mask = (valid_windows[:, None, :] & self.window_mask[None]) | self.self_slot[None]  # [N, K, W+K]
        out = F.scaled_dot_product_attention(queries, key_windows, value_windows, attn_mask=mask)
        out = out.reshape(batch, h, padded, dh)[:, :, :length]  # [B, H, L, Dh]
        out = out.transpose(1, 2).reshape(batch, length, dim)  # [B, L, d]
        return self.out(out)
