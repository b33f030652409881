"""Frozen configurations of the diffusion model (encoders + denoiser) and its named presets.

``latent_dim`` is the codec's latent channel count; training sets it from the codec it uses
(``dataclasses.replace(config, latent_dim=codec.latent_dim)``). :func:`after.diffusion.model.build_model`
turns a :class:`DiffusionConfig` into modules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from after.errors import BadInputError


@dataclass(frozen=True)
class DenoiserConfig:
    """Transformer denoiser.

    ``chunk_size`` (K) and ``window`` (W) define the attention mask (see :mod:`after.nn.attention`):
    a frame sees its chunk and the W frames before it. Streaming calls must bring a multiple of K
    frames, so K is also the smallest inference block (K = 1 gives one-frame latency).
    ``max_steps`` is the number of per-sampling-step KV caches allocated for streaming.
    """

    dim: int = 512
    n_layers: int = 6
    n_heads: int = 8
    mlp_ratio: float = 3.0
    chunk_size: int = 4
    window: int = 12
    max_steps: int = 64
    time_dim: int = 128
    structure_embed_dim: int = 64
    rotary_dim: int = 0
    zero_init: bool = True


@dataclass(frozen=True)
class TimbreEncoderConfig:
    """Compact ECAPA-like timbre encoder (conv + SE blocks, attentive statistics pooling)."""

    channels: int = 256
    dilations: tuple[int, ...] = (1, 2, 3)
    kernel_size: int = 3
    se_dim: int = 64
    attention_dim: int = 128
    use_tanh: bool = False


@dataclass(frozen=True)
class StructureEncoderConfig:
    """Causal conv structure encoder over codec latents (audio mode); ``bound`` = "tanh" or "box"."""

    channels: tuple[int, ...] = (64, 128, 256)
    kernel_size: int = 5
    bound: str = "tanh"


@dataclass(frozen=True)
class ClassifierConfig:
    """Adversarial classifier predicting the timbre from the structure (audio mode)."""

    channels: tuple[int, ...] = (64, 64, 64)
    kernel_size: int = 3


@dataclass(frozen=True)
class MidiEncoderConfig:
    """Small causal encoder over the piano roll ``[B, 2, 128, L]`` (MIDI mode).

    Empty ``channels`` with ``use_encoder=False`` feed the flattened roll (256 channels) directly, in
    which case ``structure_dim`` must be 256.
    """

    use_encoder: bool = True
    channels: tuple[int, ...] = (128,)
    kernel_size: int = 3


@dataclass(frozen=True)
class DiffusionConfig:
    """The whole diffusion model; ``mode`` is "audio" (audio structure) or "midi" (piano roll)."""

    mode: str = "audio"
    latent_dim: int = 64
    timbre_dim: int = 8
    structure_dim: int = 12
    drop_value: float = -4.0
    drop_rates: tuple[float, float, float] = (0.2, 0.2, 0.2)
    time_schedule: str = "uniform"
    sampling_schedule: str = "uniform"
    n_steps: int = 4
    guidance_timbre: float = 1.0
    guidance_structure: float = 1.0
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    timbre: TimbreEncoderConfig = field(default_factory=TimbreEncoderConfig)
    structure: StructureEncoderConfig = field(default_factory=StructureEncoderConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    midi: MidiEncoderConfig = field(default_factory=MidiEncoderConfig)

    def __post_init__(self) -> None:
        if self.mode not in ("audio", "midi"):
            raise BadInputError(f"diffusion config: mode must be 'audio' or 'midi', got {self.mode!r}")
        if self.mode == "midi" and not self.midi.use_encoder and self.structure_dim != 256:
            raise BadInputError(
                f"diffusion config: without a MIDI encoder the structure is the 256-channel roll, "
                f"so structure_dim must be 256, got {self.structure_dim}"
            )
        if self.structure.bound not in ("tanh", "box"):
            raise BadInputError(
                f"diffusion config: structure.bound must be 'tanh' or 'box', got {self.structure.bound!r}"
            )
        if self.denoiser.dim % self.denoiser.n_heads != 0:
            raise BadInputError(
                f"diffusion config: denoiser.dim {self.denoiser.dim} "
                f"not divisible by n_heads {self.denoiser.n_heads}"
            )
        if self.n_steps > self.denoiser.max_steps:
            raise BadInputError(
                f"diffusion config: n_steps {self.n_steps} "
                f"exceeds denoiser.max_steps {self.denoiser.max_steps}"
            )


def _base() -> DiffusionConfig:
    return DiffusionConfig()


def _midi() -> DiffusionConfig:
    return DiffusionConfig(
        mode="midi",
        structure_dim=32,
        drop_rates=(0.2, 0.0, 0.2),
        n_steps=5,
        denoiser=DenoiserConfig(window=16),
        midi=MidiEncoderConfig(use_encoder=True, channels=(128,), kernel_size=3),
    )


_TINY_DENOISER = DenoiserConfig(
    dim=160,
    n_layers=4,
    n_heads=4,
    mlp_ratio=3.0,
    chunk_size=1,
    window=16,
    time_dim=64,
    structure_embed_dim=32,
)


def _tiny() -> DiffusionConfig:
    return DiffusionConfig(
        denoiser=_TINY_DENOISER,
        timbre=TimbreEncoderConfig(channels=96, se_dim=32, attention_dim=48),
        structure=StructureEncoderConfig(channels=(48, 64), kernel_size=5),
        classifier=ClassifierConfig(channels=(32, 32)),
    )


def _tiny_midi() -> DiffusionConfig:
    return dataclasses.replace(
        _tiny(),
        mode="midi",
        structure_dim=16,
        drop_rates=(0.2, 0.0, 0.2),
        midi=MidiEncoderConfig(use_encoder=True, channels=(64,), kernel_size=3),
    )


PRESETS = {"base": _base, "midi": _midi, "tiny": _tiny, "tiny_midi": _tiny_midi}


def diffusion_preset(name: str) -> DiffusionConfig:
    """Named preset: ``base`` (audio, d=512 x 6), ``midi`` (MIDI, d=512 x 6), ``tiny`` / ``tiny_midi``
    (CPU-sized, d=160 x 4, one-frame chunks)."""
    if name not in PRESETS:
        raise BadInputError(f"unknown diffusion preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()
