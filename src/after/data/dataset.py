"""A torch ``Dataset`` of random crops over a dataset made by ``after prepare``.

Each item is a crop of one chunk: audio (and codec latents once ``after encode`` added them), the
piano roll of its notes at a chosen frame rate, and what is known of its instrument.

Train/validation split: a source file belongs to the validation split when
``sha1("split:" + relative path)`` read as a number in [0, 1) is below ``validation_fraction``.
A file's side therefore never depends on which other files exist, and all chunks of a file fall on
the same side. Only when that rule puts no file at all in validation (tiny datasets) while
``validation_fraction > 0`` and there are at least two files, the file with the smallest hash goes
to validation alone.

Crops: in training, a uniformly random offset (drawn with torch's generator, which DataLoader
seeds per worker); in deterministic mode (the default for validation), an offset fixed by a hash of
the chunk key. Offsets avoid the zero padding of a file's last chunk when the crop fits in its audio.

The LMDB environment is opened lazily in each process that reads (DataLoader workers fork), never
shared across processes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from after.data import gm
from after.data.midi import notes_from_array, piano_roll
from after.data.records import ChunkRecord, CodecInfo, DatasetStore, open_dataset
from after.errors import DatasetError

FAMILY_LABELS: tuple[str, ...] = (*gm.FAMILIES, gm.DRUM_FAMILY)
"""Family index used in items: position in this tuple; -1 when unknown."""

SPLITS = ("train", "validation", "all")


def _unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by ``text``."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / float(1 << 48)


def split_files(paths: Sequence[str], validation_fraction: float) -> tuple[list[str], list[str]]:
    """Split source file paths into (train, validation); see the module docstring for the rule."""
    if not 0.0 <= validation_fraction < 1.0:
        raise DatasetError(f"validation_fraction={validation_fraction}: expected a number in [0, 1)")
    scores = {path: _unit_hash("split:" + path) for path in paths}
    validation = {path for path, score in scores.items() if score < validation_fraction}
    if not validation and validation_fraction > 0 and len(scores) >= 2:
        validation = {min(scores, key=scores.__getitem__)}
    ordered = sorted(scores)
    return [p for p in ordered if p not in validation], [p for p in ordered if p in validation]


class ChunkDataset(Dataset):
    """Crops of the chunks of one split of a dataset.

    Args:
        path: dataset folder.
        crop_samples: crop length in samples (audio mode); default a whole chunk.
        split: "train", "validation" or "all".
        validation_fraction: share of source files held out (see :func:`split_files`).
        deterministic: fixed crop offsets; default True for validation, False otherwise.
        codec_id: read latents of this codec (added by ``after encode``); crops are then in latent
            frames and the audio crop (when the codec rate is the dataset's) is aligned to them.
        crop_frames: crop length in latent frames (latent mode); default all frames of a chunk.
        roll_frame_rate: piano-roll frames per second; default the latent frame rate in latent mode,
            none (no piano roll) in audio mode.
        with_reference: add a second excerpt from the same source file (timbre reference), see
            :meth:`sample_other_excerpt`.
        twin_id: also read these latents (structure twins, :mod:`after.data.twins`) at the crop's
            frames, as ``twin_latents`` (latent mode).

    Items are dicts: ``audio`` float32 [1, T] (absent in latent mode when rates differ),
    ``latents`` float32 [D, L] (latent mode), ``twin_latents`` float32 [D, L] (with ``twin_id``),
    ``piano_roll`` float32 [2, 128, F], ``family`` and
    ``program`` int64 (index in :data:`FAMILY_LABELS` / GM program; -1 unknown), ``offset_s``
    (crop start in the source file, seconds), ``index``; with a reference also ``reference_audio``
    / ``reference_latents``.
    """

    def __init__(
        self,
        path: str | Path,
        crop_samples: int | None = None,
        *,
        split: str = "train",
        validation_fraction: float = 0.05,
        deterministic: bool | None = None,
        codec_id: str | None = None,
        crop_frames: int | None = None,
        roll_frame_rate: float | None = None,
        with_reference: bool = False,
        twin_id: str | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
        self.path = Path(path)
        self.split = split
        self.deterministic = (split == "validation") if deterministic is None else deterministic
        self.with_reference = with_reference
        with open_dataset(self.path) as store:
            self.meta = store.meta
            files = {p: e for p, e in store.files().items() if e.status == "done"}
            first_key = next(iter(store.chunk_keys()), None)
            first = store.get(first_key) if codec_id is not None and first_key is not None else None
        train, validation = split_files(list(files), validation_fraction)
        chosen = {"train": train, "validation": validation, "all": sorted(files)}[split]
        self.keys: list[str] = []
        self.file_of: dict[str, str] = {}
        self.keys_of_file: dict[str, list[str]] = {}
        self._labels: dict[str, tuple[int, int]] = {}
        for file in chosen:
            entry = files[file]
            keys = sorted(entry.chunk_keys)
            self.keys_of_file[file] = keys
            family = entry.info.get("family")
            label = (
                FAMILY_LABELS.index(family) if family in FAMILY_LABELS else -1,
                int(entry.info.get("program", -1)),
            )
            for key in keys:
                self.keys.append(key)
                self.file_of[key] = file
                self._labels[key] = label
        self.codec: CodecInfo | None = None
        self.codec_id = codec_id
        if codec_id is not None:
            if codec_id not in self.meta.codecs:
                have = ", ".join(self.meta.codecs) or "none"
                raise DatasetError(
                    f"{self.path}: no latents of codec {codec_id!r} (dataset has: {have}); add them with "
                    f"`after encode {self.path} --codec {codec_id}`"
                )
            self.codec = self.meta.codecs[codec_id]
        self.twin_id = twin_id
        if twin_id is not None and twin_id not in self.meta.codecs:
            raise DatasetError(
                f"{self.path}: no structure twins {twin_id!r}; add them with "
                f"`after encode {self.path} --codec <the codec> --twins`"
            )
        self.chunk_frames = 0  # latent frames per chunk, as stored
        if self.codec is not None and first is not None and codec_id in first.latents:
            self.chunk_frames = int(first.latents[codec_id].shape[1])
        elif self.codec is not None:
            self.chunk_frames = (
                round(self.meta.chunk_samples * self.codec.sample_rate / self.meta.sample_rate)
                // self.codec.hop
            )
        self.crop_frames = crop_frames or self.chunk_frames
        self.crop_samples = (
            self.crop_frames * self.codec.hop if self.codec else crop_samples or self.meta.chunk_samples
        )
        if self.codec is None and not 0 < self.crop_samples <= self.meta.chunk_samples:
            raise DatasetError(
                f"crop of {self.crop_samples} samples: expected 1..{self.meta.chunk_samples} "
                "(the chunk length)"
            )
        if self.codec is not None and not 0 < self.crop_frames <= self.chunk_frames:
            raise DatasetError(f"crop of {self.crop_frames} frames: expected 1..{self.chunk_frames}")
        if roll_frame_rate is None and self.codec is not None:
            roll_frame_rate = self.codec.sample_rate / self.codec.hop
        self.roll_frame_rate = roll_frame_rate
        self._store: DatasetStore | None = None
        self._pid = -1
        self._owner_pid = os.getpid()

    # lazy per-process store -------------------------------------------------------------------
    def _get(self, key: str) -> ChunkRecord:
        """Read one record. The process that built the dataset (the one that forks DataLoader
        workers) opens the LMDB for each read and closes it at once, because an environment open
        at fork time cannot be opened again in the child; every other process keeps its own open."""
        if os.getpid() == self._owner_pid:
            with open_dataset(self.path) as store:
                return store.get(key)
        if self._store is None or self._pid != os.getpid():
            self._store = open_dataset(self.path)  # a handle copied from another process is dropped
            self._pid = os.getpid()
        return self._store.get(key)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"], state["_pid"] = None, -1
        return state

    def __len__(self) -> int:
        return len(self.keys)

    # crops -------------------------------------------------------------------------------------
    def _record(self, key: str) -> ChunkRecord:
        record = self._get(key)
        if self.codec_id is not None and self.codec_id not in record.latents:
            raise DatasetError(
                f"{self.path}: chunk {key} has no latents of codec {self.codec_id!r}; run "
                f"`after encode {self.path} --codec {self.codec_id}` again to finish it"
            )
        return record

    def _offset(self, key: str, record: ChunkRecord, salt: str, generator: torch.Generator | None) -> int:
        """Crop start, in samples (audio mode) or latent frames (latent mode)."""
        audio_seconds = float(record.metadata.get("audio_seconds", 0.0))
        if self.codec is None:
            units, crop, total = (
                round(audio_seconds * self.meta.sample_rate),
                self.crop_samples,
                self.meta.chunk_samples,
            )
        else:
            units = round(audio_seconds * self.codec.sample_rate) // self.codec.hop
            crop, total = self.crop_frames, self.chunk_frames
        limit = total - crop
        inside = units - crop  # last start whose crop holds no padding
        if 0 <= inside < limit:
            limit = inside
        if limit <= 0:
            return 0
        if self.deterministic:
            return int(_unit_hash(f"{salt}:{key}") * (limit + 1))
        return int(torch.randint(0, limit + 1, (1,), generator=generator))

    def _crop(self, key: str, salt: str = "crop", generator: torch.Generator | None = None) -> dict[str, Any]:
        record = self._record(key)
        offset = self._offset(key, record, salt, generator)
        item: dict[str, Any] = {}
        if self.codec is None:
            start = offset
        else:
            item["latents"] = torch.from_numpy(
                record.latents[self.codec_id][:, offset : offset + self.crop_frames].astype(np.float32)
            )
            start = offset * self.codec.hop
            if self.twin_id is not None:
                if self.twin_id not in record.latents:
                    raise DatasetError(
                        f"{self.path}: chunk {key} has no structure twin; run "
                        f"`after encode {self.path} --codec <the codec> --twins` again to finish them"
                    )
                twin = record.latents[self.twin_id][:, offset : offset + self.crop_frames]
                item["twin_latents"] = torch.from_numpy(twin.astype(np.float32))
        if self.codec is None or self.codec.sample_rate == self.meta.sample_rate:
            audio = record.audio[start : start + self.crop_samples]
            item["audio"] = torch.from_numpy(np.ascontiguousarray(audio))[None]  # [T] -> [1, T]
        crop_start_s = start / (self.codec.sample_rate if self.codec else self.meta.sample_rate)
        if self.roll_frame_rate is not None:
            n_frames = (
                self.crop_frames
                if self.codec
                else int(self.crop_samples / self.meta.sample_rate * self.roll_frame_rate)
            )
            roll = piano_roll(
                notes_from_array(record.notes), self.roll_frame_rate, n_frames, start=crop_start_s
            )
            item["piano_roll"] = torch.from_numpy(roll)
        item["offset_s"] = float(record.metadata.get("offset_s", 0.0)) + crop_start_s
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = self.keys[index]
        item = self._crop(key)
        family, program = self._labels[key]
        item["family"] = torch.tensor(family, dtype=torch.int64)
        item["program"] = torch.tensor(program, dtype=torch.int64)
        item["index"] = index
        if self.with_reference:
            reference = self.sample_other_excerpt(key)
            for name in ("audio", "latents"):
                if name in reference:
                    item[f"reference_{name}"] = reference[name]
        return item

    def sample_other_excerpt(self, key: str, generator: torch.Generator | None = None) -> dict[str, Any]:
        """A crop from the same source file as chunk ``key``, from another chunk when the file has
        more than one (else another offset of the same chunk). Deterministic in deterministic mode.

        Returns a dict with ``audio``/``latents``/``piano_roll``/``offset_s`` as in items, plus ``key``.
        """
        siblings = [other for other in self.keys_of_file[self.file_of[key]] if other != key]
        if not siblings:
            chosen = key
        elif self.deterministic:
            chosen = siblings[int(_unit_hash("reference:" + key) * len(siblings))]
        else:
            chosen = siblings[int(torch.randint(0, len(siblings), (1,), generator=generator))]
        excerpt = self._crop(chosen, salt="reference", generator=generator)
        excerpt["key"] = chosen
        return excerpt


class AudioCropDataset(ChunkDataset):
    """Audio crops only, for codec training: items are float32 tensors ``[1, crop_samples]``.

    Same arguments as :class:`ChunkDataset` (no latents, no piano roll).
    """

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return self._crop(self.keys[index])["audio"]  # [1, T]
