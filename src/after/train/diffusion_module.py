"""Lightning module that trains the AFTER diffusion model (encoders + denoiser) by rectified flow.

Every batch ``(x1, structure, reference, family)`` (see :mod:`after.train.latent_data`) makes one
step of the main optimiser (AdamW over the timbre encoder, structure encoder and denoiser):

1. ``c = timbre_encoder(reference)``, ``s = structure_encoder(structure)``;
2. noise augmentation ``c += timbre_noise * N``, ``s += structure_noise * N``, then condition drops
   (:func:`after.diffusion.guidance.drop_conditions`), so dropped values stay exactly the null value;
3. ``loss = flow_loss(v(x_t, t, c, s), x1 - x0) + box_weight * (box(c) + box(s))
   - lambda_adv(step) * classifier_loss(classifier(s_noisy), c)``.

Phases (audio mode; ``TrainConfig.phase1_steps``):

* phase 1 (``step < phase1_steps``): the structure encoder is not run and ``s`` is the null value;
  only the joint drop (rate ``p_both``) applies; no adversary.
* phase 2: the timbre encoder is frozen (no gradient, eval mode; unless ``TrainConfig.freeze_timbre``
  is off, sensible with structure twins, where ``s`` cannot carry the target's timbre and the
  classifier's target moving is no loss); the structure encoder is trained
  and the full drop scheme applies. Each batch *also* makes one step of the classifier's own AdamW
  on ``cosine_classifier_loss(classifier(s_noisy.detach()), c)``, after the main step. So, unlike the
  original (two classifier batches for one denoiser batch), every batch trains both players.
  The classifier step goes to the raw optimiser, so Lightning's ``global_step`` counts batches.

MIDI mode: one phase (everything trained from step 0), no adversary.

Gradients of every trained parameter are clipped by norm. An exponential moving average of the
whole model (:class:`torch.optim.swa_utils.AveragedModel`) is updated after every batch; it is the
model that validation and export use. At the phase switch, the EMA's timbre encoder takes the
frozen raw weights, so the denoiser learns with exactly the encoder it will run with.

Validation (eval mode, no gradient, EMA model): flow loss with undropped conditions (phase-1
validation keeps ``s`` null), the leakage probe (:mod:`after.diffusion.probe`, family from
time-pooled ``s``), and, when a codec decoder is given, audio examples in TensorBoard: the decoded
target, its reconstruction, and a transfer with the timbres rolled by one inside the batch.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from after.diffusion.config import DiffusionConfig
from after.diffusion.encoders import box_penalty, cosine_classifier_loss
from after.diffusion.flow import flow_loss, interpolate, sample_time, velocity_target
from after.diffusion.guidance import drop_conditions
from after.diffusion.model import AfterModel
from after.diffusion.probe import linear_probe, pool_structure
from after.train.diffusion_config import TrainConfig

log = logging.getLogger(__name__)


class DiffusionModule(L.LightningModule):
    """Trains an :class:`AfterModel`; checkpoints hold ``model.*`` (raw) and ``ema.module.*`` weights.

    Args:
        model: the networks (from :func:`after.diffusion.model.build_model`).
        config: the model's config (mode, drop value and rates, time schedule).
        training: the training settings.
        codec: optional codec handle with ``decode(z [B, D, L]) -> audio [B, 1, T]`` and
            ``sample_rate``, used for the validation audio examples only.
    """

    def __init__(
        self, model: AfterModel, config: DiffusionConfig, training: TrainConfig, codec: Any = None
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.config = config
        self.training_config = training
        self.codec = codec
        self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(training.ema_decay))
        self.ema.requires_grad_(False)
        self.audio_mode = config.mode == "audio"
        self._probe_features: list[torch.Tensor] = []
        self._probe_labels: list[torch.Tensor] = []

    # -- schedule --------------------------------------------------------------------------------
    def in_phase2(self, step: int) -> bool:
        """Whether ``step`` is in phase 2 (audio mode only; MIDI mode has a single phase)."""
        return self.audio_mode and step >= self.training_config.phase1_steps

    def drop_rates(self, step: int) -> tuple[float, float, float]:
        """Drop rates at ``step``: phase 1 keeps only the joint drop."""
        rates = self.training_config.drop_rates or self.config.drop_rates
        if self.audio_mode and not self.in_phase2(step):
            return (rates[0], 0.0, 0.0)
        return tuple(rates)  # type: ignore[return-value]

    def timbre_frozen(self, step: int) -> bool:
        """Whether the timbre encoder is frozen at ``step``: in phase 2, unless
        ``TrainConfig.freeze_timbre`` is off."""
        return self.in_phase2(step) and self.training_config.freeze_timbre

    def _set_frozen(self, step: int) -> None:
        """Phase 2: timbre encoder without gradients and in eval mode (Lightning calls ``train()``
        after every validation, so this is enforced at each step)."""
        if self.timbre_frozen(step):
            self.model.timbre_encoder.requires_grad_(False)
            self.model.timbre_encoder.eval()

    # -- Lightning hooks -------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        cfg = self.training_config
        main_params = [
            *self.model.timbre_encoder.parameters(),
            *self.model.structure_encoder.parameters(),
            *self.model.denoiser.parameters(),
        ]
        main = torch.optim.AdamW(
            main_params, cfg.learning_rate, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        if self.model.classifier is None:
            return [main]
        classifier = torch.optim.AdamW(
            self.model.classifier.parameters(),
            cfg.classifier_learning_rate,
            betas=cfg.betas,
            weight_decay=cfg.weight_decay,
        )
        return [main, classifier]

    def _optimizers(self) -> tuple[Any, Any]:
        optimizers = self.optimizers()
        if isinstance(optimizers, list):
            return optimizers[0], optimizers[1]
        return optimizers, None

    def _noise(self, x: torch.Tensor, std: float) -> torch.Tensor:
        return x + std * torch.randn_like(x) if std > 0 else x

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        cfg = self.training_config
        step = self.global_step
        phase2 = self.in_phase2(step)
        self._set_frozen(step)
        main_opt, classifier_opt = self._optimizers()
        x1 = batch["x1"]  # [B, D, L]
        model = self.model

        frozen = self.timbre_frozen(step)
        if frozen:
            with torch.no_grad():
                c = model.encode_timbre(batch["reference"])  # [B, ZT]
        else:
            c = model.encode_timbre(batch["reference"])
        if self.audio_mode and not phase2:
            s = torch.full(
                (x1.size(0), self.config.structure_dim, x1.size(-1)), self.config.drop_value, device=x1.device
            )  # [B, ZS, L], null structure in phase 1
            s_noisy = s
        else:
            s = model.encode_structure(batch["structure"])  # [B, ZS, L]
            s_noisy = self._noise(s, cfg.structure_noise)
        c_noisy = self._noise(c, cfg.timbre_noise)
        c_in, s_in, _, _ = drop_conditions(
            c_noisy, s_noisy, self.drop_rates(step), None, self.config.drop_value
        )

        x0 = torch.randn_like(x1)
        t = sample_time(x1.size(0), None, self.config.time_schedule, x1.device)
        v = model(interpolate(x0, x1, t), t, c_in, s_in)
        flow = flow_loss(v, velocity_target(x0, x1))
        box_c = box_penalty(c) if not frozen else torch.zeros((), device=x1.device)
        box_s = box_penalty(s) if (phase2 or not self.audio_mode) else torch.zeros((), device=x1.device)
        loss = flow + cfg.box_weight * (box_c + box_s)
        adv_weight = cfg.adversary_weight_at(step) if model.classifier is not None else 0.0
        if phase2 and adv_weight > 0:
            fooled = cosine_classifier_loss(model.classifier(s_noisy), c.detach())  # adversary moves s only
            loss = loss - adv_weight * fooled

        main_opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(main_opt, gradient_clip_val=cfg.grad_clip, gradient_clip_algorithm="norm")
        main_opt.step()

        if phase2 and classifier_opt is not None:
            classifier_opt.zero_grad()  # also drops the gradients the adversarial term left here
            classifier_loss = cosine_classifier_loss(model.classifier(s_noisy.detach()), c.detach())
            self.manual_backward(classifier_loss)
            self.clip_gradients(
                classifier_opt, gradient_clip_val=cfg.grad_clip, gradient_clip_algorithm="norm"
            )
            classifier_opt.optimizer.step()  # raw step: global_step keeps counting batches
            self.log("train/classifier", classifier_loss.detach())
        if frozen and step == cfg.phase1_steps:
            self._sync_frozen_timbre()
        self.ema.update_parameters(self.model)
        self.log("train/flow", flow.detach(), prog_bar=True)
        self.log("train/loss", loss.detach())
        self.log("train/box_c", box_c.detach())
        self.log("train/box_s", box_s.detach())
        self.log("train/adversarial_weight", float(adv_weight))
        self.log("train/phase", 2.0 if phase2 or not self.audio_mode else 1.0)
        return loss.detach()

    def _sync_frozen_timbre(self) -> None:
        """Give the EMA the frozen raw timbre encoder (once, on the first phase-2 batch; the EMA
        update that follows leaves it unchanged since raw and average are then equal)."""
        with torch.no_grad():
            for ema_p, raw_p in zip(
                self.ema.module.timbre_encoder.parameters(), self.model.timbre_encoder.parameters()
            ):
                ema_p.copy_(raw_p)

    # -- validation ------------------------------------------------------------------------------
    def _conditions(
        self, model: AfterModel, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = model.encode_timbre(batch["reference"])  # [B, ZT]
        s = model.encode_structure(batch["structure"])  # [B, ZS, L]
        return c, s

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        model: AfterModel = self.ema.module
        x1 = batch["x1"]  # [B, D, L]
        c, s = self._conditions(model, batch)
        self._probe_features.append(pool_structure(s).float().cpu())
        self._probe_labels.append(batch["family"].cpu())
        s_used = (
            s
            if (self.in_phase2(self.global_step) or not self.audio_mode)
            else torch.full_like(s, self.config.drop_value)
        )
        generator = torch.Generator(device=x1.device).manual_seed(batch_idx)
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device)
        t = sample_time(x1.size(0), generator, self.config.time_schedule, x1.device)
        loss = flow_loss(model(interpolate(x0, x1, t), t, c, s_used), velocity_target(x0, x1))
        self.log("val/flow", loss, prog_bar=True, sync_dist=True)
        if batch_idx == 0 and self.codec is not None and self.global_rank == 0:
            self._log_audio(model, x1, c, s_used, generator)
        return loss

    def on_validation_epoch_end(self) -> None:
        if not self._probe_features:
            return
        result = linear_probe(torch.cat(self._probe_features), torch.cat(self._probe_labels))
        self._probe_features, self._probe_labels = [], []
        if result is None:
            log.debug("leakage probe skipped: validation batches hold fewer than two known families")
            return
        self.log("val/probe_accuracy", result.accuracy, rank_zero_only=True)
        self.log("val/probe_chance", result.chance, rank_zero_only=True)
        self.log("val/probe_above_chance", result.above_chance, rank_zero_only=True)

    def _log_audio(
        self,
        model: AfterModel,
        x1: torch.Tensor,
        c: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        """Decode target, reconstruction and transfer (timbres rolled by one) into TensorBoard."""
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_audio"):
            return
        cfg = self.training_config
        n = min(cfg.val_examples, x1.size(0))
        noise = torch.randn(x1[:n].shape, generator=generator, device=x1.device)
        steps, g_t, g_s = cfg.val_sample_steps, self.config.guidance_timbre, self.config.guidance_structure
        reconstruction = model.sample(noise, c[:n], s[:n], steps, g_t, g_s)
        transfer = model.sample(noise, torch.roll(c, 1, dims=0)[:n], s[:n], steps, g_t, g_s)
        rate = int(self.codec.sample_rate)
        for name, z in (("target", x1[:n]), ("reconstruction", reconstruction), ("transfer", transfer)):
            audio = self.codec.decode(z.detach().float().cpu())  # [n, 1, T]
            for i in range(n):
                experiment.add_audio(f"audio/{i}/{name}", audio[i].clamp(-1, 1), self.global_step, rate)
