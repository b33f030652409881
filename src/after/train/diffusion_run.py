"""Diffusion runs: start or resume training, and load a trained model back from its run folder.

Run folder (see :mod:`after.train.run`)::

    RUN/config.json                       the run config below (written at the start)
    RUN/checkpoints/stepNNNNNNNN.ckpt     Lightning checkpoints, loadable with weights_only=True
    RUN/logs/                             TensorBoard (losses, leakage probe, audio examples)

The run config (a JSON object, also stored in every checkpoint under ``"after_config"``)::

    {"kind": "diffusion", "preset": "tiny",
     "diffusion": {... DiffusionConfig ...},      # latent_dim = the codec's latent channels
     "training": {... TrainConfig ...},
     "data": {"path": "/abs/dataset"},
     "codec": {"path": "/abs/codec", "codec_id": "...", "hop": 1024, "latent_dim": 16,
               "sample_rate": 22050}}

A checkpoint's ``state_dict`` holds the raw networks under ``model.`` and their exponential moving
average under ``ema.module.`` (plus ``ema.n_averaged``); the sub-modules are ``timbre_encoder``,
``structure_encoder``, ``denoiser`` and (audio mode) ``classifier``, as in
:class:`after.diffusion.model.AfterModel`. :func:`load_diffusion_run` rebuilds the model from it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from after.config import config_differences
from after.diffusion.config import DiffusionConfig, diffusion_preset
from after.diffusion.model import AfterModel, build_model
from after.errors import BadInputError, ModelFileError
from after.train.diffusion_config import TrainConfig, train_preset, with_changes
from after.train.run import CONFIG_KEY, RunFolder, TrainerOptions, load_checkpoint

log = logging.getLogger(__name__)

RUN_KIND = "diffusion"
RESUME_CHANGEABLE = (
    "batch_size", "checkpoint_every", "val_every", "val_batches", "val_sample_steps", "val_examples",
    "num_workers",
)  # fmt: skip
"""TrainConfig fields a resumed run may change; every other field keeps its saved value."""


def codec_section(codec: Any, path: str | Path) -> dict[str, Any]:
    """The run config's description of a loaded codec handle (:class:`after.codec.load.CodecHandle`)."""
    return {
        # a packaged model's name does not resolve against the working folder: keep its folder
        "path": str(Path(codec.source if codec.kind == "model" else path).resolve()),
        "codec_id": str(codec.codec_id),
        "hop": int(codec.hop),
        "latent_dim": int(codec.latent_dim),
        "sample_rate": int(codec.sample_rate),
    }


def diffusion_run_config(
    preset: str,
    diffusion: DiffusionConfig,
    training: TrainConfig,
    data: dict[str, Any],
    codec: dict[str, Any],
) -> dict[str, Any]:
    """The JSON-ready config of a diffusion run (see the module docstring)."""
    from after.config import to_dict

    return {
        "kind": RUN_KIND,
        "preset": preset,
        "diffusion": to_dict(diffusion),
        "training": to_dict(training),
        "data": data,
        "codec": codec,
    }


def parse_run_config(config: Any, where: str) -> tuple[DiffusionConfig, TrainConfig]:
    """``(DiffusionConfig, TrainConfig)`` of a run config; anything else raises :class:`ModelFileError`."""
    from after.config import from_dict

    if not isinstance(config, dict) or config.get("kind") != RUN_KIND:
        kind = config.get("kind") if isinstance(config, dict) else type(config).__name__
        raise ModelFileError(f"{where}: not a diffusion run (kind {kind!r}, expected {RUN_KIND!r})")
    try:
        diffusion = from_dict(DiffusionConfig, config["diffusion"], where=f"{where}: diffusion")
        training = from_dict(TrainConfig, config["training"], where=f"{where}: training")
    except (KeyError, BadInputError) as error:
        raise ModelFileError(f"{where}: unusable diffusion run config ({error})") from error
    return diffusion, training


