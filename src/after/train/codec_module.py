"""Lightning module that trains the codec: reconstruction first, then adversarial fine-tuning.

Schedule (``global_step`` counts batches; each batch makes exactly one optimiser step):

* before ``adversarial_start``: generator steps only, loss = multi-resolution STFT distance
  + ``regularizer_weight(step)`` * latent regulariser;
* from ``adversarial_start`` on: one batch in ``discriminator_every`` updates the discriminator
  (hinge loss on real audio vs reconstructions made without gradient); the other batches update the
  codec with the reconstruction and regulariser terms plus feature matching and the hinge
  generator loss. Unlike the original, the reconstruction weight does not decay to zero.

With ``train_encoder=False`` (``after train-codec --decoder-only``) only the decoder learns: the
encoder (and so every latent it makes) stays exactly as it was, so diffusion models trained on this
codec's latents keep working with the new decoder (``after release --decoder-from``).

Two AdamW optimisers (codec, discriminator) under Lightning manual optimisation; gradients are
clipped by norm. The codec is any module with ``encode(audio [B,1,T]) -> z [B,D,L]`` and
``decode(z) -> audio [B,1,T']`` (and optionally ``latency`` in samples: the reconstruction is
compared with the input delayed by that much).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import Dataset

from after.codec.discriminator import MultiScaleSTFTDiscriminator
from after.codec.losses import (
    LogFrequencySpectralLoss,
    MultiResolutionSTFTLoss,
    SpectralConvergenceLoss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    latent_regularizer,
    regularizer_weight,
)
from after.errors import BadInputError
from after.train.run import TrainerOptions, build_trainer, fit, prepare_run

log = logging.getLogger(__name__)


OSCILLATOR_TARGETS = ("whole", "residual")
"""What the oscillator bank's own loss compares the bank with (``CodecTrainingConfig.oscillator_target``)."""


@dataclass(frozen=True)
class CodecTrainingConfig:
    """How the codec is trained (the model itself is described by ``CodecConfig``).

    ``oscillator_weight`` (used only by a codec with an oscillator bank) adds the spectral
    convergence of the bank's output *alone* against the target at ``oscillator_fft_sizes``
    (:class:`~after.codec.losses.SpectralConvergenceLoss`), so that the bank learns the steady
    partials by itself. The reconstruction losses alone do not teach it: from the shipped codec, 150
    decoder-only steps with them only turned every oscillator down, and after the bank had learnt
    (450 steps at weight 5) 100 steps at weight 0 switched it off again (the decoder's own
    frame-periodic partials cost these losses less than the bank's exact ones added to them).

    ``oscillator_target`` is what the bank's own term compares it with: ``"whole"``, the target;
    ``"residual"``, the part of the target's magnitude spectrum that the convolutional decoder's
    output lacks (:class:`~after.codec.losses.SpectralConvergenceLoss` with ``present``), so that
    the bank is asked for the partials the decoder cannot place and not for what it already plays.
    Measured (benchmarks/README.md, run R1): at FFT 8192 nearly every bin between the decoder's
    frame-rate lines counts as missing, so the bank fills the spectrum about as much as with
    ``"whole"``.

    ``fine_spectral_weight`` adds the same spectral convergence on the whole reconstruction, with
    or without a bank: a pitch-precise term, since a partial 40 cents off shares most of its bins
    with the right one at the small FFT sizes and in the 12-per-octave log-frequency loss.
    """

    batch_size: int = 6
    crop_samples: int = 131_072
    learning_rate: float = 1e-4
    generator_betas: tuple[float, float] = (0.9, 0.999)
    discriminator_betas: tuple[float, float] = (0.8, 0.9)
    weight_decay: float = 0.01
    grad_clip: float = 2.0
    stft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64, 32)
    perceptual_weighting: bool = True
    log_frequency_weight: float = 0.0
    regularizer_weight: float = 0.1
    regularizer_warmup: int = 100_000
    latent_bound: float = 3.0
    adversarial_start: int = 200_000
    discriminator_every: int = 4
    feature_matching_weight: float = 20.0
    adversarial_weight: float = 1.0
    discriminator_channels: int = 32
    discriminator_fft_sizes: tuple[int, ...] = (206, 334, 542, 876, 1418, 2296)
    random_gain_db: float = 20.0
    val_examples: int = 2
    train_encoder: bool = True
    oscillator_weight: float = 1.0
    oscillator_fft_sizes: tuple[int, ...] = (8192, 4096)
    oscillator_target: str = "whole"
    fine_spectral_weight: float = 0.0


