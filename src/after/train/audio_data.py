"""Audio batches for codec training: a Lightning DataModule over random crops.

The training data is a dataset folder made by ``after prepare`` (see :mod:`after.data.dataset`);
each item is a random mono crop ``[1, T]`` (float32, [-1, 1]). When the dataset's sample rate is not
the codec's, crops are resampled on the fly (with a notice) or refused (``resample=False``).
:class:`SyntheticAudioDataset` makes sines and chirps for tests and smoke runs.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset

from after.errors import DatasetError

log = logging.getLogger(__name__)


class SyntheticAudioDataset(Dataset):
    """Deterministic sines, chirps and their mixtures: item i is float32 ``[1, samples]`` in [-1, 1].

    Item i depends only on ``(seed, i)``; a given index always returns the same audio.
    """

    def __init__(self, num_items: int, samples: int, sample_rate: int, seed: int = 0) -> None:
        self.num_items = num_items
        self.samples = samples
        self.sample_rate = sample_rate
        self.seed = seed

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, index))
        t = np.arange(self.samples) / self.sample_rate  # seconds [T]
        nyquist = self.sample_rate / 2
        audio = np.zeros(self.samples)
        for _ in range(rng.integers(1, 4)):
            start = rng.uniform(80.0, nyquist / 8)
            end = start * rng.uniform(0.5, 2.0) if rng.random() < 0.5 else start
            duration = self.samples / self.sample_rate
            # linear chirp: phase = 2π (f0 t + (f1 - f0) t² / (2 duration))
            phase = 2 * math.pi * (start * t + (end - start) * t**2 / (2 * duration)) + rng.uniform(
                0, 2 * math.pi
            )
            audio += rng.uniform(0.1, 0.4) * np.sin(phase)
        return torch.from_numpy(audio.astype(np.float32)).clamp(-1, 1).unsqueeze(0)  # [1, T]


class ResampledCrops(Dataset):
    """Wrap a dataset of crops ``[1, T_in]`` at ``from_rate`` and return ``[1, samples]`` at ``to_rate``."""

    def __init__(self, source: Dataset, from_rate: int, to_rate: int, samples: int) -> None:
        self.source = source
        self.from_rate = from_rate
        self.to_rate = to_rate
        self.samples = samples

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        from after.data.audio import resample

        crop = self.source[index].reshape(-1).numpy()  # [T_in]
        audio = resample(crop, self.from_rate, self.to_rate)[: self.samples]
        if audio.shape[-1] < self.samples:
            audio = np.pad(audio, (0, self.samples - audio.shape[-1]))
        return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).unsqueeze(0)  # [1, samples]


def source_crop_samples(samples: int, from_rate: int, to_rate: int) -> int:
    """Crop length at ``from_rate`` that covers ``samples`` at ``to_rate`` (plus a small margin)."""
    return math.ceil(samples * from_rate / to_rate) + 16


def dataset_crops(
    path: str | Path, samples: int, sample_rate: int, resample: bool = True, split: str = "train"
) -> Dataset:
    """Random crops ``[1, samples]`` at ``sample_rate`` from the dataset folder ``path``.

    A dataset at another rate is resampled on the fly with a notice, or refused with
    :class:`DatasetError` when ``resample`` is False.
    """
    from after.data.dataset import AudioCropDataset
    from after.data.records import open_dataset

    with open_dataset(path) as store:
        rate = store.meta.sample_rate
    if rate == sample_rate:
        return AudioCropDataset(path, crop_samples=samples, split=split)
    if not resample:
        raise DatasetError(
            f"{path}: dataset audio is at {rate} Hz but the codec works at {sample_rate} Hz; "
            "allow on-the-fly resampling or prepare the dataset again at the codec's rate"
        )
    log.warning(
        "%s: dataset at %d Hz, resampling crops to the codec's %d Hz on the fly", path, rate, sample_rate
    )
    source = AudioCropDataset(path, crop_samples=source_crop_samples(samples, rate, sample_rate), split=split)
    return ResampledCrops(source, rate, sample_rate, samples)


def init_loader_worker(worker_id: int, rank: int = 0) -> None:
    """Start a DataLoader worker process in a process group of its own, ignoring SIGINT.

    A stop request sent to the training's process group (Ctrl-C in a terminal, ``kill -- -PGID``)
    then reaches the training process alone: it finishes the step, writes a checkpoint and shuts its
    workers down. A worker that died on the signal would make it fail before that checkpoint. SIGTERM
    keeps PyTorch's worker handling, so the training process can still end a worker, and workers exit
    when the training process dies (PyTorch's parent watchdog). Seeds the worker's generators as
    Lightning does under ``seed_everything(workers=True)``, since a DataLoader given its own
    ``worker_init_fn`` does not get Lightning's.
    """
    if hasattr(os, "setpgrp"):  # POSIX
        os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", "0")):
        pl_worker_init_function(worker_id, rank=rank)


class AudioDataModule(L.LightningDataModule):
    """Batches ``[B, 1, T]`` from a training and an optional validation dataset of crops."""

    def __init__(
        self, train: Dataset, val: Dataset | None = None, batch_size: int = 8, num_workers: int = 0
    ) -> None:
        super().__init__()
        self.train_set = train
        self.val_set = val
        self.batch_size = batch_size
        self.num_workers = num_workers

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=functools.partial(init_loader_worker, rank=rank) if self.num_workers else None,
        )

    def train_dataloader(self) -> DataLoader:
        if len(self.train_set) < self.batch_size:  # type: ignore[arg-type]
            raise DatasetError(
                f"training set has {len(self.train_set)} items, fewer than one batch of {self.batch_size}"  # type: ignore[arg-type]
            )
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.val_set is None else self._loader(self.val_set, shuffle=False)