def check_codec(diffusion: DiffusionConfig, codec: Any, where: str) -> None:
    """Refuse a codec whose latent size differs from the model's (``where`` names the model)."""
    if int(codec.latent_dim) != diffusion.latent_dim:
        raise BadInputError(
            f"codec {codec.source} has {codec.latent_dim} latent channels, but the diffusion model "
            f"{where} works on {diffusion.latent_dim}; use the codec the model was trained with"
        )


def check_structure_input(diffusion: DiffusionConfig, structure: torch.Tensor, where: str = "model") -> None:
    """Refuse a structure input of the wrong kind for the model's mode.

    Audio mode needs codec latents ``[B, latent_dim, L]``; MIDI mode needs a piano roll
    ``[B, 2, 128, L]`` (or ``[B, 256, L]``). Raises :class:`BadInputError` naming the model.
    """
    shape = tuple(structure.shape)
    if diffusion.mode == "midi":
        ok = (structure.dim() == 4 and shape[1:3] == (2, 128)) or (structure.dim() == 3 and shape[1] == 256)
        if not ok:
            raise BadInputError(
                f"{where} is a MIDI-mode model: its structure input is a piano roll [B, 2, 128, L] "
                f"(MIDI notes), got a tensor of shape {shape} (audio latents?); give it a MIDI file"
            )
    elif structure.dim() != 3 or shape[1] != diffusion.latent_dim:
        raise BadInputError(
            f"{where} is an audio-mode model: its structure input is codec latents "
            f"[B, {diffusion.latent_dim}, L] (audio), got a tensor of shape {shape}"
        )


def _checkpoint_for(path: Path, step: int | None) -> tuple[Path, RunFolder | None]:
    if path.is_file():
        return path, None
    if not path.is_dir():
        raise ModelFileError(f"{path}: diffusion run not found (expected a run folder or a .ckpt file)")
    run = RunFolder(path)
    if step is not None:
        checkpoint = run.checkpoint_path(step)
        if not checkpoint.is_file():
            from after.train.run import checkpoint_step

            have = ", ".join(str(checkpoint_step(p)) for p in run.checkpoints()) or "none"
            raise ModelFileError(f"{path}: no checkpoint of step {step} (steps available: {have})")
        return checkpoint, run
    checkpoint = run.latest_checkpoint()
    if checkpoint is None:
        raise ModelFileError(f"{path}: run folder holds no checkpoint (expected checkpoints/step*.ckpt)")
    return checkpoint, run


def load_diffusion_run(
    run_dir: str | Path, step: int | None = None, ema: bool = True
) -> tuple[AfterModel, DiffusionConfig, TrainConfig]:
    """Rebuild a trained model from a run folder (or one of its ``.ckpt`` files), in eval mode.

    Args:
        run_dir: run folder or checkpoint file.
        step: checkpoint step; default the latest.
        ema: load the exponential moving average (what validation and export use) instead of the raw
            weights.

    Weights are read with ``torch.load(weights_only=True)``. Missing, corrupt or mismatching files
    raise :class:`ModelFileError` naming the file. The codec is described in the run config's
    ``"codec"`` section (see :func:`run_codec_section`).
    """
    checkpoint_path, _ = _checkpoint_for(Path(run_dir), step)
    checkpoint = load_checkpoint(checkpoint_path)
    diffusion, training = parse_run_config(checkpoint.get(CONFIG_KEY), str(checkpoint_path))
    prefix = "ema.module." if ema else "model."
    weights = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if not weights:
        raise ModelFileError(f"{checkpoint_path}: checkpoint holds no {prefix[:-1]!r} weights")
    model = build_model(diffusion)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ModelFileError(
            f"{checkpoint_path}: weights do not match the run's model config ({error})"
        ) from error
    model.eval()
    return model, diffusion, training


def run_codec_section(run_dir: str | Path, step: int | None = None) -> dict[str, Any]:
    """The ``"codec"`` section of a run (path, codec_id, hop, latent_dim, sample_rate)."""
    checkpoint_path, run = _checkpoint_for(Path(run_dir), step)
    config = run.load_config() if run is not None else load_checkpoint(checkpoint_path).get(CONFIG_KEY)
    if not isinstance(config, dict) or "codec" not in config:
        raise ModelFileError(f"{run_dir}: run config names no codec")
    return config["codec"]


