"""Add codec latents to every chunk of a dataset (``after encode``), transactionally and resumably.

Chunks are encoded in batches; each batch's latents (float16 or float32 ``[D, L]``, stored under
``latents/<codec_id>`` in the chunk record) and the codec's entry in the dataset meta are written in
one LMDB transaction. A run that is stopped keeps every finished batch, and running the same
command again encodes only the chunks that still lack latents of that codec.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from after.codec.load import CodecHandle
from after.data.records import ChunkRecord
from after.errors import DatasetError

log = logging.getLogger(__name__)


def encode_dataset(
    path: str | Path,
    codec: CodecHandle,
    batch_size: int = 16,
    dtype: str = "float16",
    resample: bool = True,
    progress: bool = True,
    latent_id: str | None = None,
    source: Callable[[str, ChunkRecord, np.ndarray], np.ndarray] | None = None,
) -> int:
    """Encode every chunk of dataset ``path`` that has no latents of ``codec`` (or ``latent_id``) yet.

    Args:
        path: dataset folder made by ``after prepare``.
        codec: a loaded codec (:func:`after.codec.load.load_codec`).
        batch_size: chunks per batch and per transaction.
        dtype: ``"float16"`` (half the size) or ``"float32"`` for the stored latents.
        resample: when the dataset's sample rate is not the codec's, resample each chunk (with a
            notice) instead of refusing with :class:`DatasetError`.
        progress: show a progress bar.
        latent_id: store the latents under this id instead of the codec's own.
        source: ``(key, record, audio) -> audio`` giving the float32 ``[T]`` audio to encode for a
            chunk from its audio at the codec's rate (default: that audio itself); structure twins
            (:mod:`after.data.twins`) render it from the chunk's notes.

    Returns the number of chunks encoded by this call.
    """
    from tqdm import tqdm

    from after.data.audio import resample as resample_audio
    from after.data.records import open_dataset

    if dtype not in ("float16", "float32"):
        raise DatasetError(f"latent dtype {dtype!r}: expected 'float16' or 'float32'")
    if batch_size < 1:
        raise DatasetError(f"batch size must be >= 1, got {batch_size}")
    name = latent_id or codec.codec_id
    with open_dataset(path, readonly=False) as store:
        rate = store.meta.sample_rate
        if rate != codec.sample_rate:
            if not resample:
                raise DatasetError(
                    f"{path}: dataset audio is at {rate} Hz but codec {codec.codec_id} works at "
                    f"{codec.sample_rate} Hz; allow resampling or prepare the dataset at the codec's rate"
                )
            log.warning(
                "%s: resampling chunks from %d Hz to the codec's %d Hz", path, rate, codec.sample_rate
            )
        keys = store.chunk_keys()
        encoded = 0
        bar = tqdm(total=len(keys), desc=f"encode {name}", unit="chunk", disable=not progress)
        for start in range(0, len(keys), batch_size):
            batch_keys = keys[start : start + batch_size]
            todo: dict[str, np.ndarray] = {}
            for key in batch_keys:
                record = store.get(key)
                if name in record.latents:
                    continue
                audio = (
                    record.audio
                    if rate == codec.sample_rate
                    else resample_audio(record.audio, rate, codec.sample_rate)
                )
                audio = np.asarray(audio, dtype=np.float32)
                todo[key] = audio if source is None else source(key, record, audio)
            if todo:
                length = max(a.shape[-1] for a in todo.values())
                audio = torch.zeros(len(todo), 1, length)  # [B, 1, T], shorter chunks zero-padded
                for i, chunk in enumerate(todo.values()):
                    audio[i, 0, : chunk.shape[-1]] = torch.from_numpy(chunk)
                z = codec.encode(audio).cpu().numpy().astype(dtype)  # [B, D, L]
                store.add_latents(name, codec.info(), {key: z[i] for i, key in enumerate(todo)})
                encoded += len(todo)
            bar.update(len(batch_keys))
        bar.close()
    log.info("%s: encoded %d chunk(s) with codec %s as latents/%s", path, encoded, codec.codec_id, name)
    return encoded
