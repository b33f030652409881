"""Codec training losses: multi-resolution STFT and log-frequency distances, latent regulariser,
adversarial terms.

Every loss takes and returns tensors; none keeps state. Shapes use B batch, C channels (1 for the
codec), T samples. Logits and feature lists come from :mod:`after.codec.discriminator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _a_weighting_raw(f2: torch.Tensor) -> torch.Tensor:
    """Unnormalised analog A-weighting gain from squared frequencies ``f2`` (Hz^2)."""
    numerator = (12194.0**2) * f2**2
    denominator = (f2 + 20.6**2) * torch.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
    return numerator / denominator


def a_weighting_gain(frequencies_hz: torch.Tensor) -> torch.Tensor:
    """Linear gain of the analog A-weighting curve, normalised to 1 at 1 kHz.

    ``frequencies_hz`` is any tensor of frequencies in Hz; the result has the same shape.
    """
    reference = _a_weighting_raw(torch.tensor(1000.0, dtype=torch.float64) ** 2)
    return (_a_weighting_raw(frequencies_hz.double() ** 2) / reference).float()


def a_weighting_fir(sample_rate: int, num_taps: int = 101) -> torch.Tensor:
    """Linear-phase FIR [num_taps] whose magnitude follows the A-weighting curve up to Nyquist.

    Designed by frequency sampling (``scipy.signal.firwin2``) on a grid of 512 points.
    """
    from scipy.signal import firwin2

    if num_taps % 2 == 0:
        raise ValueError(f"num_taps must be odd for a linear-phase filter, got {num_taps}")
    grid = torch.linspace(0.0, sample_rate / 2, 512, dtype=torch.float64)
    gains = a_weighting_gain(grid).double()
    taps = firwin2(num_taps, grid.numpy(), gains.numpy(), fs=sample_rate)
    return torch.as_tensor(taps, dtype=torch.float32)


def stft_magnitude(audio: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Magnitude STFT of ``audio`` [B,C,T] -> [B*C, n_fft//2+1, frames], floored at 1e-4 (sqrt of 1e-8)."""
    flat = audio.reshape(-1, audio.shape[-1])  # [B*C, T]
    spec = torch.stft(
        flat, n_fft, hop_length=hop, win_length=n_fft, window=window, center=True, return_complex=True
    )
    return torch.sqrt((spec.real**2 + spec.imag**2).clamp(min=1e-8))


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over FFT sizes of spectral convergence + L1 distance of log magnitudes.

    For each size N (Hann window of N, hop N/4): ``||Y| - |X||_F / ||Y|_F`` (norms over the whole
    batch, so that a nearly silent example cannot blow the ratio up) plus
    ``mean |log|X| - log|Y||`` where X is the prediction and Y the target. With ``perceptual=True``
    both signals first go through an A-weighting FIR, so errors weigh as they are heard.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (2048, 1024, 512, 256, 128, 64, 32),
        perceptual: bool = False,
        sample_rate: int = 44100,
    ) -> None:
        super().__init__()
        self.fft_sizes = tuple(int(n) for n in fft_sizes)
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)
        self.perceptual = perceptual
        if perceptual:
            self.register_buffer("weighting", a_weighting_fir(sample_rate).view(1, 1, -1), persistent=False)

    def prefilter(self, audio: torch.Tensor) -> torch.Tensor:
        """Apply the perceptual FIR (same length, zero-phase alignment) to ``audio`` [B,C,T]."""
        if not self.perceptual:
            return audio
        taps = self.weighting.shape[-1]
        flat = audio.reshape(-1, 1, audio.shape[-1])  # [B*C, 1, T]
        filtered = F.conv1d(F.pad(flat, (taps // 2, taps // 2)), self.weighting)
        return filtered.reshape(audio.shape)  # [B, C, T]

    def per_resolution(self, prediction: torch.Tensor, target: torch.Tensor) -> dict[int, torch.Tensor]:
        """Loss for each FFT size, keyed by size."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        prediction = self.prefilter(prediction)
        target = self.prefilter(target)
        losses: dict[int, torch.Tensor] = {}
        for n in self.fft_sizes:
            window = getattr(self, f"window_{n}")
            x = stft_magnitude(prediction, n, n // 4, window)
            y = stft_magnitude(target, n, n // 4, window)
            # one Frobenius norm over the whole batch: a per-example ratio explodes on a nearly
            # silent crop (its tiny |Y| in the denominator) and then dominates the gradient
            convergence = torch.linalg.norm(y - x) / torch.linalg.norm(y).clamp_min(1e-8)
            log_distance = (x.log() - y.log()).abs().mean()
            losses[n] = convergence + log_distance
        return losses

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss between ``prediction`` and ``target`` [B,C,T]."""
        values = list(self.per_resolution(prediction, target).values())
        return torch.stack(values).mean()


class SpectralConvergenceLoss(nn.Module):
    """Mean over FFT sizes of ``||Y| - |X||_F / ||Y|_F`` (norms over the whole batch; Hann window of
    N, hop N/4), without the log-magnitude term of :class:`MultiResolutionSTFTLoss`.

    Linear magnitudes weigh the strong partials and ignore the quiet bins; at large FFT sizes (a
    2.7-Hz bin at 8192 and 22.05 kHz) a partial a quarter tone off misses the target's bins
    entirely. That makes it the loss that teaches a decoder's oscillator bank
    (:class:`after.codec.oscillators.OscillatorBank`) on its own: the log term over every bin would
    pull all oscillators near a partial up alike, and the coarse sizes cannot tell them apart.
    """

    def __init__(self, fft_sizes: Sequence[int] = (8192, 4096)) -> None:
        super().__init__()
        self.fft_sizes = tuple(int(n) for n in fft_sizes)
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scalar loss between ``prediction`` and ``target`` [B,C,T] (same shape).

        With ``present`` (same shape: what another part of a model already plays), the target
        magnitude is what ``present`` lacks, ``max(|Y| - |P|, 0)`` bin by bin, and no gradient flows
        into ``present``.
        """
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        if present is not None and present.shape != target.shape:
            raise ValueError(f"present {tuple(present.shape)} and target {tuple(target.shape)} differ")
        values = []
        for n in self.fft_sizes:
            window = getattr(self, f"window_{n}")
            x = stft_magnitude(prediction, n, n // 4, window)
            y = stft_magnitude(target, n, n // 4, window)
            if present is not None:
                y = torch.relu(y - stft_magnitude(present.detach(), n, n // 4, window))
            values.append(torch.linalg.norm(y - x) / torch.linalg.norm(y).clamp_min(1e-8))
        return torch.stack(values).mean()


LOG_FREQUENCY_RESOLUTIONS: tuple[tuple[int, float], ...] = (
    (8192, 32.70),
    (4096, 65.41),
    (2048, 130.81),
    (1024, 261.63),
)
"""``(n_fft, lowest filter centre in Hz)`` of :class:`LogFrequencySpectralLoss`: C1, C2, C3, C4, where
a semitone is about 0.7 FFT bin wide."""


class LogFrequencySpectralLoss(nn.Module):
    """Mean over resolutions of the L1 distance of log magnitudes on a log-frequency axis.

    For each ``(n_fft, f_min)`` of :data:`LOG_FREQUENCY_RESOLUTIONS` (Hann window of n_fft, hop
    n_fft/4) the magnitude STFT goes through 12 triangular filters per octave from ``f_min`` to
    Nyquist (:func:`after.nn.mel.log_frequency_filterbank`) and the loss is
    ``mean |log(max(F_X, eps)) - log(max(F_Y, eps))|`` over filters and frames. Every octave gets
    the same number of filters, as in a pitch tracker's constant-Q view: a linear-frequency STFT
    loss spends about 1 % of its bins below 120 Hz, so bass fundamentals and the pitch of low notes
    count for little there (and for less again under A-weighting).
    """

    def __init__(self, sample_rate: int = 44100, floor: float = 1e-5) -> None:
        super().__init__()
        from after.nn.mel import log_frequency_filterbank

        self.floor = float(floor)
        self.fft_sizes = tuple(n_fft for n_fft, _ in LOG_FREQUENCY_RESOLUTIONS)
        for n_fft, f_min in LOG_FREQUENCY_RESOLUTIONS:
            bank = torch.tensor(log_frequency_filterbank(int(sample_rate), n_fft, f_min), dtype=torch.float32)
            self.register_buffer(f"bank_{n_fft}", bank, persistent=False)  # [filters, n_fft//2+1]
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss between ``prediction`` and ``target`` [B,C,T]."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        if prediction.shape[-1] <= max(self.fft_sizes) // 2:
            raise ValueError(
                f"the log-frequency loss needs more than {max(self.fft_sizes) // 2} samples per "
                f"example (its {max(self.fft_sizes)}-point STFT), got {prediction.shape[-1]}"
            )
        losses = []
        for n_fft in self.fft_sizes:
            window = getattr(self, f"window_{n_fft}")
            bank = getattr(self, f"bank_{n_fft}")
            x = bank @ stft_magnitude(prediction, n_fft, n_fft // 4, window)  # [B*C, filters, frames]
            y = bank @ stft_magnitude(target, n_fft, n_fft // 4, window)
            losses.append((x.clamp_min(self.floor).log() - y.clamp_min(self.floor).log()).abs().mean())
        return torch.stack(losses).mean()


def latent_regularizer(z: torch.Tensor, bound: float = 3.0) -> torch.Tensor:
    """Soft box constraint on latents ``z`` [B,D,L]: ``mean(ELU(|z| - bound)) + 1`` (>= 0, ~0 inside)."""
    return F.elu(z.abs() - bound).mean() + 1.0


def regularizer_weight(step: int, weight: float, warmup_steps: int) -> float:
    """Weight of the latent regulariser at ``step``: rises linearly from 0 to ``weight`` over warm-up."""
    if warmup_steps <= 0:
        return weight
    return weight * min(step / warmup_steps, 1.0)


def hinge_discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]
) -> torch.Tensor:
    """``mean(relu(1 - D(x))) + mean(relu(1 + D(y)))`` averaged over discriminator scales."""
    terms = [
        F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits, strict=True)
    ]
    return torch.stack(terms).mean()


def hinge_generator_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Adversarial loss of the generator ``-mean(D(y))`` averaged over scales."""
    return torch.stack([-f.mean() for f in fake_logits]).mean()


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]], fake_features: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """Relative L1 distance of discriminator features: per layer ``mean|f_x - f_y| / mean|f_x|``.

    Averaged over the layers of a scale, then over scales. Real features are treated as constants.
    """
    per_scale = []
    for real_layers, fake_layers in zip(real_features, fake_features, strict=True):
        layer_terms = []
        for real, fake in zip(real_layers, fake_layers, strict=True):
            real = real.detach()
            layer_terms.append((real - fake).abs().mean() / (real.abs().mean() + 1e-8))
        per_scale.append(torch.stack(layer_terms).mean())
    return torch.stack(per_scale).mean()
