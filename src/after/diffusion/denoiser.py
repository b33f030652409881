"""Velocity network: a transformer over latent frames, chunk-causal and local, with per-step KV caches.

Inputs ``x [B, D, L]`` (noisy latents), ``t [B]`` (flow time), ``c [B, ZT]`` (timbre), ``s [B, ZS, L]``
(structure); output the velocity ``[B, D, L]``.

* Global conditioning: ``e = MLP([sinusoid(t), c])``; one linear maps ``e`` to every AdaLN vector of
  every layer (shift, scale, gate for attention and MLP, plus the final norm's shift and scale):
  :meth:`Denoiser.condition` returns them as ``[B, 6 * n_layers + 2, d]``. They depend only on
  ``(t, c)``, i.e. on ``(sampling step, timbre)`` at inference, so streaming keeps them in a cache per
  step (reused while ``t`` and ``c`` are unchanged, recomputed otherwise: outputs are identical).
* Per-frame conditioning: ``s`` is embedded per frame and adds its own shift/scale to each layer's
  two norms.
* Attention: :class:`after.nn.attention.LocalChunkAttention` (chunk size K, window W, rotary
  positions relative to the window, output projection). Offline = streaming from empty caches.

Streaming: put the denoiser in streaming mode with ``init_state(denoiser, batch)`` (``batch`` = 3 x
streams with guidance), then call ``forward(x_chunk, t, c, s_chunk, step)`` (or :meth:`forward_chunk`)
for each sampling step of each chunk: step ``i`` attends to and extends cache ``i``. Chunks must hold
a multiple of K frames. ``reset_state(denoiser)`` leaves streaming mode and drops all caches;
:meth:`Denoiser.clear_caches` restarts the stream in place (usable from TorchScript, e.g. nn~ exports,
where the Python state helpers cannot reach the scripted modules).
"""

import math

import torch
from torch import nn

from after.nn.attention import LocalChunkAttention, needs_normal_tensor
from after.nn.streaming import StreamingModule


