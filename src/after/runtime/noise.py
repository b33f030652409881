"""Position-addressed Gaussian noise: the same latent frame always gets the same noise.

Generation starts from noise ``x0 [B, D, L]``. To make offline and streaming generation (and the
exported nn~ model) agree exactly, the noise of latent frame ``n``, channel ``d``, stream ``b`` is
a pure function of ``(seed, b, d, n)``, computed from an integer hash: cutting a signal into chunks
of any size never changes the noise a frame receives, and every batch element (every ``mc.nn~``
channel) gets its own independent noise.

The hash works on non-negative int64 values kept below 2**32 and multiplies only by constants below
2**31, so no product overflows; two hashed words give two uniforms in (0, 1) and a Box-Muller
transform makes a standard normal value (computed in float64, returned as float32).
Everything here is TorchScript-compatible.
"""

import math

import torch


def _mix(x: torch.Tensor) -> torch.Tensor:
    """32-bit integer hash of int64 values in ``[0, 2**32)`` (same shape)."""
    x = x & 4294967295
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & 4294967295
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & 4294967295
    x = x ^ (x >> 16)
    x = (x * 0x2C1B3C6D) & 4294967295
    return x ^ (x >> 13)


def positional_noise(seed: int, batch: int, channels: int, start: int, frames: int) -> torch.Tensor:
    """Standard normal noise ``[batch, channels, frames]`` for latent frames ``start .. start+frames-1``.

    Args:
        seed: any integer; different seeds give independent noise.
        batch: streams ``B`` (stream ``b`` gets the noise of index ``b``).
        channels: latent channels ``D``.
        start: absolute index of the first frame (frames since the stream began).
        frames: number of frames ``L``.
    """
    b = torch.arange(batch, dtype=torch.long).view(batch, 1, 1)  # [B, 1, 1]
    d = torch.arange(channels, dtype=torch.long).view(1, channels, 1)  # [1, D, 1]
    n = torch.arange(frames, dtype=torch.long).view(1, 1, frames) + start  # [1, 1, L]
    key = _mix(torch.full([1, 1, 1], seed & 4294967295, dtype=torch.long))
    key = _mix(key + b * 0x3C6EF372)
    key = _mix(key + d * 0x1B873593)
    key = _mix(key + (n & 4294967295) * 0x2545F491 + (n >> 32))  # [B, D, L]
    u1 = (_mix(key ^ 0x68E31DA4).to(torch.float64) + 0.5) / 4294967296.0
    u2 = (_mix(key ^ 0x1B56C4E9).to(torch.float64) + 0.5) / 4294967296.0
    normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return normal.to(torch.float32)
