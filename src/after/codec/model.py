"""Causal, streamable audio codec: PQMF -> conv encoder -> bounded latent -> conv decoder -> PQMF.

Every convolution is a :class:`~after.nn.conv.CausalConv1d` or
:class:`~after.nn.conv.CausalConvTranspose1d` and there is no normalisation layer, so the whole codec
is block-causal and streaming equals offline:

* ``encode``: latent frame ``n`` depends only on audio samples ``< (n + 1) * hop``;
* ``decode``: audio samples ``[n * hop, (n + 1) * hop)`` depend only on latent frames ``<= n``.

Latency convention (as in :mod:`after.nn.conv`): ``latency`` is the algorithmic delay in audio samples
beyond the one block of ``hop`` samples that block processing waits for. Only the PQMF adds delay,
so the reconstruction of input sample ``t`` comes out at sample ``t + latency`` of the output:
``reconstruction[t] ≈ audio[t - latency]`` (use :meth:`Codec.reconstruction_target` to align a
training target). In real time, the delay from a sample entering to its reconstruction leaving is
``hop + latency`` (for blocks of one hop).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from after.codec.oscillators import OscillatorBank
from after.nn.activations import Snake
from after.nn.conv import CausalConv1d, CausalConvTranspose1d, set_conv_weight
from after.nn.pqmf import PQMF

RESIDUAL_BRANCH_GAIN = 0.3
"""Initial gain of every residual branch's last convolution (see :func:`initialise_codec_weights`)."""


def _reinitialise_conv(conv: nn.Conv1d | nn.ConvTranspose1d, std: float) -> None:
    """Draw ``conv``'s weight from ``N(0, std²)`` and zero its bias (weight-normalised or not)."""
    set_conv_weight(conv, torch.randn_like(conv.weight) * std)
    if conv.bias is not None:
        with torch.no_grad():
            conv.bias.zero_()


def initialise_codec_weights(module: nn.Module, residual_gain: float = RESIDUAL_BRANCH_GAIN) -> None:
    """Variance-preserving initialisation of every trainable convolution in ``module``.

    PyTorch's default (weights uniform with variance ``1 / (3 fan_in)``, biases uniform in
    ``±1 / sqrt(fan_in)``) suits networks with normalisation layers. The codec has none (so that it
    streams), and its input bands are small (RMS about a quarter of the audio's), so with that
    default each layer shrinks the signal by ``sqrt(3)`` while adding a bias of the same size: a fresh
    codec's latent was only ~8 % input-dependent and its output ~0.2 %, and training then settled on
    an input-independent "average spectrum" output. Here weights are ``N(0, 1 / fan_in)`` (fan-in of
    a transposed convolution: ``C_in · kernel / stride`` taps reach each output), biases start at
    zero, and the last convolution of every residual branch is scaled by ``residual_gain`` so that the
    residual sums do not grow the signal stage after stage. Frozen convolutions (PQMF) are left alone.
    """
    for child in module.modules():
        if isinstance(child, nn.ConvTranspose1d) and child.weight.requires_grad:
            in_channels, _, taps = child.weight.shape  # [C_in, C_out / groups, k]
            _reinitialise_conv(child, 1.0 / math.sqrt(in_channels * taps / child.stride[0]))
        elif isinstance(child, nn.Conv1d) and child.weight.requires_grad:
            _, in_channels, taps = child.weight.shape  # [C_out, C_in / groups, k]
            _reinitialise_conv(child, 1.0 / math.sqrt(in_channels * taps))
    for child in module.modules():
        if isinstance(child, ResidualUnit):
            last = child.block[-1].conv
            _reinitialise_conv(last, residual_gain / math.sqrt(last.weight.shape[1] * last.weight.shape[2]))


