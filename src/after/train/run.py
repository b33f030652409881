"""Run folders, checkpoints and the Lightning trainer shared by codec and diffusion training.

A run folder holds everything one training run writes::

    RUN/config.json              the full run config (model + training + data), written at start
    RUN/checkpoints/stepNNNNNNNN.ckpt
    RUN/logs/                    TensorBoard event files

Every checkpoint is a Lightning checkpoint (model and optimiser states, loop counters) plus the run
config under the key ``"after_config"``. It holds only tensors, dicts, lists, strings and numbers,
so it loads with ``torch.load(weights_only=True)``. Checkpoints are written every N steps, at the end
of training, and when the process gets SIGINT (Ctrl-C) or SIGTERM: the current step finishes, a
checkpoint is written by every rank together, and training stops. ``--resume`` restarts from the
latest checkpoint at the same global step with the same optimiser state.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from after.errors import BadInputError, ModelFileError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
CONFIG_KEY = "after_config"
_STEP_PATTERN = re.compile(r"step(\d+)")


class RunFolder:
    """Paths and helpers of one run folder (see module docstring for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / CONFIG_FILE
        self.checkpoint_dir = self.path / CHECKPOINT_DIR
        self.log_dir = self.path / LOG_DIR

    def save_config(self, config: dict[str, Any]) -> None:
        """Write ``config`` (JSON-ready dict) as ``config.json``; creates the folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.config_path)

    def load_config(self) -> dict[str, Any]:
        """Read ``config.json``; a missing or broken file raises :class:`ModelFileError` naming it."""
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError as error:
            raise ModelFileError(f"{self.path}: not a run folder (no {CONFIG_FILE})") from error
        except json.JSONDecodeError as error:
            raise ModelFileError(f"{self.config_path}: not valid JSON ({error})") from error

    def checkpoints(self) -> list[Path]:
        """Checkpoint files sorted by training step (oldest first)."""
        if not self.checkpoint_dir.is_dir():
            return []
        files = [p for p in self.checkpoint_dir.glob("*.ckpt") if _STEP_PATTERN.search(p.name)]
        return sorted(files, key=lambda p: (checkpoint_step(p), p.stat().st_mtime))

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint of the highest step, or None when there is none."""
        found = self.checkpoints()
        return found[-1] if found else None

    def checkpoint_path(self, step: int) -> Path:
        """Where the checkpoint of ``step`` is written."""
        return self.checkpoint_dir / f"step{step:08d}.ckpt"


def checkpoint_step(path: str | Path) -> int:
    """Training step encoded in a checkpoint file name (``stepNNNNNNNN.ckpt``)."""
    match = _STEP_PATTERN.search(Path(path).name)
    if match is None:
        raise ValueError(f"{path}: checkpoint name carries no step")
    return int(match.group(1))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; never runs code from the file.

    Raises :class:`ModelFileError` naming the file when it is missing, unreadable or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ModelFileError(
            f"{path}: not a loadable checkpoint ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ModelFileError(f"{path}: not a training checkpoint (no 'state_dict')")
    return checkpoint


def prepare_run(
    out: str | Path, config: dict[str, Any], resume: bool
) -> tuple[RunFolder, dict[str, Any], Path | None]:
    """Open the run folder for a new or resumed run.

    Returns ``(run, config, checkpoint)``. A new run writes ``config`` and refuses a folder that
    already holds checkpoints. A resumed run keeps the config saved in the folder (the model must be
    rebuilt exactly) and returns its latest checkpoint; with nothing to resume it starts afresh.
    """
    run = RunFolder(out)
    latest = run.latest_checkpoint()
    if resume and latest is not None:
        saved = run.load_config()
        log.info("resuming %s from %s (step %d)", run.path, latest.name, checkpoint_step(latest))
        return run, saved, latest
    if latest is not None:
        raise BadInputError(
            f"{run.path}: this run folder already holds checkpoints ({latest.name}); "
            "pass --resume to continue it or choose another output folder"
        )
    if resume:
        log.info("%s holds no checkpoint yet: starting a new run", run.path)
    if _global_rank() == 0:
        run.save_config(config)
    return run, config, None


def _global_rank() -> int:
    import os

    return int(os.environ.get("RANK", os.environ.get("GLOBAL_RANK", "0")))


class RunCheckpoints(Callback):
    """Write checkpoints every ``every_n_steps``, at the end, and on SIGINT/SIGTERM; embed the config.

    On SIGINT or SIGTERM the current step completes, every rank agrees to stop, a checkpoint is
    written and training ends; :attr:`interrupted` then reads True. A second Ctrl-C aborts at once
    (a checkpoint is still attempted from rank 0).
    """

    def __init__(self, run: RunFolder, config: dict[str, Any], every_n_steps: int) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise BadInputError(f"checkpoint interval must be >= 1 step, got {every_n_steps}")
        self.run = run
        self.config = config
        self.every_n_steps = every_n_steps
        self.interrupted = False
        self._stop_requested = False
        self._last_saved_step = -1
        self._previous_sigint: Any = None

    # -- signals -----------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        log.warning("interrupt received: finishing this step, writing a checkpoint, then stopping")
        self._stop_requested = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        self._last_saved_step = trainer.global_step  # a resumed run does not rewrite its start

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    # -- saving ------------------------------------------------------------------------------
    def _save(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        if step == self._last_saved_step:
            return
        trainer.save_checkpoint(self.run.checkpoint_path(step), weights_only=False)
        self._last_saved_step = step
        log.debug("checkpoint written at step %d", step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        wants_stop = self._stop_requested or bool(getattr(trainer, "received_sigterm", False))
        if trainer.world_size > 1:
            wants_stop = bool(trainer.strategy.reduce_boolean_decision(wants_stop, all=False))
        if wants_stop:
            self.interrupted = True
            self._save(trainer)
            trainer.should_stop = True
        elif trainer.global_step % self.every_n_steps == 0:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)
        self._restore_sigint()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_sigint()
        if not isinstance(exception, KeyboardInterrupt | SystemExit):
            return
        self.interrupted = True
        step = trainer.global_step
        if step == self._last_saved_step or trainer.global_rank != 0:
            return
        # No collective calls here: other ranks may already be gone.
        checkpoint = trainer._checkpoint_connector.dump_checkpoint()
        path = self.run.checkpoint_path(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, path)
        self._last_saved_step = step
        log.warning("checkpoint written at step %d after %s", step, type(exception).__name__)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config


class _DropLightningTips(logging.Filter):
    """Drops Lightning's advertising messages ("💡 Tip: ... try installing ..."): noise in a training log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_DROP_LIGHTNING_TIPS = _DropLightningTips()
_LIGHTNING_CONSOLE_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
_LIGHTNING_TIP_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def route_lightning_logs() -> None:
    """Print each Lightning message once, in the application's format, without its advertising tips.

    Lightning gives its loggers console handlers of their own (``lightning`` always, ``lightning.pytorch``
    and ``lightning.fabric`` when imported before logging was configured) and lets records propagate
    too, so where the application configured the root logger (the ``after`` CLI does) every message
    came out twice. When the root logger has handlers, those console handlers are removed and the
    records go through the root's. Idempotent.
    """
    if logging.getLogger().handlers:
        for name in _LIGHTNING_CONSOLE_LOGGERS:
            lightning_logger = logging.getLogger(name)
            for handler in list(lightning_logger.handlers):
                if type(handler) is logging.StreamHandler:
                    lightning_logger.removeHandler(handler)
            lightning_logger.propagate = True
    for name in _LIGHTNING_TIP_LOGGERS:
        logging.getLogger(name).addFilter(_DROP_LIGHTNING_TIPS)  # addFilter skips a filter already there


def _ignore_lightning_deprecation_noise() -> None:
    """Hide a FutureWarning that Lightning's own code raises in torch in every run (not the user's to fix)."""
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )


@dataclass(frozen=True)
class TrainerOptions:
    """How to run a training job (not what to train): steps, hardware, checkpoint/validation rhythm."""

    max_steps: int = 100_000
    checkpoint_every: int = 10_000
    val_every: int = 5_000
    val_batches: int = 4
    log_every: int = 50
    devices: int | str = 1
    accelerator: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    progress_bar: bool = True
    seed: int | None = 0


def build_trainer(
    run: RunFolder, config: dict[str, Any], options: TrainerOptions, callbacks: list[Callback] | None = None
) -> tuple[L.Trainer, RunCheckpoints]:
    """Lightning trainer writing TensorBoard logs and checkpoints into ``run``.

    Multi-GPU and multi-node runs use Lightning DDP (``strategy="ddp"``); on CPU it uses gloo.
    Returns the trainer and its :class:`RunCheckpoints` callback (read ``.interrupted`` after fit).
    """
    if options.max_steps < 1:
        raise BadInputError(f"--max-steps must be >= 1, got {options.max_steps}")
    if options.val_every < 1:
        raise BadInputError(f"--val-every must be >= 1, got {options.val_every}")
    route_lightning_logs()
    _ignore_lightning_deprecation_noise()
    checkpoints = RunCheckpoints(run, config, options.checkpoint_every)
    logger = TensorBoardLogger(save_dir=str(run.path), name=LOG_DIR, version="", default_hp_metric=False)
    trainer = L.Trainer(
        default_root_dir=str(run.path),
        max_steps=options.max_steps,
        accelerator=options.accelerator,
        devices=options.devices,
        strategy=options.strategy,
        num_nodes=options.num_nodes,
        logger=logger,
        callbacks=[checkpoints, *(callbacks or [])],
        enable_checkpointing=False,
        enable_progress_bar=options.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=options.log_every,
        val_check_interval=options.val_every,
        check_val_every_n_epoch=None,
        limit_val_batches=options.val_batches,
        num_sanity_val_steps=0,
    )
    return trainer, checkpoints


def fit(
    trainer: L.Trainer,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    checkpoint: Path | None,
    seed: int | None = 0,
) -> None:
    """Train ``module``; resume from ``checkpoint`` (weights-only loading) when given."""
    if seed is not None:
        L.seed_everything(
            seed + (checkpoint_step(checkpoint) if checkpoint else 0), workers=True, verbose=False
        )
    trainer.fit(
        module, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint else None, weights_only=True
    )


def train_strategy(name: str) -> str:
    """Lightning strategy for a user's ``--strategy``: ``ddp`` tolerates parameters unused in a step
    (the codec and its discriminator are updated on alternate steps)."""
    if name == "ddp":
        return "ddp_find_unused_parameters_true"
    return name
