"""Multi-scale complex-STFT discriminator for adversarial codec training.

Each scale looks at the complex STFT of the waveform (real and imaginary parts as 2 image
channels, magnitude compressed/expanded by a power while keeping the phase) through a stack of
weight-normalised 2-D convolutions strided along frequency and dilated along time. It returns a
logit map and the intermediate activations, used for hinge and feature-matching losses
(:mod:`after.codec.losses`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class STFTScaleDiscriminator(nn.Module):
    """One scale: complex STFT of size ``n_fft`` (hop n_fft/2) -> 2-D conv stack -> logits.

    Args:
        n_fft: FFT and window size in samples.
        channels: width of every conv layer.
        dilations: time dilations of the frequency-strided layers.
        magnitude_power: the STFT ``S`` becomes ``S * (|S| + 1e-6) ** magnitude_power``.
    """

    def __init__(
        self,
        n_fft: int,
        channels: int = 32,
        dilations: Sequence[int] = (1, 2, 4),
        magnitude_power: float = 0.5,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop = n_fft // 2
        self.magnitude_power = magnitude_power
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for d in dilations:
            layers.append(
                weight_norm(
                    nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))
                )
            )
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=1)))
        self.layers = nn.ModuleList(layers)
        self.to_logits = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=1))

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio [B,1,T] -> [B, 2 (re, im), frames, n_fft//2+1]."""
        flat = audio.reshape(-1, audio.shape[-1])  # [B, T]
        spec = torch.stft(
            flat, self.n_fft, self.hop, window=self.window, normalized=True, center=False, return_complex=True
        )  # [B, F, frames]
        spec = spec * (spec.abs() + 1e-6) ** self.magnitude_power
        parts = torch.stack([spec.real, spec.imag], dim=1)  # [B, 2, F, frames]
        return parts.transpose(2, 3)  # [B, 2, frames, F]

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Audio [B,1,T] (T >= n_fft) -> (logits [B,1,frames,F'], features: one map per layer)."""
        x = self.spectrogram(audio)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.to_logits(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """Several :class:`STFTScaleDiscriminator` at different FFT sizes, run on the same audio."""

    def __init__(
        self,
        fft_sizes: Sequence[int] = (206, 334, 542, 876, 1418, 2296),
        channels: int = 32,
        magnitude_power: float = 0.5,
    ) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            [STFTScaleDiscriminator(n, channels=channels, magnitude_power=magnitude_power) for n in fft_sizes]
        )

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Audio [B,1,T] -> (logits per scale, feature maps per scale)."""
        logits, features = [], []
        for scale in self.scales:
            scale_logits, scale_features = scale(audio)
            logits.append(scale_logits)
            features.append(scale_features)
        return logits, features
