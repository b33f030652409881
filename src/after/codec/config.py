"""Codec configuration: a frozen dataclass and named presets.

The hop (audio samples per latent frame) is ``n_bands * prod(strides)``. The diffusion model wants a
latent frame rate near 21.5 Hz: hop 2048 at 44.1 kHz or hop 1024 at 22.05 kHz.

Why the CPU presets look the way they do (quality per CPU-hour):

* **22.05 kHz**: half the samples of 44.1 kHz for the same seconds of audio, so every layer costs half
  as much per second of training data and of real-time audio; the rendered General-MIDI material has
  little energy above 11 kHz. Hop 1024 keeps the 21.5 Hz frame rate of the original.
* **16 PQMF bands**: the network then runs at 1/16 of the audio rate from its first layer on, which is
  the cheapest way to cover a long receptive field; the fixed filter bank costs almost nothing.
* **few, wide strides** (4·4·4 for ``tiny``): fewer stages mean fewer small convolutions, and at batch
  1 the streaming cost is dominated by per-layer overhead, not arithmetic.
* **narrow channels** and a small latent (16–32): a small latent is also easier for the diffusion
  model to learn. Measured on one core (fwd + bwd + AdamW, L1 loss only, batch 4 × 16384 samples):
  ``tiny`` (0.62 M) 0.14 s/step, ``small`` (6.2 M) 1.0 s/step; ``tiny`` with 16 channels (0.28 M)
  was 0.10 s/step, so 24 channels buy twice the parameters for 40 % more time.
"""

import dataclasses
import math

from after.errors import BadInputError

BOTTLENECKS = ("tanh", "box")


@dataclasses.dataclass(frozen=True)
class CodecConfig:
    """Hyper-parameters of :class:`after.codec.model.Codec`.

    Attributes:
        sample_rate: audio rate in Hz.
        n_bands: PQMF bands (1 = no filter bank).
        channels: base width of the encoder, in channels.
        multipliers: width multipliers, one per encoder stage plus one for the input layer
            (``len(strides) + 1`` values); the decoder mirrors them.
        strides: downsampling factor of each encoder stage (band rate -> latent rate).
        dilations: dilations of the residual units in every stage.
        latent_dim: latent channels ``D``.
        kernel_size: kernel of the residual and input/output convolutions.
        decoder_width: decoder width multiplier (decoder channels = ``int(m * decoder_width) * channels``).
        bottleneck: ``"tanh"`` (latent bounded to ``±bottleneck_scale``) or ``"box"`` (unbounded,
            softly held in the box by the regulariser); see :class:`after.codec.model.Bottleneck`.
        bottleneck_scale: half-width of the latent box.
        bottleneck_noise: std of Gaussian noise added to the latent in training mode only (0 = off).
        loudness: the decoder outputs an amplitude envelope per band (``signal · sigmoid(amp)``).
        weight_norm: weight-normalised convolutions (remove before scripting).
        pqmf_attenuation_db: stop-band attenuation of the PQMF prototype.
        band_gain: fixed gain on the PQMF bands before the encoder, undone after the decoder. The
            bands of music at a normal level have an RMS of a few hundredths; this gain brings them
            near 1 so that the network (which has no normalisation layer) works on unit-scale
            signals. With a gain of 1 the latent starts at ~0.08 RMS and training shrinks it
            further until the decoder ignores it and outputs an input-independent spectrum.
        oscillators: sinusoidal oscillators of the decoder's stateful part (0 = none); see
            :class:`after.codec.oscillators.OscillatorBank`. A decoder-only setting: a codec can gain
            them with ``after train-codec --decoder-only --init-from`` a codec without them.
        oscillator_min_hz: frequency of the lowest oscillator in Hz.
        oscillators_per_octave: oscillators per octave (48: quarter-tone steps, 12 = semitones).
    """

    sample_rate: int = 44100
    n_bands: int = 16
    channels: int = 64
    multipliers: tuple[int, ...] = (1, 2, 4, 4, 8, 8)
    strides: tuple[int, ...] = (2, 2, 2, 4, 4)
    dilations: tuple[int, ...] = (1, 3, 9)
    latent_dim: int = 64
    kernel_size: int = 3
    decoder_width: float = 1.5
    bottleneck: str = "tanh"
    bottleneck_scale: float = 3.0
    bottleneck_noise: float = 0.0
    loudness: bool = True
    weight_norm: bool = True
    pqmf_attenuation_db: float = 100.0
    band_gain: float = 20.0
    oscillators: int = 0
    oscillator_min_hz: float = 27.5
    oscillators_per_octave: int = 48

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be > 0, got {self.sample_rate}")
        if self.n_bands < 1:
            problems.append(f"n_bands must be >= 1, got {self.n_bands}")
        if not self.strides or any(s < 1 for s in self.strides):
            problems.append(f"strides must be a non-empty tuple of ints >= 1, got {self.strides}")
        if len(self.multipliers) != len(self.strides) + 1:
            problems.append(
                f"multipliers needs len(strides) + 1 = {len(self.strides) + 1} values, got {self.multipliers}"
            )
        if any(m < 1 for m in self.multipliers) or self.channels < 1 or self.latent_dim < 1:
            problems.append("channels, multipliers and latent_dim must be >= 1")
        if self.kernel_size < 1 or any(d < 1 for d in self.dilations):
            problems.append(
                f"kernel_size and dilations must be >= 1, got {self.kernel_size}, {self.dilations}"
            )
        if self.decoder_width <= 0:
            problems.append(f"decoder_width must be > 0, got {self.decoder_width}")
        if self.bottleneck not in BOTTLENECKS:
            problems.append(f"bottleneck must be one of {BOTTLENECKS}, got {self.bottleneck!r}")
        if not self.band_gain > 0:
            problems.append(f"band_gain must be > 0, got {self.band_gain}")
        if self.bottleneck_scale <= 0 or self.bottleneck_noise < 0:
            problems.append("bottleneck_scale must be > 0 and bottleneck_noise >= 0")
        if self.oscillators < 0 or self.oscillators_per_octave < 1 or not self.oscillator_min_hz > 0:
            problems.append(
                "oscillators must be >= 0, oscillators_per_octave >= 1 and oscillator_min_hz > 0, got "
                f"{self.oscillators}, {self.oscillators_per_octave}, {self.oscillator_min_hz}"
            )
        elif self.oscillators and self.oscillator_max_hz >= self.sample_rate / 2:
            problems.append(
                f"the highest oscillator ({self.oscillator_max_hz:.0f} Hz) must stay below Nyquist "
                f"({self.sample_rate / 2:.0f} Hz): fewer oscillators or a lower oscillator_min_hz"
            )
        if problems:
            raise BadInputError("invalid codec config: " + "; ".join(problems))

    @property
    def hop(self) -> int:
        """Audio samples per latent frame."""
        return self.n_bands * math.prod(self.strides)

    @property
    def oscillator_max_hz(self) -> float:
        """Frequency of the highest oscillator in Hz (``oscillator_min_hz`` when there are none)."""
        return self.oscillator_min_hz * 2.0 ** (max(self.oscillators - 1, 0) / self.oscillators_per_octave)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop


