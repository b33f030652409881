"""How the diffusion model is trained: a frozen :class:`TrainConfig` and its named presets.

The model itself is described by :class:`after.diffusion.config.DiffusionConfig`; this config holds
everything else a run needs to be repeated: batch and crop sizes, optimiser settings, the two-phase
schedule, the adversary's weight and warm-up, EMA decay, condition drop rates and noise, the
checkpoint/validation rhythm, and the codec whose latents the model learns. It is saved with the
run (``config.json`` and every checkpoint, see :mod:`after.train.diffusion_run`).

Schedule (audio mode): steps ``< phase1_steps`` train the timbre encoder and the denoiser with the
structure replaced by the null value; from ``phase1_steps`` on, the timbre encoder is frozen (and in
eval mode), the structure encoder is trained and the adversarial classifier plays against it, its
weight rising linearly from 0 to ``adversarial_weight`` over ``adversarial_warmup`` steps. MIDI mode
has one phase (everything trained from step 0) and no adversary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from after.errors import BadInputError


@dataclass(frozen=True)
class TrainConfig:
    """Training settings of a diffusion run (see the module docstring).

    Attributes:
        preset: name of the diffusion model preset (``base``, ``midi``, ``tiny``, ``tiny_midi``).
        batch_size: examples per step and device.
        crop_frames: latent frames per training example (target, structure and timbre reference).
        learning_rate: AdamW learning rate of the encoders and denoiser.
        classifier_learning_rate: AdamW learning rate of the adversarial classifier.
        betas: AdamW betas (both optimisers).
        weight_decay: AdamW weight decay (both optimisers).
        grad_clip: gradient-norm clip, applied to every trained parameter.
        phase1_steps: length of phase 1 (audio mode; 0 = start in phase 2).
        adversarial_weight: final weight of the adversarial term (audio mode).
        adversarial_warmup: steps over which that weight ramps up from 0 after phase 1.
        box_weight: weight of the ``[-1, 1]`` box penalties on ``c`` and ``s``.
        ema_decay: decay of the exponential moving average of all networks.
        drop_rates: ``(p_both, p_timbre, p_structure)`` condition drops; ``None`` = the model's own.
        timbre_noise: std of the Gaussian noise added to ``c`` before dropping.
        structure_noise: std of the Gaussian noise added to ``s`` before dropping.
        shuffle_sizes: segment lengths (frames) for shuffling the timbre reference; empty = off.
        structure_twins: probability that an audio-mode example's structure input is its chunk's
            twin (same notes, another instrument: :mod:`after.data.twins`) instead of the target.
        freeze_timbre: freeze the timbre encoder in phase 2 (audio mode), as the original does.
        checkpoint_every: steps between checkpoints.
        val_every: steps between validations.
        val_batches: validation batches per validation.
        val_sample_steps: Euler steps of the validation audio examples.
        val_examples: audio examples logged per validation.
        num_workers: DataLoader worker processes.
        validation_fraction: share of source files held out for validation.
        codec_path: the codec the latents come from (run folder, checkpoint or TorchScript file).
        codec_id: the id under which the dataset stores that codec's latents.
    """

    preset: str = "tiny"
    batch_size: int = 16
    crop_frames: int = 64
    learning_rate: float = 1e-4
    classifier_learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    phase1_steps: int = 100_000
    adversarial_weight: float = 0.075
    adversarial_warmup: int = 60_000
    box_weight: float = 1.0
    ema_decay: float = 0.999
    drop_rates: tuple[float, float, float] | None = None
    timbre_noise: float = 0.03
    structure_noise: float = 0.015
    shuffle_sizes: tuple[int, ...] = (4, 8)
    structure_twins: float = 0.0
    freeze_timbre: bool = True
    checkpoint_every: int = 25_000
    val_every: int = 10_000
    val_batches: int = 8
    val_sample_steps: int = 10
    val_examples: int = 2
    num_workers: int = 0
    validation_fraction: float = 0.05
    codec_path: str = ""
    codec_id: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.batch_size < 1 or self.crop_frames < 1:
            problems.append(
                f"batch_size and crop_frames must be >= 1, got {self.batch_size}, {self.crop_frames}"
            )
        if self.learning_rate <= 0 or self.classifier_learning_rate <= 0:
            problems.append("learning rates must be > 0")
        if self.phase1_steps < 0 or self.adversarial_warmup < 0:
            problems.append("phase1_steps and adversarial_warmup must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.drop_rates is not None and (
            len(self.drop_rates) != 3 or min(self.drop_rates) < 0 or sum(self.drop_rates) > 1.0 + 1e-9
        ):
            problems.append(f"drop_rates must be 3 values >= 0 summing to <= 1, got {self.drop_rates}")
        if any(size < 1 for size in self.shuffle_sizes):
            problems.append(f"shuffle_sizes must be >= 1, got {self.shuffle_sizes}")
        if not 0.0 <= self.structure_twins <= 1.0:
            problems.append(f"structure_twins must be in [0, 1], got {self.structure_twins}")
        if self.checkpoint_every < 1 or self.val_every < 1 or self.val_sample_steps < 1:
            problems.append("checkpoint_every, val_every and val_sample_steps must be >= 1")
        if problems:
            raise BadInputError("invalid diffusion training config: " + "; ".join(problems))

    def adversary_weight_at(self, step: int) -> float:
        """Adversarial weight at training ``step`` (0 in phase 1, then a linear ramp)."""
        if step < self.phase1_steps:
            return 0.0
        if self.adversarial_warmup == 0:
            return self.adversarial_weight
        return self.adversarial_weight * min(1.0, (step - self.phase1_steps) / self.adversarial_warmup)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # Close to the original: batch 32, 128 frames (~6 s at 21.5 Hz), 100k-step timbre phase.
    "base": TrainConfig(preset="base", batch_size=32, crop_frames=128),
    "midi": TrainConfig(
        preset="midi",
        batch_size=32,
        crop_frames=128,
        phase1_steps=0,
        adversarial_weight=0.0,
        timbre_noise=0.05,
        structure_noise=0.0,
    ),
    # CPU-sized: short crops, a higher learning rate and a short timbre phase.
    "tiny": TrainConfig(
        preset="tiny",
        batch_size=16,
        crop_frames=32,
        learning_rate=5e-4,
        classifier_learning_rate=5e-4,
        phase1_steps=2_000,
        adversarial_warmup=2_000,
        ema_decay=0.995,
        checkpoint_every=1_000,
        val_every=500,
        val_batches=4,
    ),
    "tiny_midi": TrainConfig(
        preset="tiny_midi",
        batch_size=16,
        crop_frames=32,
        learning_rate=5e-4,
        phase1_steps=0,
        adversarial_weight=0.0,
        timbre_noise=0.05,
        structure_noise=0.0,
        ema_decay=0.995,
        checkpoint_every=1_000,
        val_every=500,
        val_batches=4,
    ),
}


def train_preset(name: str) -> TrainConfig:
    """Training config of a named preset (base, midi, tiny, tiny_midi); unknown names are refused."""
    if name not in TRAIN_PRESETS:
        raise BadInputError(
            f"unknown diffusion training preset {name!r}; expected one of {sorted(TRAIN_PRESETS)}"
        )
    return TRAIN_PRESETS[name]


def with_changes(config: TrainConfig, **changes: object) -> TrainConfig:
    """Copy of ``config`` with the given fields changed; ``None`` values are ignored (CLI defaults)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]