def load_run_codec(run_dir: str | Path, codec_path: str | Path | None = None) -> Any:
    """Load the codec a run was trained with (or ``codec_path`` instead), checking its latent size.

    Returns a :class:`after.codec.load.CodecHandle`; a codec with another latent size raises
    :class:`BadInputError`, a missing one :class:`ModelFileError`.
    """
    from after.codec.load import load_codec

    section = run_codec_section(run_dir)
    codec = load_codec(codec_path or section["path"])
    if int(codec.latent_dim) != int(section["latent_dim"]):
        raise BadInputError(
            f"codec {codec.source} has {codec.latent_dim} latent channels, but the diffusion run "
            f"{run_dir} was trained on {section['latent_dim']} (codec {section['path']})"
        )
    return codec


def train_diffusion(
    out: str | Path,
    data: str | Path,
    codec_path: str | Path,
    preset: str = "tiny",
    changes: dict[str, Any] | None = None,
    options: TrainerOptions | None = None,
    resume: bool = False,
    diffusion: DiffusionConfig | None = None,
    callbacks: list[Any] | None = None,
    init_from: str | Path | None = None,
    init_timbre_from: str | Path | None = None,
) -> bool:
    """Train (or resume) a diffusion model on the latents of ``codec_path`` stored in dataset ``data``.

    Args:
        out: run folder.
        data: dataset folder with latents of the codec (``after encode DATA --codec CODEC``).
        codec_path: codec run folder, checkpoint or TorchScript file.
        preset: model and training preset (``base``, ``midi``, ``tiny``, ``tiny_midi``).
        changes: :class:`TrainConfig` fields to override (``None`` values ignored). On resume only
            :data:`RESUME_CHANGEABLE` fields are taken.
        options: steps and hardware (its cadence fields are replaced by the training config's).
        resume: continue from the latest checkpoint in ``out``.
        diffusion: a model config instead of the preset's (its ``latent_dim`` is set from the codec).
        callbacks: extra Lightning callbacks.
        init_from: a diffusion run folder or checkpoint of the same architecture whose weights (its
            moving average) start a new run: fine-tuning on other sounds or on the latents of a
            retrained codec. Ignored when the run resumes from its own checkpoint.
        init_timbre_from: a run, checkpoint or released model (audio or MIDI mode) whose timbre
            encoder replaces the new run's (after ``init_from``); see
            :func:`initialise_timbre_encoder`. Ignored on resume.

    Returns True when training was interrupted (SIGINT/SIGTERM) after writing a checkpoint.
    """
    from after.codec.load import load_codec
    from after.config import to_dict
    from after.train.audio_data import AudioDataModule
    from after.train.diffusion_module import DiffusionModule
    from after.train.latent_data import latent_splits
    from after.train.run import build_trainer, fit, prepare_run

    changes = dict(changes or {})
    codec = load_codec(codec_path)
    codec_description = codec_section(codec, codec_path)
    training = with_changes(
        train_preset(preset), **changes, codec_path=codec_description["path"], codec_id=codec.codec_id
    )
    model_config = dataclasses.replace(
        diffusion or diffusion_preset(preset), latent_dim=int(codec.latent_dim)
    )
    data_section = {"path": str(Path(data).resolve())}
    run_config = diffusion_run_config(preset, model_config, training, data_section, codec_description)
    run, config, checkpoint = prepare_run(out, run_config, resume)
    if checkpoint is not None:
        model_config, saved = parse_run_config(config, str(run.config_path))
        check_codec(model_config, codec, str(run.path))
        if saved.codec_id and saved.codec_id != codec.codec_id:
            raise BadInputError(
                f"{run.path} was trained on latents of codec {saved.codec_id!r}, "
                f"but {codec_path} is codec {codec.codec_id!r}; resume with the same codec"
            )
        training = with_changes(saved, **{k: v for k, v in changes.items() if k in RESUME_CHANGEABLE})
        config = {**config, "training": to_dict(training)}
    train_set, val_set = latent_splits(
        data, training.codec_id, training.crop_frames,
        model_config.mode, training.shuffle_sizes, codec_source=str(codec_path),
        validation_fraction=training.validation_fraction, structure_twins=training.structure_twins,
    )  # fmt: skip
    options = dataclasses.replace(
        options or TrainerOptions(),
        checkpoint_every=training.checkpoint_every,
        val_every=training.val_every,
        val_batches=training.val_batches,
    )
    module = DiffusionModule(build_model(model_config), model_config, training, codec)
    if init_from is not None:
        if checkpoint is None:
            initialise_diffusion(module, model_config, init_from)
        else:
            log.info("resuming %s: --init-from %s is not used", run.path, init_from)
    if init_timbre_from is not None:
        if checkpoint is None:
            initialise_timbre_encoder(module, model_config, init_timbre_from)
        else:
            log.info("resuming %s: --init-timbre-from %s is not used", run.path, init_timbre_from)
    datamodule = AudioDataModule(
        train_set, val_set, batch_size=training.batch_size, num_workers=training.num_workers
    )
    trainer, checkpoints = build_trainer(run, config, options, callbacks)
    fit(trainer, module, datamodule, checkpoint, seed=options.seed)
    return checkpoints.interrupted