TRAINING_PRESETS: dict[str, CodecTrainingConfig] = {
    "base": CodecTrainingConfig(),
    "small": CodecTrainingConfig(
        batch_size=8, crop_samples=65_536, learning_rate=5e-4, adversarial_start=100_000
    ),
    "tiny": CodecTrainingConfig(
        batch_size=4,
        crop_samples=16_384,
        learning_rate=1e-3,
        stft_sizes=(1024, 512, 256, 128, 64),
        perceptual_weighting=False,
        regularizer_warmup=1_000,
        adversarial_start=2_000,
        discriminator_channels=8,
        discriminator_fft_sizes=(206, 542, 1418),
        random_gain_db=0.0,
    ),
}


def codec_training_preset(name: str) -> CodecTrainingConfig:
    """Training config of a named preset (base, small, tiny); unknown names are refused."""
    if name not in TRAINING_PRESETS:
        raise BadInputError(
            f"unknown codec training preset {name!r}; expected one of {sorted(TRAINING_PRESETS)}"
        )
    return TRAINING_PRESETS[name]


def align_to_input(
    reconstruction: torch.Tensor, audio: torch.Tensor, delay: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair output sample t + delay with input sample t; both [B,1,T] -> [B,1,T - delay] (common length)."""
    length = min(reconstruction.shape[-1] - delay, audio.shape[-1])
    if length <= 0:
        raise ValueError(f"crop of {audio.shape[-1]} samples is too short for a codec delay of {delay}")
    return reconstruction[..., delay : delay + length], audio[..., :length]


class CodecModule(L.LightningModule):
    """Trains ``codec`` with :class:`CodecTrainingConfig`; checkpoints hold ``codec.*`` and
    ``discriminator.*`` weights."""

    def __init__(self, codec: nn.Module, training: CodecTrainingConfig, sample_rate: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.skipped_steps = 0
        self.codec = codec
        self.training_config = training
        self.sample_rate = int(sample_rate)
        self.delay = int(getattr(codec, "latency", 0) or 0)
        self.discriminator = MultiScaleSTFTDiscriminator(
            training.discriminator_fft_sizes, channels=training.discriminator_channels
        )
        self.reconstruction_loss = MultiResolutionSTFTLoss(
            training.stft_sizes, perceptual=training.perceptual_weighting, sample_rate=sample_rate
        )
        self.log_frequency_loss = (
            LogFrequencySpectralLoss(sample_rate=sample_rate) if training.log_frequency_weight > 0 else None
        )
        # spectral convergence at the large FFT sizes: the bank's own term and / or the whole output's
        self.train_bank = bool(getattr(codec, "has_oscillators", False)) and training.oscillator_weight > 0
        target = training.oscillator_target
        if target not in OSCILLATOR_TARGETS:
            choices = ", ".join(OSCILLATOR_TARGETS)
            raise BadInputError(f"oscillator_target {target!r}: expected one of {choices}")
        wanted = self.train_bank or training.fine_spectral_weight > 0
        self.fine_loss = SpectralConvergenceLoss(training.oscillator_fft_sizes) if wanted else None

        if not training.train_encoder:
            for name, parameter in codec.named_parameters():
                if not name.startswith("decoder."):
                    parameter.requires_grad_(False)

    # -- helpers ---------------------------------------------------------------------------------
    def trained_parameters(self) -> list[nn.Parameter]:
        """The codec parameters the generator optimiser updates (the decoder's alone when the
        encoder is frozen)."""
        return [p for p in self.codec.parameters() if p.requires_grad]

    def reconstruct(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B,1,T] -> (latents z [B,D,L], reconstruction [B,1,T'])."""
        z = self.codec.encode(audio)
        return z, self.codec.decode(z)

    def _augment(self, audio: torch.Tensor) -> torch.Tensor:
        """Random gain per example, uniform in [-random_gain_db, 0] dB."""
        range_db = self.training_config.random_gain_db
        if range_db <= 0:
            return audio
        gain_db = -range_db * torch.rand(audio.shape[0], 1, 1, device=audio.device)
        return audio * 10 ** (gain_db / 20)

    def is_discriminator_step(self, step: int) -> bool:
        """Whether batch ``step`` updates the discriminator (else the codec)."""
        cfg = self.training_config
        return step >= cfg.adversarial_start and (step - cfg.adversarial_start) % cfg.discriminator_every == 0

    # -- Lightning hooks ---------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        cfg = self.training_config
        generator = torch.optim.AdamW(
            self.trained_parameters(),
            cfg.learning_rate,
            betas=cfg.generator_betas,
            weight_decay=cfg.weight_decay,
        )
        discriminator = torch.optim.AdamW(
            self.discriminator.parameters(),
            cfg.learning_rate,
            betas=cfg.discriminator_betas,
            weight_decay=cfg.weight_decay,
        )
        return [generator, discriminator]

    def _clipped_step(self, optimizer: torch.optim.Optimizer, model: nn.Module, name: str) -> torch.Tensor:
        """Clip ``model``'s gradients by norm and step ``optimizer``, unless the norm is not finite.

        A step whose gradients hold NaN or inf is skipped with a warning (the weights and the
        optimiser state stay as they were), so that one bad batch cannot poison a long run. Under
        DDP the gradients are already averaged across ranks here, so every rank takes the same
        decision. Returns the norm before clipping.
        """
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.training_config.grad_clip)
        if torch.isfinite(norm):
            optimizer.step()
        else:
            self.skipped_steps += 1
            log.warning(
                "step %d: %s gradients are not finite (norm %s); step skipped (%d so far)",
                self.global_step, name, norm.item(), self.skipped_steps,
            )  # fmt: skip
        optimizer.zero_grad()
        return norm.detach()

    def _encode(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B,1,T] -> (latents z [B,D,L], latent regulariser []); without gradient when the
        encoder is frozen."""
        with torch.set_grad_enabled(self.training_config.train_encoder and torch.is_grad_enabled()):
            encode_with_regulariser = getattr(self.codec, "encode_with_regulariser", None)
            if encode_with_regulariser is not None:  # the codec knows its own pre-bottleneck regulariser
                return encode_with_regulariser(audio)
            z = self.codec.encode(audio)
            return z, latent_regularizer(z, self.training_config.latent_bound)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        cfg = self.training_config
        audio = self._augment(batch)  # [B, 1, T]
        generator_opt, discriminator_opt = self.optimizers()
        step = self.global_step

        if self.is_discriminator_step(step):
            with torch.no_grad():
                _, fake = self.reconstruct(audio)
            fake, real = align_to_input(fake, audio, self.delay)
            real_logits, _ = self.discriminator(real)
            fake_logits, _ = self.discriminator(fake)
            loss = hinge_discriminator_loss(real_logits, fake_logits)
            discriminator_opt.zero_grad()
            self.manual_backward(loss)
            self._clipped_step(discriminator_opt, self.discriminator, "discriminator")
            self.log("train/discriminator", loss, prog_bar=True)
            return loss.detach()

        z, regularizer = self._encode(audio)
        if self.fine_loss is not None and self.train_bank:  # the two parts of Codec.decode, kept apart
            convolutional = self.codec.decode_convolutional(z)
            bank = self.codec.decoder.oscillators(z)
            reconstruction = convolutional + bank
        else:
            reconstruction = self.codec.decode(z)
        fake, real = align_to_input(reconstruction, audio, self.delay)
        stft = self.reconstruction_loss(fake, real)
        loss = stft
        if self.log_frequency_loss is not None:
            log_frequency = self.log_frequency_loss(fake, real)
            loss = loss + cfg.log_frequency_weight * log_frequency
            self.log("train/log_frequency", log_frequency)
        if self.fine_loss is not None and cfg.fine_spectral_weight > 0:
            fine = self.fine_loss(fake, real)
            loss = loss + cfg.fine_spectral_weight * fine
            self.log("train/fine_spectral", fine)
        if self.fine_loss is not None and self.train_bank:
            alone, real_for_bank = align_to_input(bank, audio, self.delay)
            present = None
            if cfg.oscillator_target == "residual":  # what the convolutional decoder does not play
                present, _ = align_to_input(convolutional, audio, self.delay)
            oscillators = self.fine_loss(alone, real_for_bank, present)
            loss = loss + cfg.oscillator_weight * oscillators
            self.log("train/oscillators", oscillators)
        if cfg.train_encoder:
            weight = regularizer_weight(step, cfg.regularizer_weight, cfg.regularizer_warmup)
            loss = loss + weight * regularizer
        if step >= cfg.adversarial_start:
            real_logits, real_features = self.discriminator(real)
            fake_logits, fake_features = self.discriminator(fake)
            matching = feature_matching_loss(real_features, fake_features)
            adversarial = hinge_generator_loss(fake_logits)
            loss = loss + cfg.feature_matching_weight * matching + cfg.adversarial_weight * adversarial
            self.log("train/feature_matching", matching)
            self.log("train/adversarial", adversarial)
        generator_opt.zero_grad()
        self.manual_backward(loss)
        self.log("train/grad_norm", self._clipped_step(generator_opt, self.codec, "codec"))
        self.log("train/stft", stft, prog_bar=True)
        self.log("train/regularizer", regularizer)
        self.log("train/loss", loss)
        return loss.detach()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        _, reconstruction = self.reconstruct(batch)
        fake, real = align_to_input(reconstruction, batch, self.delay)
        stft = self.reconstruction_loss(fake, real)
        self.log("val/stft", stft, prog_bar=True, sync_dist=True)
        if self.log_frequency_loss is not None:
            self.log("val/log_frequency", self.log_frequency_loss(fake, real), sync_dist=True)
        if batch_idx == 0:
            self._log_audio(real, fake)
        return stft

    def _log_audio(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Write the first examples (input and reconstruction) to TensorBoard."""
        if self.global_rank != 0 or self.logger is None or not hasattr(self.logger.experiment, "add_audio"):
            return
        for i in range(min(self.training_config.val_examples, real.shape[0])):
            for tag, signal in (("input", real[i]), ("reconstruction", fake[i])):
                self.logger.experiment.add_audio(
                    f"audio/{i}/{tag}",
                    signal.detach().float().cpu().clamp(-1, 1),
                    self.global_step,
                    self.sample_rate,
                )


