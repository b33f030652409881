"""Rectified-flow objective: straight paths from noise to data.

Convention used everywhere in the project: flow time ``t = 0`` is pure noise ``x0 ~ N(0, I)`` and
``t = 1`` is data ``x1``. A point on the path is ``x_t = (1 - t) x0 + t x1`` and its velocity is the
constant ``x1 - x0``; the denoiser learns to predict that velocity from ``(x_t, t, conditions)``.

Shapes: latents are ``[B, D, L]`` (batch, codec latent channels, latent frames); ``t`` is ``[B]`` and
is broadcast over the other dimensions.
"""

import math

import torch
from torch.nn import functional as F

TIME_SCHEDULES = ("uniform", "logit_normal")


def _expand_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t [B] -> [B, 1, ..., 1]`` with as many dimensions as ``like``."""
    return t.reshape([t.size(0)] + [1] * (like.dim() - 1))  # [B, 1, ..., 1]


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Point of the straight path at time ``t``.

    Args:
        x0: noise ``[B, ...]``.
        x1: data ``[B, ...]`` (same shape).
        t: flow times ``[B]`` in ``[0, 1]`` (0 = noise, 1 = data).

    Returns:
        ``x_t = (1 - t) * x0 + t * x1``, shape ``[B, ...]``.
    """
    t = _expand_time(t, x0)
    return (1.0 - t) * x0 + t * x1


def velocity_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Velocity of the straight path (independent of ``t``): ``x1 - x0``, shape ``[B, ...]``."""
    return x1 - x0


def flow_loss(v_pred: torch.Tensor, v_target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and target velocities (a scalar)."""
    return F.mse_loss(v_pred, v_target)


def sample_time(
    batch_size: int,
    generator: torch.Generator | None = None,
    schedule: str = "uniform",
    device: torch.device | None = None,
) -> torch.Tensor:
    """Draw training flow times ``t [B]`` in ``[0, 1]``.

    Args:
        batch_size: number of times ``B``.
        generator: random generator (``None`` = the global one).
        schedule: ``"uniform"`` (``t ~ U(0, 1)``, the original's choice) or ``"logit_normal"``
            (``t = sigmoid(n)``, ``n ~ N(0, 1)``: more samples at mid-path).
        device: device of the result.
    """
    if schedule == "uniform":
        return torch.rand(batch_size, generator=generator, device=device)
    if schedule == "logit_normal":
        return torch.sigmoid(torch.randn(batch_size, generator=generator, device=device))
    raise ValueError(f"unknown time schedule {schedule!r}; expected one of {TIME_SCHEDULES}")


def time_grid(n_steps: int, schedule: str = "uniform") -> torch.Tensor:
    """Sampling times ``[n_steps + 1]`` from 0 (noise) to 1 (data), increasing.

    Schedules: ``"uniform"`` (``t_i = i / N``, as in the original), ``"cosine"`` (smaller steps near
    the data end: ``t_i = sin(pi/2 * i / N)``). Step ``i`` goes from ``t_i`` to ``t_{i+1}``.
    """
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    u = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    if schedule == "uniform":
        grid = u
    elif schedule == "cosine":
        grid = torch.sin(u * (math.pi / 2.0))
    else:
        raise ValueError("unknown sampling schedule '" + schedule + "'; expected 'uniform' or 'cosine'")
    grid[0] = 0.0
    grid[-1] = 1.0
    return grid.to(torch.float32)


def euler_step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Euler step along the flow: ``x + (t_next - t) * v`` (shapes ``[B, ...]``)."""
    return x + (t_next - t) * v
