"""Euler sampling of the flow with two-scale guidance, offline and chunk by chunk (streaming).

Both paths evaluate, for each sampling step ``i`` (``t_i`` from :func:`after.diffusion.flow.time_grid`),
the guided velocity of :func:`after.diffusion.guidance.combine_guidance` and take an Euler step.

The loops are methods of :class:`GuidedSampler` (a module that owns the denoiser; TorchScript cannot
pass modules to free functions); the functions below wrap it for Python callers.

* :func:`sample_offline`: the whole sequence at once (the denoiser is not streaming). Guidance
  branches whose weight is exactly zero are not evaluated (e.g. ``g_t = g_s = 1`` needs only the
  conditional branch).
* :meth:`GuidedSampler.sample_chunk`: one chunk of ``P`` frames (a multiple of the denoiser's K)
  through the N steps, step ``i`` using KV cache ``i`` of a streaming denoiser (batch ``3B``, see
  :meth:`GuidedSampler.start_stream`). It always evaluates all three branches, so the guidance
  scales may change between chunks while every branch's cache stays consistent. Chunk after chunk it equals
  :func:`sample_offline` on the concatenated noise and structure.
* :func:`sample_stream`: a Python generator over chunks built on :meth:`GuidedSampler.sample_chunk`.

Room for other samplers: a few-step sampler only needs another loop over ``time_grid`` values; the
per-step caches work for any fixed grid (the grid must not change within a stream).
"""

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from after.diffusion.denoiser import Denoiser
from after.diffusion.flow import euler_step, time_grid
from after.diffusion.guidance import (
    DROP_VALUE,
    branches_needed,
    combine_guidance,
    guidance_batch,
    split_guidance_batch,
)
from after.nn.streaming import init_state, reset_state