def training_config_with(training: CodecTrainingConfig, **changes: object) -> CodecTrainingConfig:
    """Copy of ``training`` with some fields changed (CLI overrides such as the batch size)."""
    return dataclasses.replace(training, **changes)


def codec_run_config(preset: str, codec: dict, training: CodecTrainingConfig, data: dict) -> dict:
    """The JSON-ready config of a codec run (saved as ``config.json`` and in every checkpoint)."""
    from after.config import to_dict

    return {"kind": "codec", "preset": preset, "codec": codec, "training": to_dict(training), "data": data}


def train_codec(
    out: str | Path,
    run_config: dict,
    options: TrainerOptions,
    resume: bool = False,
    datasets: tuple[Dataset, Dataset | None] | None = None,
    callbacks: list[L.Callback] | None = None,
    num_workers: int = 0,
    init_from: str | Path | None = None,
) -> bool:
    """Train (or resume) the codec described by ``run_config`` into the run folder ``out``.

    ``init_from`` (a codec run folder or checkpoint with the same codec architecture) gives a new
    run its starting weights: fine-tuning a trained codec on other sounds, or continuing a run whose
    optimiser state was not kept. It is ignored when the run resumes from its own checkpoint.

    ``num_workers`` DataLoader processes read the dataset (0: the training process itself).

    ``datasets`` (train, val) replaces the dataset folder named in ``run_config["data"]["path"]``
    (tests, synthetic smoke runs); ``callbacks`` are added to the trainer. On resume, the config
    saved in the run folder is used, except
    for the batch size, which ``run_config`` may change. Returns True when training was interrupted
    (SIGINT/SIGTERM) after writing a checkpoint.
    """
    from after.codec.load import codec_from_run_config
    from after.config import from_dict
    from after.train.audio_data import AudioDataModule, dataset_crops

    run, config, checkpoint = prepare_run(out, run_config, resume)
    training = from_dict(CodecTrainingConfig, config["training"], where=f"{run.config_path}: training")
    training = dataclasses.replace(training, batch_size=run_config["training"]["batch_size"])
    codec = codec_from_run_config(config, where=str(run.config_path))
    if datasets is None:
        data = config["data"]
        crops = dict(
            samples=training.crop_samples, sample_rate=codec.sample_rate, resample=data.get("resample", True)
        )
        datasets = (
            dataset_crops(data["path"], split="train", **crops),
            dataset_crops(data["path"], split="validation", **crops),
        )
    datamodule = AudioDataModule(
        datasets[0], datasets[1], batch_size=training.batch_size, num_workers=num_workers
    )
    if init_from is not None:
        if checkpoint is None:
            initialise_codec(codec, config["codec"], init_from)
        else:
            log.info("resuming %s: --init-from %s is not used", run.path, init_from)
    module = CodecModule(codec, training, codec.sample_rate)
    trainer, checkpoints = build_trainer(run, config, options, callbacks)
    fit(trainer, module, datamodule, checkpoint, seed=options.seed)
    return checkpoints.interrupted


