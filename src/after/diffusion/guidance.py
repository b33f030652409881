"""Classifier-free guidance with two scales (timbre and structure), and condition dropping.

One function, :func:`combine_guidance`, is used by training-time sampling, the offline transfer, the
live host and the exported model alike, so they can never disagree.

Three predictions enter, all for the same ``(x_t, t)``:

* ``v_full``: both conditions (timbre ``c`` and structure ``s``);
* ``v_partial``: one condition only. Audio mode: structure only ``(null, s)``. MIDI mode: timbre
  only ``(c, null)`` (the roles swap, matching what each mode drops at training time);
* ``v_null``: neither ``(null, null)``.

With ``g_t`` (timbre scale), ``g_s`` (structure scale) and ``G = (g_s + g_t) / 2``:

* audio: ``k = g_t / max(g_s, eps)``, ``v = v_null + G (v_partial - v_null) + G k (v_full - v_partial)``;
* MIDI:  ``k = g_s / max(g_t, eps)``, same formula with the MIDI ``v_partial``.

``g_s = g_t = g`` gives standard CFG ``v_null + g (v_full - v_null)``; ``g = 1`` gives ``v_full``.
The formula is evaluated as a weighted sum ``w_full v_full + w_partial v_partial + w_null v_null``
(:func:`guidance_weights`), so a branch whose weight is exactly zero contributes exactly nothing:
``w_partial = 0`` when ``k = 1`` (equal scales, both >= eps) and ``w_null = 0`` when ``G = 1``. A
caller may then skip that branch (:func:`branches_needed`); streaming callers should not, because
skipped branches leave their KV caches behind (see :mod:`after.diffusion.sampler`).

A dropped condition is replaced by a constant tensor of the same shape (``DROP_VALUE = -4``, as in the
original); bounded encoders keep real conditions within ``[-1, 1]``, so the two never collide.
Everything here is TorchScript-compatible.
"""

import torch

DROP_VALUE = -4.0
GUIDANCE_EPS = 0.1
MODES = ("audio", "midi")


def guidance_weights(
    guidance_timbre: float, guidance_structure: float, mode: str = "audio", eps: float = GUIDANCE_EPS
) -> tuple[float, float, float]:
    """Weights ``(w_full, w_partial, w_null)`` of the two-scale guidance formula (they sum to 1).

    Args:
        guidance_timbre: timbre scale ``g_t``.
        guidance_structure: structure scale ``g_s``.
        mode: ``"audio"`` (partial = structure only) or ``"midi"`` (partial = timbre only).
        eps: lower bound of the denominator of ``k``.
    """
    big_g = 0.5 * (guidance_structure + guidance_timbre)
    if mode == "audio":
        k = guidance_timbre / max(guidance_structure, eps)
    elif mode == "midi":
        k = guidance_structure / max(guidance_timbre, eps)
    else:
        raise ValueError("guidance mode must be 'audio' or 'midi', got " + mode)
    w_full = big_g * k
    w_partial = big_g - big_g * k
    w_null = 1.0 - big_g
    return w_full, w_partial, w_null


def combine_guidance(
    v_full: torch.Tensor,
    v_partial: torch.Tensor,
    v_null: torch.Tensor,
    guidance_timbre: float,
    guidance_structure: float,
    mode: str = "audio",
    eps: float = GUIDANCE_EPS,
) -> torch.Tensor:
    """Guided velocity from the three predictions (all ``[B, D, L]``); see the module docstring.

    Branches with an exactly-zero weight are not read (they may be any tensor of the right shape).
    """
    w_full, w_partial, w_null = guidance_weights(guidance_timbre, guidance_structure, mode, eps)
    v = v_full * w_full
    if w_partial != 0.0:
        v = v + v_partial * w_partial
    if w_null != 0.0:
        v = v + v_null * w_null
    return v


def branches_needed(
    guidance_timbre: float, guidance_structure: float, mode: str = "audio", eps: float = GUIDANCE_EPS
) -> tuple[bool, bool, bool]:
    """Which of ``(full, partial, null)`` have a non-zero weight (exact, no tolerance)."""
    w_full, w_partial, w_null = guidance_weights(guidance_timbre, guidance_structure, mode, eps)
    return w_full != 0.0, w_partial != 0.0, w_null != 0.0