class GuidedSampler(nn.Module):
    """Euler sampler with two-scale guidance around a :class:`Denoiser` (offline and streaming).

    Args:
        denoiser: the velocity network.
        mode: ``"audio"`` or ``"midi"`` (guidance roles).
        drop_value: dropped-condition constant.
        schedule: sampling time grid (see :func:`after.diffusion.flow.time_grid`).
    """

    mode: str
    drop_value: float
    schedule: str
    chunk_size: int

    def __init__(
        self,
        denoiser: Denoiser,
        mode: str = "audio",
        drop_value: float = DROP_VALUE,
        schedule: str = "uniform",
    ) -> None:
        super().__init__()
        if mode not in ("audio", "midi"):
            raise ValueError(f"mode must be 'audio' or 'midi', got {mode!r}")
        self.denoiser = denoiser
        self.mode = mode
        self.drop_value = drop_value
        self.schedule = schedule
        self.chunk_size = denoiser.chunk_size

    def guided_velocity(
        self,
        x: torch.Tensor,
        t: float,
        c: torch.Tensor,
        s: torch.Tensor,
        guidance_timbre: float,
        guidance_structure: float,
        step: int,
        skip_unused: bool,
    ) -> torch.Tensor:
        """Guided velocity ``[B, D, L]`` at flow time ``t``; ``x [B, D, L]``, ``c [B, ZT]``, ``s [B, ZS, L]``.

        With ``skip_unused`` only the branches with a non-zero guidance weight are evaluated (offline
        only: a streaming denoiser must always see the full ``3B`` batch).
        """
        batch = x.size(0)
        null_c = torch.full_like(c, self.drop_value)
        null_s = torch.full_like(s, self.drop_value)
        x3, c3, s3 = guidance_batch(x, c, s, null_c, null_s, self.mode)  # [3B, ...]
        need_full, need_partial, need_null = branches_needed(guidance_timbre, guidance_structure, self.mode)
        keep: list[int] = [0, 1, 2]
        if skip_unused:
            keep = []
            if need_full:
                keep.append(0)
            if need_partial:
                keep.append(1)
            if need_null:
                keep.append(2)
        if len(keep) == 3:
            v3 = self.denoiser.forward(
                x3, torch.full([3 * batch], t, dtype=x.dtype, device=x.device), c3, s3, step
            )
            v_full, v_partial, v_null = split_guidance_batch(v3)
        else:
            rows = torch.cat([torch.arange(k * batch, (k + 1) * batch, device=x.device) for k in keep])
            t_rows = torch.full([len(keep) * batch], t, dtype=x.dtype, device=x.device)
            v_kept = self.denoiser.forward(x3[rows], t_rows, c3[rows], s3[rows], step)  # [len(keep) B, D, L]
            branches = [x, x, x]  # placeholders for skipped branches (weight exactly 0, never read)
            for j, k in enumerate(keep):
                branches[k] = v_kept[j * batch : (j + 1) * batch]
            v_full, v_partial, v_null = branches[0], branches[1], branches[2]
        return combine_guidance(v_full, v_partial, v_null, guidance_timbre, guidance_structure, self.mode)

    def sample(
        self,
        noise: torch.Tensor,
        c: torch.Tensor,
        s: torch.Tensor,
        n_steps: int,
        guidance_timbre: float = 1.0,
        guidance_structure: float = 1.0,
    ) -> torch.Tensor:
        """Offline: latents ``[B, D, L]`` from ``noise [B, D, L]`` (t = 0), ``c [B, ZT]``, ``s [B, ZS, L]``
        with ``n_steps`` Euler steps; the denoiser must not be streaming."""
        if self.denoiser.streaming:
            raise RuntimeError(
                "offline sampling needs a denoiser that is not streaming (call reset_state first)"
            )
        grid: list[float] = time_grid(n_steps, self.schedule).tolist()
        x = noise
        for i in range(n_steps):
            v = self.guided_velocity(x, grid[i], c, s, guidance_timbre, guidance_structure, i, True)
            x = euler_step(x, v, grid[i], grid[i + 1])
        return x

    @torch.jit.unused
    def start_stream(self, batch_size: int) -> None:
        """Allocate empty per-step caches for ``batch_size`` streams (``3 * batch_size`` guidance rows).

        Calling it again restarts the stream (all caches emptied); :meth:`stop_stream` ends it.
        """
        init_state(self, batch_size)
        init_state(self.denoiser, 3 * batch_size)

    @torch.jit.unused
    def stop_stream(self) -> None:
        """Leave streaming mode everywhere under this module; all state is dropped."""
        reset_state(self)

    @torch.jit.export
    def sample_chunk(
        self,
        noise: torch.Tensor,
        c: torch.Tensor,
        s: torch.Tensor,
        n_steps: int,
        guidance_timbre: float = 1.0,
        guidance_structure: float = 1.0,
    ) -> torch.Tensor:
        """Streaming: the next chunk ``[B, D, P]`` from ``noise [B, D, P]``, ``c [B, ZT]``, ``s [B, ZS, P]``.

        ``P`` must be a multiple of the denoiser's chunk size K; ``n_steps`` (and the schedule) must
        stay the same for the whole stream (cache ``i`` holds the frames seen at ``t_i``). The
        guidance scales and ``c`` may change between chunks.
        """
        if not self.denoiser.streaming:
            raise RuntimeError("streaming sampling needs start_stream(batch_size) first")
        if n_steps > self.denoiser.max_steps:
            raise ValueError("n_steps is larger than the denoiser's max_steps caches")
        batch = noise.size(0)
        self.denoiser.reserve_steps(3 * batch, n_steps)
        grid: list[float] = time_grid(n_steps, self.schedule).tolist()
        # the conditions of the three branches do not change across steps: stack them once
        null_c = torch.full_like(c, self.drop_value)
        null_s = torch.full_like(s, self.drop_value)
        _, c3, s3 = guidance_batch(noise[:0], c, s, null_c, null_s, self.mode)  # [3B, ZT], [3B, ZS, P]
        x = noise
        for i in range(n_steps):
            t3 = torch.full([3 * batch], grid[i], dtype=x.dtype, device=x.device)
            v3 = self.denoiser.forward(torch.cat([x, x, x], dim=0), t3, c3, s3, i)  # [3B, D, P]
            v_full, v_partial, v_null = split_guidance_batch(v3)
            v = combine_guidance(v_full, v_partial, v_null, guidance_timbre, guidance_structure, self.mode)
            x = euler_step(x, v, grid[i], grid[i + 1])
        return x


def sample_offline(
    denoiser: Denoiser,
    noise: torch.Tensor,
    c: torch.Tensor,
    s: torch.Tensor,
    n_steps: int,
    guidance_timbre: float = 1.0,
    guidance_structure: float = 1.0,
    mode: str = "audio",
    null_value: float = DROP_VALUE,
    schedule: str = "uniform",
) -> torch.Tensor:
    """Offline generation ``[B, D, L]`` (see :meth:`GuidedSampler.sample`)."""
    sampler = GuidedSampler(denoiser, mode, null_value, schedule)
    return sampler.sample(noise, c, s, n_steps, guidance_timbre, guidance_structure)


def sample_stream(
    denoiser: Denoiser,
    noise_chunks: Iterable[torch.Tensor],
    c: torch.Tensor,
    structure_chunks: Iterable[torch.Tensor],
    n_steps: int,
    guidance_timbre: float = 1.0,
    guidance_structure: float = 1.0,
    mode: str = "audio",
    null_value: float = DROP_VALUE,
    schedule: str = "uniform",
) -> Iterator[torch.Tensor]:
    """Yield generated chunks ``[B, D, P_i]`` one after the other from matching noise and structure
    chunks (each ``P_i`` a multiple of K); starts a fresh stream and leaves the denoiser offline at the end.
    """
    sampler = GuidedSampler(denoiser, mode, null_value, schedule)
    init_state(denoiser, 3 * c.size(0))
    try:
        for noise, s in zip(noise_chunks, structure_chunks):
            yield sampler.sample_chunk(noise, c, s, n_steps, guidance_timbre, guidance_structure)
    finally:
        reset_state(denoiser)