def initialise_codec(codec: nn.Module, codec_config: dict, source: str | Path) -> None:
    """Copy the weights of the codec of ``source`` into ``codec`` (same architecture): a codec run
    folder or checkpoint, a released model folder or a packaged model's name (``default``).

    A codec without oscillators may start one with them (they differ in
    :data:`~after.codec.config.DECODER_ONLY_FIELDS` alone): its weights are copied and the new bank
    starts quiet. Raises :class:`~after.errors.BadInputError` naming ``source`` when it cannot be
    loaded, is a TorchScript file, or its codec config differs from ``codec_config`` otherwise.
    """
    from after.codec.config import encoder_config_differences
    from after.config import config_differences, to_dict
    from after.runtime.bundle import trainable_codec_weights

    source_config, weights = trainable_codec_weights(source, "--init-from")
    theirs = to_dict(source_config)
    details = config_differences(codec_config, theirs)
    if not details:
        codec.load_state_dict({k: v.float() for k, v in weights.items()})
        log.info("codec initialised from %s", source)
        return
    if encoder_config_differences(codec_config, theirs) or theirs.get("oscillators", 0) != 0:
        raise BadInputError(f"--init-from {source}: codec architecture differs ({details})")
    # a codec without oscillators starts one with them: every weight but the new bank's is copied
    missing, unexpected = codec.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    new = [k for k in missing if not k.startswith("decoder.oscillators.")]
    if new or unexpected:
        raise BadInputError(f"--init-from {source}: weights do not fit ({(new + unexpected)[:3]})")
    count = codec_config["oscillators"]
    log.info("codec initialised from %s; its %d new oscillators start quiet", source, count)