DECODER_ONLY_FIELDS = ("oscillators", "oscillator_min_hz", "oscillators_per_octave")
"""Config fields that shape only the decoder's oscillator bank: codecs that differ in these alone
share their encoder architecture, so one's weights can start the other and its latents stay valid."""


def encoder_config_differences(mine: dict, theirs: dict) -> str:
    """:func:`after.config.config_differences` of two codec config dicts, leaving out
    :data:`DECODER_ONLY_FIELDS`: ``""`` when one codec's encoder weights fit the other."""
    from after.config import config_differences

    keys = [key for key in sorted(set(mine) | set(theirs)) if key not in DECODER_ONLY_FIELDS]
    return config_differences(mine, theirs, keys)


PRESETS: dict[str, CodecConfig] = {
    # Close to the original: 44.1 kHz, 16 bands x 128 = hop 2048 (21.5 Hz), 64 latent channels.
    "base": CodecConfig(),
    # CPU-trainable: 22.05 kHz, 16 bands x 64 = hop 1024 (21.5 Hz), ~6 M parameters.
    "small": CodecConfig(
        sample_rate=22050,
        n_bands=16,
        channels=32,
        multipliers=(1, 2, 4, 8, 8),
        strides=(2, 2, 4, 4),
        dilations=(1, 3, 9),
        latent_dim=32,
        decoder_width=1.5,
    ),
    # Smallest useful codec: 22.05 kHz, hop 1024 (21.5 Hz), three stages, ~0.6 M parameters, for CPU demos.
    "tiny": CodecConfig(
        sample_rate=22050,
        n_bands=16,
        channels=24,
        multipliers=(1, 2, 4, 8),
        strides=(4, 4, 4),
        dilations=(1, 3),
        latent_dim=16,
        decoder_width=1.0,
    ),
}


def codec_preset(name: str) -> CodecConfig:
    """The preset called ``name``; unknown names raise :class:`~after.errors.BadInputError`."""
    try:
        return PRESETS[name]
    except KeyError:
        raise BadInputError(
            f"unknown codec preset {name!r}; expected one of {', '.join(sorted(PRESETS))}"
        ) from None