def null_like(x: torch.Tensor, value: float = DROP_VALUE) -> torch.Tensor:
    """The dropped-condition constant with the shape of ``x``."""
    return torch.full_like(x, value)


def guidance_batch(
    x: torch.Tensor,
    c: torch.Tensor,
    s: torch.Tensor,
    null_c: torch.Tensor,
    null_s: torch.Tensor,
    mode: str = "audio",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack the three guidance branches into one batch of ``3B``.

    Args:
        x: noisy latents ``[B, D, L]``.
        c: timbre ``[B, ZT]``; ``null_c`` its dropped value (broadcastable to ``c``).
        s: structure ``[B, ZS, L]``; ``null_s`` its dropped value (broadcastable to ``s``).
        mode: ``"audio"`` or ``"midi"`` (decides the partial branch).

    Returns:
        ``(x3 [3B, D, L], c3 [3B, ZT], s3 [3B, ZS, L])`` in the order full, partial, null.
    """
    null_c = null_c.expand_as(c)
    null_s = null_s.expand_as(s)
    if mode == "audio":
        c_partial, s_partial = null_c, s
    elif mode == "midi":
        c_partial, s_partial = c, null_s
    else:
        raise ValueError("guidance mode must be 'audio' or 'midi', got " + mode)
    x3 = torch.cat([x, x, x], dim=0)  # [3B, D, L]
    c3 = torch.cat([c, c_partial, null_c], dim=0)  # [3B, ZT]
    s3 = torch.cat([s, s_partial, null_s], dim=0)  # [3B, ZS, L]
    return x3, c3, s3


def split_guidance_batch(v3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a ``[3B, ...]`` prediction into ``(v_full, v_partial, v_null)``, each ``[B, ...]``."""
    if v3.size(0) % 3 != 0:
        raise ValueError("guidance batch size must be a multiple of 3")
    b = v3.size(0) // 3
    return v3[:b], v3[b : 2 * b], v3[2 * b :]


def drop_conditions(
    c: torch.Tensor,
    s: torch.Tensor,
    rates: tuple[float, float, float] = (0.2, 0.2, 0.2),
    generator: torch.Generator | None = None,
    null_value: float = DROP_VALUE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace conditions by the null constant at random, per example (training-time CFG dropout).

    One uniform draw ``u`` per example decides, with ``rates = (p_both, p_timbre, p_structure)``:
    both dropped if ``u < p_both``; timbre only if ``p_both <= u < p_both + p_timbre``; structure
    only in the next interval of width ``p_structure``; nothing otherwise. The original's audio scheme
    is ``(0.2, 0.2, 0.2)``; its MIDI scheme is ``(0.2, 0.0, 0.2)``.

    Args:
        c: timbre ``[B, ZT]``.
        s: structure ``[B, ZS, L]``.
        rates: probabilities of the three drop events (sum <= 1).
        generator: random generator (``None`` = the global one).
        null_value: the constant that stands for a dropped condition.

    Returns:
        ``(c_out [B, ZT], s_out [B, ZS, L], dropped_c [B] bool, dropped_s [B] bool)``.
    """
    p_both, p_timbre, p_structure = rates
    if min(rates) < 0.0 or p_both + p_timbre + p_structure > 1.0 + 1e-9:
        raise ValueError(f"drop rates must be >= 0 and sum to <= 1, got {rates}")
    u = torch.rand(c.size(0), generator=generator, device=c.device)
    both = u < p_both
    timbre_only = (u >= p_both) & (u < p_both + p_timbre)
    structure_only = (u >= p_both + p_timbre) & (u < p_both + p_timbre + p_structure)
    dropped_c = both | timbre_only
    dropped_s = both | structure_only
    c_out = torch.where(dropped_c[:, None], torch.full_like(c, null_value), c)
    s_mask = dropped_s.reshape([-1] + [1] * (s.dim() - 1))  # [B, 1, 1]
    s_out = torch.where(s_mask, torch.full_like(s, null_value), s)
    return c_out, s_out, dropped_c, dropped_s
