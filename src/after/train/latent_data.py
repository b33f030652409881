"""Training examples for the diffusion model, read from a dataset's stored codec latents.

Each item (a dict of tensors, batched by the default collate) holds:

* ``x1`` float32 ``[D, L]``: a crop of a chunk's latents, the flow's data end;
* ``structure``: the structure input of the same crop: the same latents ``[D, L]`` (audio mode; with
  probability ``structure_twins`` the latents of the chunk's structure twin instead, the same notes
  played by an instrument of another family, see :mod:`after.data.twins`), or the piano roll of
  the chunk's notes over those frames ``[2, 128, L]`` at the latent frame rate (MIDI mode);
* ``reference`` float32 ``[D, L]``: the timbre reference, latents of a *different* excerpt of the same
  source file: another chunk of the file when it has several, else frames of the same chunk that do
  not overlap the target crop (tiled when fewer than ``L`` are left). Its frames are cut into
  segments of a random size from ``shuffle_sizes`` and permuted, so that the reference carries
  timbre but no usable order;
* ``family`` int64: instrument family index (see :data:`after.data.dataset.FAMILY_LABELS`; -1 unknown),
  used by the leakage probe.

Crops come from :class:`after.data.dataset.ChunkDataset` (random offsets in training, fixed ones in
validation, never in a chunk's zero padding); validation items are reproducible.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from after.data.dataset import ChunkDataset
from after.data.records import open_dataset
from after.data.twins import twin_id
from after.diffusion.encoders import shuffle_segments
from after.errors import DatasetError

log = logging.getLogger(__name__)

MODES = ("audio", "midi")


def frames_outside(
    latents: torch.Tensor, start: int, length: int, generator: torch.Generator | None = None
) -> torch.Tensor | None:
    """``length`` frames of ``latents [D, F]`` taken outside ``[start, start + length)``.

    A window left of the crop is preferred, then one right of it; when neither side holds ``length``
    frames, both sides are joined and tiled. Returns ``None`` when the crop covers every frame.
    """
    left, right = latents[:, :start], latents[:, start + length :]
    for side in (left, right):
        if side.size(-1) >= length:
            offset = int(torch.randint(0, side.size(-1) - length + 1, (1,), generator=generator))
            return side[:, offset : offset + length]
    outside = torch.cat([left, right], dim=-1)  # [D, F - length]
    if outside.size(-1) == 0:
        return None
    repeats = -(-length // outside.size(-1))
    return outside.repeat(1, repeats)[:, :length]  # [D, repeats * n] -> [D, length]


class LatentCrops(Dataset):
    """Diffusion training items (see the module docstring) from one split of a dataset.

    Args:
        path: dataset folder holding latents of ``codec_id`` (``after encode``).
        codec_id: id of the codec's latents in the dataset.
        crop_frames: latent frames per item.
        mode: ``"audio"`` (structure = latents) or ``"midi"`` (structure = piano roll).
        split: ``"train"``, ``"validation"`` or ``"all"``.
        shuffle_sizes: segment lengths for shuffling the reference (empty: no shuffling).
        validation_fraction: share of source files held out (see :mod:`after.data.dataset`).
        deterministic: fixed crops and shuffles; default True for validation.
        structure_twins: probability (0..1) that an audio-mode item's structure is its chunk's
            twin (the dataset must hold twins of ``codec_id``: ``after encode --twins``).
    """

    def __init__(
        self,
        path: str | Path,
        codec_id: str,
        crop_frames: int,
        mode: str = "audio",
        split: str = "train",
        shuffle_sizes: tuple[int, ...] = (4, 8),
        validation_fraction: float = 0.05,
        deterministic: bool | None = None,
        structure_twins: float = 0.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0.0 <= structure_twins <= 1.0:
            raise DatasetError(f"structure_twins must be in [0, 1], got {structure_twins}")
        self.structure_twins = structure_twins if mode == "audio" else 0.0
        self.mode = mode
        self.shuffle_sizes = tuple(shuffle_sizes)
        self.crops = ChunkDataset(
            path, split=split, validation_fraction=validation_fraction, deterministic=deterministic,
            codec_id=codec_id, crop_frames=crop_frames,
            twin_id=twin_id(codec_id) if self.structure_twins > 0 else None,
        )  # fmt: skip
        self.deterministic = self.crops.deterministic
        self.crop_frames = crop_frames
        self._whole: ChunkDataset | None = None  # whole chunks, for single-chunk files
        self._validation_fraction = validation_fraction
        self._warned = False

    def __len__(self) -> int:
        return len(self.crops)

    def _generator(self, index: int) -> torch.Generator | None:
        return torch.Generator().manual_seed(1_000_003 * index + 17) if self.deterministic else None

    def _same_chunk_reference(self, index: int, item: dict[str, Any], generator) -> torch.Tensor:
        if self._whole is None:
            self._whole = ChunkDataset(
                self.crops.path, split=self.crops.split, validation_fraction=self._validation_fraction,
                deterministic=True, codec_id=self.crops.codec_id,
            )  # fmt: skip
        whole = self._whole[index]
        rate = self.crops.roll_frame_rate or 1.0
        start = round((item["offset_s"] - whole["offset_s"]) * rate)  # crop start in frames
        reference = frames_outside(whole["latents"], start, self.crop_frames, generator)
        if reference is None:
            if not self._warned:
                log.warning(
                    "%s: a file has a single chunk no longer than the crop (%d frames); its timbre "
                    "reference overlaps the target", self.crops.path, self.crop_frames,
                )  # fmt: skip
                self._warned = True
            reference = item["latents"]
        return reference

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = self._generator(index)
        key = self.crops.keys[index]
        item = self.crops[index]
        siblings = self.crops.keys_of_file[self.crops.file_of[key]]
        if len(siblings) > 1:
            reference = self.crops.sample_other_excerpt(key, generator=generator)["latents"]
        else:
            reference = self._same_chunk_reference(index, item, generator)
        if self.shuffle_sizes:
            reference = shuffle_segments(reference[None], self.shuffle_sizes, generator)[0]
        if self.mode == "midi":
            structure = item["piano_roll"]
        elif self.structure_twins > 0 and float(torch.rand((), generator=generator)) < self.structure_twins:
            structure = item["twin_latents"]
        else:
            structure = item["latents"]
        return {
            "x1": item["latents"],
            "structure": structure,
            "reference": reference.contiguous(),
            "family": item["family"],
        }


def latent_splits(
    path: str | Path,
    codec_id: str,
    crop_frames: int,
    mode: str = "audio",
    shuffle_sizes: tuple[int, ...] = (4, 8),
    codec_source: str = "",
    validation_fraction: float = 0.05,
    structure_twins: float = 0.0,
) -> tuple[LatentCrops, LatentCrops | None]:
    """Training and validation sets (validation ``None`` when the split is empty).

    Raises :class:`DatasetError` naming the dataset and the ``after encode`` command when the dataset
    holds no latents of ``codec_id`` (``codec_source`` is the codec path shown in that command).
    """
    with open_dataset(path) as store:
        codecs = dict(store.meta.codecs)
    if codec_id not in codecs:
        have = ", ".join(sorted(codecs)) or "none"
        raise DatasetError(
            f"{path}: dataset holds no latents of codec {codec_id!r} (it has: {have}); add them with "
            f"`after encode {path} --codec {codec_source or codec_id}`"
        )
    common = dict(
        codec_id=codec_id, crop_frames=crop_frames, mode=mode, shuffle_sizes=shuffle_sizes,
        validation_fraction=validation_fraction, structure_twins=structure_twins,
    )  # fmt: skip
    if structure_twins > 0 and mode == "audio" and twin_id(codec_id) not in codecs:
        raise DatasetError(
            f"{path}: --structure-twins needs the chunks' twins; add them with "
            f"`after encode {path} --codec {codec_source or codec_id} --twins`"
        )
    train = LatentCrops(path, split="train", **common)  # type: ignore[arg-type]
    val = LatentCrops(path, split="validation", **common)  # type: ignore[arg-type]
    if len(train) == 0:
        raise DatasetError(f"{path}: no training chunks (every file is in the validation split or skipped)")
    return train, (val if len(val) > 0 else None)
