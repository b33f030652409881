"""Pointwise activations for audio networks.

:class:`Snake` is a periodic activation that suits waveforms: ``y = x + sin²(α·x) / β`` with a
learnable frequency ``α`` and magnitude ``β`` per channel (both start at 1). It is pointwise, so it
needs no streaming state and adds no latency.
"""

import torch
from torch import nn


class Snake(nn.Module):
    """Snake activation with per-channel frequency and magnitude.

    ``y = x + sin²(α·x) / (β + eps)``, with ``α`` and ``β`` stored as logarithms so that they stay
    positive during training.

    Shapes: ``[B, channels, T] -> [B, channels, T]``.
    """

    def __init__(self, channels: int, eps: float = 1e-9) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(1, channels, 1))
        self.log_beta = nn.Parameter(torch.zeros(1, channels, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.log_alpha.exp()
        beta = self.log_beta.exp()
        return x + torch.sin(alpha * x).pow(2) / (beta + self.eps)