def _source_model(source: str | Path, option: str) -> tuple[AfterModel, DiffusionConfig]:
    """The averaged model and config of ``source`` (a diffusion run folder or checkpoint, a released
    model folder or a packaged model's name); :class:`BadInputError` naming ``option`` otherwise."""
    from after.runtime.bundle import is_released_model, load_bundle

    try:
        if is_released_model(source):
            bundle = load_bundle(source)
            return bundle.model, bundle.diffusion_config
        model, source_config, _ = load_diffusion_run(source)
        return model, source_config
    except ModelFileError as error:
        raise BadInputError(f"{option}: {error}") from error


def _load_float(target: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    target.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


SAMPLING_KEYS = ("n_steps", "guidance_timbre", "guidance_structure", "sampling_schedule")
"""Config fields that only set how a model is sampled (``after release`` tunes them); two models
that differ only there share an architecture."""


def initialise_diffusion(module: Any, model_config: DiffusionConfig, source: str | Path) -> None:
    """Copy the averaged weights of ``source`` (a diffusion run folder or checkpoint, a released model
    folder or a packaged model's name) into ``module``'s model and its moving average. Raises
    :class:`BadInputError` naming ``source`` when the architectures (latent size included) differ;
    the sampling settings (:data:`SAMPLING_KEYS`, e.g. a released model's tuned guidance) may."""
    model, source_config = _source_model(source, "--init-from")
    mine, theirs = dataclasses.asdict(model_config), dataclasses.asdict(source_config)
    keys = sorted((set(mine) | set(theirs)) - set(SAMPLING_KEYS))
    details = config_differences(mine, theirs, keys)
    if details:
        raise BadInputError(f"--init-from {source}: model architecture differs ({details})")
    _load_float(module.model, model.state_dict())
    _load_float(module.ema.module, model.state_dict())
    log.info("diffusion model initialised from %s", source)


TIMBRE_KEYS = ("latent_dim", "timbre_dim", "timbre")
"""Config fields two models must share for one's timbre encoder to fit the other."""


def initialise_timbre_encoder(module: Any, model_config: DiffusionConfig, source: str | Path) -> None:
    """Copy the averaged timbre encoder of ``source`` (as in :func:`initialise_diffusion`; audio or
    MIDI mode alike) into ``module``'s model and its moving average: a new audio model can start
    from the timbre encoder a MIDI model learnt. Raises :class:`BadInputError` naming ``source`` when
    the encoders differ (latent size, timbre size or encoder config)."""
    model, source_config = _source_model(source, "--init-timbre-from")
    mine, theirs = dataclasses.asdict(model_config), dataclasses.asdict(source_config)
    details = config_differences(mine, theirs, TIMBRE_KEYS)
    if details:
        raise BadInputError(f"--init-timbre-from {source}: timbre encoder differs ({details})")
    _load_float(module.model.timbre_encoder, model.timbre_encoder.state_dict())
    _load_float(module.ema.module.timbre_encoder, model.timbre_encoder.state_dict())
    log.info("timbre encoder initialised from %s", source)