def time_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of flow times ``t [B]`` in ``[0, 1]`` -> ``[B, dim]`` (``dim`` even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None, :]  # [B, dim/2]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class DenoiserBlock(nn.Module):
    """Pre-norm transformer block with global (t, c) and per-frame (s) adaptive norms."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        mlp_ratio: float,
        structure_embed_dim: int,
        chunk_size: int,
        window: int,
        max_steps: int,
        rotary_dim: int,
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = LocalChunkAttention(dim, n_heads, chunk_size, window, max_steps, rotary_dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.frame_modulation = nn.Linear(structure_embed_dim, 4 * dim)

    def forward(
        self, x: torch.Tensor, modulation: torch.Tensor, s_emb: torch.Tensor, step: int
    ) -> torch.Tensor:
        """``x [B, L, d]``, ``modulation [B, 6, d]`` (global), ``s_emb [B, L, ds]`` -> ``[B, L, d]``."""
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation[:, :, None, :].unbind(1)  # each [B, 1, d]
        f_shift1, f_scale1, f_shift2, f_scale2 = self.frame_modulation(s_emb).chunk(4, dim=-1)  # [B, L, d]
        h = self.norm1(x) * (1.0 + scale1 + f_scale1) + (shift1 + f_shift1)
        x = x + gate1 * self.attn(h, step)
        h = self.norm2(x) * (1.0 + scale2 + f_scale2) + (shift2 + f_shift2)
        return x + gate2 * self.mlp(h)


class Denoiser(StreamingModule):
    """Chunk-causal local transformer predicting the flow velocity.

    Args:
        latent_dim: codec latent channels ``D``.
        timbre_dim: ``ZT``.
        structure_dim: ``ZS``.
        dim: model width ``d``; ``n_layers`` blocks of ``n_heads`` heads, MLP width ``mlp_ratio * d``.
        chunk_size: ``K``; window: ``W`` (mask in :mod:`after.nn.attention`).
        max_steps: the most sampling steps a stream may use; the per-step caches (KV and
            conditioning) grow to the steps actually used, at first use (none is allocated before).
        time_dim: width of the sinusoidal time embedding.
        structure_embed_dim: per-frame structure embedding width ``ds``.
        rotary_dim: rotated features per head (0 = all).
        zero_init: zero the gates and the output layer (each block starts as the identity; training
            default). Use ``False`` to get a non-trivial random network (tests, benchmarks).
    """

    n_layers: int
    dim: int
    chunk_size: int
    window: int
    max_steps: int
    timbre_dim: int

    def __init__(
        self,
        latent_dim: int,
        timbre_dim: int,
        structure_dim: int,
        dim: int = 512,
        n_layers: int = 6,
        n_heads: int = 8,
        mlp_ratio: float = 3.0,
        chunk_size: int = 4,
        window: int = 12,
        max_steps: int = 64,
        time_dim: int = 128,
        structure_embed_dim: int = 64,
        rotary_dim: int = 0,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.dim = dim
        self.chunk_size = chunk_size
        self.window = window
        self.max_steps = max_steps
        self.timbre_dim = timbre_dim
        self.time_dim = time_dim
        self.input = nn.Linear(latent_dim, dim)
        self.structure_embed = nn.Sequential(nn.Linear(structure_dim, structure_embed_dim), nn.GELU())
        self.global_embed = nn.Sequential(
            nn.Linear(time_dim + timbre_dim, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU()
        )
        self.modulation = nn.Linear(dim, (6 * n_layers + 2) * dim)
        self.blocks = nn.ModuleList(
            [
                DenoiserBlock(
                    dim, n_heads, mlp_ratio, structure_embed_dim, chunk_size, window, max_steps, rotary_dim
                )
                for _ in range(n_layers)
            ]
        )
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.output = nn.Linear(dim, latent_dim)
        if zero_init:
            self._zero_init()
        self.register_state("cond_cache", torch.zeros(0))
        self.register_state("cond_t", torch.zeros(0))
        self.register_state("cond_c", torch.zeros(0))
        self.register_state("cond_valid", torch.zeros(0, dtype=torch.bool))

    def _zero_init(self) -> None:
        with torch.no_grad():
            weight = self.modulation.weight.view(6 * self.n_layers + 2, self.dim, self.dim)  # [rows, d, d]
            bias = self.modulation.bias.view(6 * self.n_layers + 2, self.dim)
            for layer in range(self.n_layers):
                for gate in (2, 5):
                    weight[6 * layer + gate].zero_()
                    bias[6 * layer + gate].zero_()
            self.output.weight.zero_()
            self.output.bias.zero_()

    def _empty_condition_cache(
        self, batch_size: int, slots: int, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Empty conditioning cache ``[slots, B, 6 * n_layers + 2, d]`` with its keys ``t [slots, B]``,
        ``c [slots, B, ZT]`` and ``valid [slots]``."""
        rows = 6 * self.n_layers + 2
        cache = torch.zeros(slots, batch_size, rows, self.dim, dtype=like.dtype, device=like.device)
        t = torch.zeros(slots, batch_size, dtype=like.dtype, device=like.device)
        c = torch.zeros(slots, batch_size, self.timbre_dim, dtype=like.dtype, device=like.device)
        valid = torch.zeros(slots, dtype=torch.bool, device=like.device)
        return cache, t, c, valid

    def _like(self) -> torch.Tensor:
        # a float tensor of the model's dtype/device that exists even when the linears hold int8 weights
        return self.blocks[0].attn.rot_cos

    @torch.jit.unused
    def _init_state(self, batch_size: int) -> None:
        # no slot yet: reserve_steps adds them as the sampling steps are used
        self.cond_cache, self.cond_t, self.cond_c, self.cond_valid = self._empty_condition_cache(
            batch_size, 0, self._like()
        )

    @torch.jit.export
    def reserve_steps(self, batch_size: int, steps: int) -> None:
        """Make room in every per-step cache (KV caches and conditioning cache) for steps
        ``0 .. steps - 1`` of ``batch_size`` rows: a new batch size gets empty caches, otherwise the
        missing slots are appended empty and the filled ones kept. Refuses ``steps > max_steps``."""
        if steps > self.max_steps:
            raise ValueError("sampling step index is beyond max_steps")
        for block in self.blocks:
            block.attn.reserve_steps(batch_size, steps)
        self._reserve_condition(batch_size, steps)

    def _reserve_condition(self, batch_size: int, steps: int) -> None:
        """:meth:`reserve_steps` for the conditioning cache only."""
        if needs_normal_tensor(self.cond_cache) or needs_normal_tensor(self.cond_valid):
            self.cond_cache, self.cond_t = self.cond_cache.clone(), self.cond_t.clone()
            self.cond_c, self.cond_valid = self.cond_c.clone(), self.cond_valid.clone()
        if self.cond_cache.dim() != 4 or self.cond_cache.size(1) != batch_size:
            self.cond_cache, self.cond_t, self.cond_c, self.cond_valid = self._empty_condition_cache(
                batch_size, steps, self._like()
            )
        elif self.cond_cache.size(0) < steps:
            cache, t, c, valid = self._empty_condition_cache(batch_size, steps, self._like())
            kept = self.cond_cache.size(0)
            cache[:kept] = self.cond_cache
            t[:kept] = self.cond_t
            c[:kept] = self.cond_c
            valid[:kept] = self.cond_valid
            self.cond_cache, self.cond_t, self.cond_c, self.cond_valid = cache, t, c, valid

    @torch.jit.export
    def clear_caches(self) -> None:
        """Restart the stream in place (TorchScript-friendly): every KV cache and the conditioning
        cache are emptied without reallocation; the streaming mode and batch size are kept."""
        for block in self.blocks:
            block.attn.clear_cache()
        self.cond_valid = torch.zeros_like(self.cond_valid)  # not in place: see needs_normal_tensor

    def condition(self, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """AdaLN vectors of all layers from ``t [B]`` and ``c [B, ZT]`` -> ``[B, 6 * n_layers + 2, d]``."""
        e = self.global_embed(torch.cat([time_embedding(t, self.time_dim), c], dim=-1))  # [B, d]
        return self.modulation(e).reshape(e.size(0), 6 * self.n_layers + 2, self.dim)  # [B, rows, d]

    def cached_condition(self, t: torch.Tensor, c: torch.Tensor, step: int) -> torch.Tensor:
        """:meth:`condition`, served from the per-step cache when ``(t, c)`` equal the stored ones."""
        batch = c.size(0)
        self._reserve_condition(batch, step + 1)
        if (
            bool(self.cond_valid[step])
            and torch.equal(self.cond_t[step], t)
            and torch.equal(self.cond_c[step], c)
        ):
            return self.cond_cache[step]
        cond = self.condition(t, c)
        self.cond_cache[step].copy_(cond)
        self.cond_t[step].copy_(t)
        self.cond_c[step].copy_(c)
        self.cond_valid[step] = True
        return cond

    def forward_conditioned(
        self, x: torch.Tensor, cond: torch.Tensor, s: torch.Tensor, step: int = 0
    ) -> torch.Tensor:
        """Velocity from precomputed AdaLN vectors ``cond [B, 6 * n_layers + 2, d]``; ``x [B, D, L]``,
        ``s [B, ZS, L]`` -> ``[B, D, L]``."""
        h = self.input(x.transpose(1, 2))  # [B, L, d]
        s_emb = self.structure_embed(s.transpose(1, 2))  # [B, L, ds]
        for i, block in enumerate(self.blocks):
            h = block(h, cond[:, 6 * i : 6 * i + 6], s_emb, step)
        shift = cond[:, 6 * self.n_layers, None, :]  # [B, 1, d]
        scale = cond[:, 6 * self.n_layers + 1, None, :]  # [B, 1, d]
        h = self.final_norm(h) * (1.0 + scale) + shift
        return self.output(h).transpose(1, 2)  # [B, D, L]

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, s: torch.Tensor, step: int = 0
    ) -> torch.Tensor:
        """Velocity ``[B, D, L]`` for ``x [B, D, L]``, ``t [B]``, ``c [B, ZT]``, ``s [B, ZS, L]``.

        Offline (not streaming) the whole sequence is processed with the full mask and ``step`` is
        ignored. Streaming: attends to and appends to KV cache ``step``; ``L`` must be a multiple of K.
        """
        if x.size(-1) != s.size(-1):
            raise ValueError("x and s must have the same number of frames")
        if self.streaming:
            if step < 0 or step >= self.max_steps:
                raise ValueError("sampling step index is beyond max_steps")
            cond = self.cached_condition(t, c, step)
        else:
            cond = self.condition(t, c)
        return self.forward_conditioned(x, cond, s, step)

    def forward_chunk(
        self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, s: torch.Tensor, step_index: int
    ) -> torch.Tensor:
        """Streaming call for one chunk ``x [B, D, P]`` (``P`` a multiple of K) at sampling step
        ``step_index``; the denoiser must be streaming (see the module docstring)."""
        if not self.streaming:
            raise RuntimeError("forward_chunk needs streaming mode: call init_state(denoiser, batch) first")
        return self.forward(x, t, c, s, step_index)