class ResidualUnit(nn.Module):
    """``x + conv1x1(snake(conv_k,d(snake(x))))``: a causal dilated residual unit, ``[B, C, T]`` kept."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, weight_norm: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake(channels),
            CausalConv1d(channels, channels, kernel_size, dilation=dilation, weight_norm=weight_norm),
            Snake(channels),
            CausalConv1d(channels, channels, 1, weight_norm=weight_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Encoder(nn.Module):
    """Bands ``[B, n_bands, T_b] -> raw latent [B, latent_dim, T_b // prod(strides)]``.

    Input conv, then per stage: residual units (one per dilation), Snake, strided conv (kernel
    ``2 * stride``); then Snake and an output conv.
    """

    def __init__(
        self,
        n_bands: int,
        channels: int,
        multipliers: tuple[int, ...],
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        latent_dim: int,
        kernel_size: int,
        weight_norm: bool,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in multipliers]
        layers: list[nn.Module] = [CausalConv1d(n_bands, widths[0], kernel_size, weight_norm=weight_norm)]
        for stage, stride in enumerate(strides):
            width = widths[stage]
            layers += [ResidualUnit(width, kernel_size, d, weight_norm) for d in dilations]
            layers += [
                Snake(width),
                CausalConv1d(width, widths[stage + 1], 2 * stride, stride=stride, weight_norm=weight_norm),
            ]
        layers += [
            Snake(widths[-1]),
            CausalConv1d(widths[-1], latent_dim, kernel_size, weight_norm=weight_norm),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, bands: torch.Tensor) -> torch.Tensor:
        return self.net(bands)


class Decoder(nn.Module):
    """Latent ``[B, latent_dim, L] -> bands [B, n_bands, L * prod(strides)]``.

    Input conv, then per stage (strides reversed): Snake, transposed conv (kernel ``2 * stride``),
    residual units; then Snake and an output conv. With ``loudness`` the output conv gives
    ``2 * n_bands`` channels, split into a signal and an amplitude: ``signal · sigmoid(amplitude)``.
    """

    loudness: bool

    def __init__(
        self,
        n_bands: int,
        channels: int,
        multipliers: tuple[int, ...],
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        latent_dim: int,
        kernel_size: int,
        width: float,
        loudness: bool,
        weight_norm: bool,
    ) -> None:
        super().__init__()
        widths = [max(1, int(m * width)) * channels for m in reversed(multipliers)]
        layers: list[nn.Module] = [CausalConv1d(latent_dim, widths[0], kernel_size, weight_norm=weight_norm)]
        for stage, stride in enumerate(reversed(strides)):
            out_width = widths[stage + 1]
            layers += [
                Snake(widths[stage]),
                CausalConvTranspose1d(widths[stage], out_width, 2 * stride, stride, weight_norm=weight_norm),
            ]
            layers += [ResidualUnit(out_width, kernel_size, d, weight_norm) for d in dilations]
        out_channels = 2 * n_bands if loudness else n_bands
        layers += [
            Snake(widths[-1]),
            CausalConv1d(widths[-1], out_channels, kernel_size, weight_norm=weight_norm),
        ]
        self.net = nn.Sequential(*layers)
        self.loudness = loudness

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        if self.loudness:
            signal, amplitude = out.chunk(2, dim=1)  # 2 x [B, n_bands, T_b]
            out = signal * torch.sigmoid(amplitude)
        return out


class Bottleneck(nn.Module):
    """Keeps the latent in a box of half-width ``scale`` and returns a regulariser.

    * ``"box"``: the latent is the raw encoder output; the regulariser
      ``mean(elu(|z| - scale)) + 1`` (≥ 0, grows outside the box) holds it softly inside.
    * ``"tanh"``: ``z = scale · tanh(raw / scale)`` is strictly bounded; the same regulariser on the raw
      value keeps it out of tanh's flat region.

    In training mode, ``noise`` (std) adds Gaussian noise to the latent (0 = off) so that the
    decoder learns to tolerate small latent errors. The noise is never applied in eval mode.
    """

    bounded: bool
    scale: float
    noise: float

    def __init__(self, kind: str, scale: float, noise: float = 0.0) -> None:
        super().__init__()
        if kind not in ("tanh", "box"):
            raise ValueError(f"bottleneck kind must be 'tanh' or 'box', got {kind!r}")
        self.bounded = kind == "tanh"
        self.scale = scale
        self.noise = noise

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``raw [B, D, L] -> (z [B, D, L], regulariser [])``."""
        regulariser = (F.elu(raw.abs() - self.scale).mean() + 1.0) if raw.numel() > 0 else raw.new_zeros(())
        z = self.scale * torch.tanh(raw / self.scale) if self.bounded else raw
        if self.training and self.noise > 0:
            z = z + self.noise * torch.randn_like(z)
        return z, regulariser


class Codec(nn.Module):
    """Streaming audio autoencoder (see the module docstring for causality and latency).

    Shapes: ``encode``: audio ``[B, 1, T] -> z [B, latent_dim, T // hop]``; ``decode``:
    ``z [B, latent_dim, L] -> audio [B, 1, L * hop]``. In streaming (``after.nn.streaming``), input
    samples that do not complete a frame are kept for the next call.

    Attributes:
        sample_rate: audio rate in Hz.
        hop: audio samples per latent frame.
        latent_dim: latent channels ``D``.
        band_gain: fixed gain on the bands inside the codec (see :class:`~after.codec.config.CodecConfig`).
        encoder_latency / decoder_latency: the parts of ``latency`` due to PQMF analysis / synthesis.
        latency: audio-in to audio-out algorithmic delay in samples (beyond one block).
    """

    sample_rate: int
    hop: int
    latent_dim: int
    band_gain: float
    has_oscillators: bool
    encoder_latency: int
    decoder_latency: int
    latency: int

    def __init__(
        self,
        sample_rate: int,
        n_bands: int,
        channels: int,
        multipliers: tuple[int, ...],
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        latent_dim: int,
        kernel_size: int = 3,
        decoder_width: float = 1.5,
        bottleneck: str = "tanh",
        bottleneck_scale: float = 3.0,
        bottleneck_noise: float = 0.0,
        loudness: bool = True,
        weight_norm: bool = True,
        pqmf_attenuation_db: float = 100.0,
        band_gain: float = 20.0,
        oscillators: int = 0,
        oscillator_min_hz: float = 27.5,
        oscillators_per_octave: int = 48,
    ) -> None:
        super().__init__()
        self.pqmf = PQMF(n_bands, pqmf_attenuation_db)
        self.encoder = Encoder(
            n_bands, channels, multipliers, strides, dilations, latent_dim, kernel_size, weight_norm
        )
        self.bottleneck = Bottleneck(bottleneck, bottleneck_scale, bottleneck_noise)
        self.decoder = Decoder(
            n_bands,
            channels,
            multipliers,
            strides,
            dilations,
            latent_dim,
            kernel_size,
            decoder_width,
            loudness,
            weight_norm,
        )
        self.hop = n_bands * math.prod(strides)
        self.has_oscillators = oscillators > 0
        # a placeholder keeps TorchScript's attribute types fixed when there is no bank
        self.decoder.oscillators = (
            OscillatorBank(
                latent_dim,
                self.hop,
                sample_rate,
                oscillators,
                oscillator_min_hz,
                oscillators_per_octave,
                weight_norm=weight_norm,
            )
            if self.has_oscillators
            else nn.Identity()
        )
        initialise_codec_weights(self)
        if isinstance(self.decoder.oscillators, OscillatorBank):
            self.decoder.oscillators.quiet_start()
        self.band_gain = float(band_gain)
        self.sample_rate = sample_rate
        self.latent_dim = latent_dim
        self.encoder_latency = self.pqmf.analysis_latency
        self.decoder_latency = self.pqmf.synthesis_latency
        self.latency = self.encoder_latency + self.decoder_latency

    @classmethod
    def from_config(cls, config: "CodecConfig") -> "Codec":  # noqa: F821
        """Build a codec from a :class:`after.codec.config.CodecConfig`."""
        return cls(
            sample_rate=config.sample_rate,
            n_bands=config.n_bands,
            channels=config.channels,
            multipliers=tuple(config.multipliers),
            strides=tuple(config.strides),
            dilations=tuple(config.dilations),
            latent_dim=config.latent_dim,
            kernel_size=config.kernel_size,
            decoder_width=config.decoder_width,
            bottleneck=config.bottleneck,
            bottleneck_scale=config.bottleneck_scale,
            bottleneck_noise=config.bottleneck_noise,
            loudness=config.loudness,
            weight_norm=config.weight_norm,
            pqmf_attenuation_db=config.pqmf_attenuation_db,
            band_gain=config.band_gain,
            oscillators=config.oscillators,
            oscillator_min_hz=config.oscillator_min_hz,
            oscillators_per_octave=config.oscillators_per_octave,
        )

    def encode_with_regulariser(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``audio [B, 1, T] -> (z [B, D, T // hop], regulariser [])``."""
        return self.bottleneck(self.encoder(self.pqmf.analysis(audio) * self.band_gain))

    @torch.jit.export
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio [B, 1, T] -> z [B, latent_dim, T // hop]``."""
        return self.encode_with_regulariser(audio)[0]

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, latent_dim, L] -> audio [B, 1, L * hop]``: PQMF synthesis of the decoded bands, plus
        the oscillator bank's sinusoids when the codec has one."""
        audio = self.decode_convolutional(z)
        if self.has_oscillators:
            audio = audio + self.decoder.oscillators(z)
        return audio

    def decode_convolutional(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, latent_dim, L] -> audio [B, 1, L * hop]`` of the convolutional decoder alone (PQMF
        synthesis of its bands), without the oscillator bank: :meth:`decode` when there is none."""
        return self.pqmf.synthesis(self.decoder(z) / self.band_gain)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: ``audio [B, 1, T] -> (reconstruction [B, 1, T // hop * hop], z, regulariser)``.

        The reconstruction lags the input by ``latency`` samples; compare it with
        :meth:`reconstruction_target`.
        """
        z, regulariser = self.encode_with_regulariser(audio)
        return self.decode(z), z, regulariser

    @torch.jit.export
    def reconstruction_target(self, audio: torch.Tensor) -> torch.Tensor:
        """The input as the reconstruction should look: delayed by ``latency``, cut to whole hops.

        ``audio [B, 1, T] -> [B, 1, T // hop * hop]`` (zeros for the first ``latency`` samples).
        """
        length = audio.size(-1) // self.hop * self.hop
        return F.pad(audio, (self.latency, 0))[..., :length]
