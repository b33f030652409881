"""The on-disk dataset format: an LMDB folder of fixed-length mono audio chunks.

Layout of the LMDB (one default database, keys are UTF-8 strings):

- ``__meta__``: JSON :class:`DatasetMeta` (format version, sample rate, chunk length in samples,
  audio encoding, and the codecs whose latents were added).
- ``file/<h>``: JSON :class:`FileEntry`, one per source file seen by ``after prepare`` (``<h>`` is a
  hash of the file's path relative to the input folder): its size and modification time, its status
  (``"done"`` with the keys of its chunks, or ``"skipped"`` with the reason), and what is known of
  it (instrument program / family, gain, ...).
- ``chunk/<h>/<i>``: one :class:`ChunkRecord` per kept chunk, ``<i>`` being the chunk's position in
  its source file (5 digits). Keys depend only on the file's relative path and the chunk position,
  so the same input always gives the same keys whatever the processing order.

A record is stored as safetensors bytes (no pickle, so reading a dataset never runs code):

- ``audio``: int16 ``[T]``, the float signal times 32767 (peak-normalised audio never clips). This
  halves the size of float32 with a 96 dB dynamic range, ample for training data; it decodes to
  float32 ``[T]`` in [-1, 1].
- ``notes``: float64 ``[N, 6]`` (pitch, velocity, start s, end s, program, is_drum), times relative
  to the start of the chunk, see :func:`after.data.midi.notes_to_array`.
- ``latents/<codec_id>``: float16 or float32 ``[D, L]`` codec latents, added later by
  ``after encode`` through :meth:`DatasetStore.add_latents`.
- safetensors metadata ``after_record``: JSON with the record format version and the chunk's
  metadata dict (source file, offset, chunk index, program, family, ...).

Every write (one source file's chunks plus its index entry; a batch of latents plus the codec
entry of the meta) is one LMDB transaction, so a process killed at any moment leaves a dataset that
opens and is consistent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import safetensors.numpy

from after.errors import DatasetError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the record and index layout; a dataset of another version is refused."""

META_KEY = "__meta__"
FILE_PREFIX = "file/"
CHUNK_PREFIX = "chunk/"
LATENT_PREFIX = "latents/"
AUDIO_SCALE = 32767.0
INITIAL_MAP_SIZE = 1 << 30  # bytes; grows by doubling when full
_CODEC_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass
class ChunkRecord:
    """One stored chunk.

    Attributes:
        audio: float32 ``[T]`` mono samples in [-1, 1] at the dataset's sample rate.
        notes: float64 ``[N, 6]`` notes (pitch, velocity, start s, end s, program, is_drum), times
            relative to the chunk start; ``N = 0`` when the chunk has no notes or no MIDI. Notes
            held across a chunk edge keep their true times (start < 0 or end > chunk length), so
            a piano roll never shows a false onset at the chunk start.
        metadata: JSON-compatible dict (source ``file``, ``offset_s``, ``chunk_index``, ...).
        latents: codec id -> float16/float32 ``[D, L]`` latents of this chunk.
    """

    audio: np.ndarray
    notes: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), dtype=np.float64))
    metadata: dict[str, Any] = field(default_factory=dict)
    latents: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class CodecInfo:
    """What a codec's latents look like: ``latent_dim`` channels, one frame per ``hop`` samples at
    ``sample_rate`` Hz."""

    hop: int
    latent_dim: int
    sample_rate: int


@dataclass(frozen=True)
class DatasetMeta:
    """Dataset-wide facts stored under :data:`META_KEY`."""

    sample_rate: int
    chunk_samples: int
    format_version: int = FORMAT_VERSION
    audio_encoding: str = "int16"
    codecs: Mapping[str, CodecInfo] = field(default_factory=dict)

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_samples / self.sample_rate

    def to_json(self) -> bytes:
        data = dataclasses.asdict(self)
        data["codecs"] = {name: dataclasses.asdict(info) for name, info in self.codecs.items()}
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> DatasetMeta:
        try:
            data = json.loads(raw)
            version = int(data["format_version"])
        except (ValueError, KeyError, TypeError) as error:
            raise DatasetError(f"{where}: unreadable dataset meta ({error})") from error
        if version != FORMAT_VERSION:
            raise DatasetError(
                f"{where}: dataset format version {version}, but this after reads version "
                f"{FORMAT_VERSION}; re-create it with `after prepare` into a new folder"
            )
        codecs = {name: CodecInfo(**info) for name, info in data.get("codecs", {}).items()}
        return cls(
            sample_rate=int(data["sample_rate"]),
            chunk_samples=int(data["chunk_samples"]),
            format_version=version,
            audio_encoding=str(data.get("audio_encoding", "int16")),
            codecs=codecs,
        )


@dataclass(frozen=True)
class FileEntry:
    """Index entry of one source file (path relative to the input folder, POSIX separators)."""

    path: str
    size: int
    mtime_ns: int
    status: str  # "done" or "skipped"
    reason: str = ""
    chunk_keys: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)  # prepare options that produced it
    info: Mapping[str, Any] = field(default_factory=dict)  # program, family, gain_db, notices, ...

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> FileEntry:
        data = json.loads(raw)
        data["chunk_keys"] = tuple(data.get("chunk_keys", ()))
        return cls(**data)


def _path_hash(relative_path: str) -> str:
    return hashlib.sha1(relative_path.encode()).hexdigest()[:20]


def file_key(relative_path: str) -> str:
    """Index key of a source file."""
    return FILE_PREFIX + _path_hash(relative_path)


def chunk_key(relative_path: str, chunk_index: int) -> str:
    """Key of chunk ``chunk_index`` (position in the file, from 0) of a source file."""
    return f"{CHUNK_PREFIX}{_path_hash(relative_path)}/{chunk_index:05d}"


def latent_name(codec_id: str) -> str:
    """Tensor name of a codec's latents inside a record; refuses ids with odd characters."""
    if not _CODEC_ID.match(codec_id):
        raise DatasetError(f"codec id {codec_id!r}: expected letters, digits, '_', '-' or '.'")
    return LATENT_PREFIX + codec_id


def encode_record(record: ChunkRecord) -> bytes:
    """Serialise a record to safetensors bytes (int16 audio, see the module docstring)."""
    audio = np.asarray(record.audio, dtype=np.float32)
    if audio.ndim != 1:
        raise DatasetError(f"record audio of shape {audio.shape}: expected mono [T]")
    notes = np.asarray(record.notes, dtype=np.float64).reshape(-1, 6)  # [N*6] or [N, 6] -> [N, 6]
    tensors = {
        "audio": np.round(np.clip(audio, -1.0, 1.0) * AUDIO_SCALE).astype(np.int16),
        "notes": np.ascontiguousarray(notes),
    }
    for codec_id, latents in record.latents.items():
        latents = np.asarray(latents)
        if latents.ndim != 2 or latents.dtype not in (np.float16, np.float32):
            raise DatasetError(
                f"latents of codec {codec_id!r}: got {latents.dtype} {latents.shape}, "
                "expected float16/float32 [D, L]"
            )
        tensors[latent_name(codec_id)] = np.ascontiguousarray(latents)
    header = {"format_version": FORMAT_VERSION, "audio_encoding": "int16", "metadata": record.metadata}
    return safetensors.numpy.save(tensors, metadata={"after_record": json.dumps(header)})


def _read_header(data: bytes) -> dict[str, Any]:
    """The JSON header of safetensors bytes: 8 bytes little-endian length, then the JSON."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size])


def decode_record(data: bytes) -> ChunkRecord:
    """Inverse of :func:`encode_record`: audio comes back as float32 ``[T]``."""
    try:
        header = json.loads(_read_header(data)["__metadata__"]["after_record"])
        tensors = safetensors.numpy.load(bytes(data))
    except (ValueError, KeyError, TypeError, safetensors.SafetensorError) as error:
        raise DatasetError(f"unreadable chunk record ({error})") from error
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(f"chunk record of format version {version}; this after reads {FORMAT_VERSION}")
    latents = {
        name[len(LATENT_PREFIX) :]: array for name, array in tensors.items() if name.startswith(LATENT_PREFIX)
    }
    return ChunkRecord(
        audio=tensors["audio"].astype(np.float32) / AUDIO_SCALE,
        notes=tensors["notes"].reshape(-1, 6),  # [N, 6]
        metadata=header.get("metadata", {}),
        latents=latents,
    )


def add_latents(record: ChunkRecord, codec_id: str, latents: np.ndarray) -> ChunkRecord:
    """A copy of ``record`` holding ``latents`` ``[D, L]`` (float16/32) under ``codec_id``."""
    latent_name(codec_id)  # validates the id
    return dataclasses.replace(record, latents={**record.latents, codec_id: np.asarray(latents)})


class DatasetStore:
    """An open dataset folder. Use :func:`open_dataset` or :func:`create_dataset` to get one.

    Not safe to share across processes: open one per process (the torch Dataset does it lazily).
    """

    def __init__(self, path: Path, env: lmdb.Environment, meta: DatasetMeta, readonly: bool) -> None:
        self.path = path
        self.meta = meta
        self.readonly = readonly
        self._env: lmdb.Environment | None = env

    def _live(self) -> lmdb.Environment:
        if self._env is None:
            raise DatasetError(f"{self.path}: dataset handle used after close()")
        return self._env

    # reading -----------------------------------------------------------------------------------
    def _scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        with self._live().begin(buffers=False) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix.encode()):
                return
            for key, value in cursor:
                name = key.decode()
                if not name.startswith(prefix):
                    return
                yield name, value

    def chunk_keys(self) -> list[str]:
        """All chunk keys, sorted."""
        with self._live().begin() as txn:
            cursor = txn.cursor()
            keys: list[str] = []
            if cursor.set_range(CHUNK_PREFIX.encode()):
                for key in cursor.iternext(keys=True, values=False):
                    name = key.decode()
                    if not name.startswith(CHUNK_PREFIX):
                        break
                    keys.append(name)
        return keys

    def __len__(self) -> int:
        return len(self.chunk_keys())

    def __contains__(self, key: str) -> bool:
        with self._live().begin() as txn:
            return txn.get(key.encode()) is not None

    def get(self, key: str) -> ChunkRecord:
        """Decode the chunk stored under ``key``."""
        with self._live().begin(buffers=False) as txn:
            raw = txn.get(key.encode())
        if raw is None:
            raise DatasetError(f"{self.path}: no chunk {key!r}")
        return decode_record(raw)

    def records(self) -> Iterator[tuple[str, ChunkRecord]]:
        """Iterate over ``(key, record)`` in key order."""
        for key, raw in self._scan(CHUNK_PREFIX):
            yield key, decode_record(raw)

    def files(self) -> dict[str, FileEntry]:
        """Index of source files: relative path -> entry."""
        entries = (FileEntry.from_json(raw) for _, raw in self._scan(FILE_PREFIX))
        return {entry.path: entry for entry in sorted(entries, key=lambda entry: entry.path)}

    # writing -----------------------------------------------------------------------------------
    def _write(self, operation: Callable[[lmdb.Transaction], None]) -> None:
        """Run ``operation`` in one write transaction, growing the map when it is full."""
        if self.readonly:
            raise DatasetError(f"{self.path}: dataset opened read-only")
        while True:
            try:
                with self._live().begin(write=True) as txn:
                    operation(txn)
                return
            except lmdb.MapFullError:
                new_size = self._live().info()["map_size"] * 2
                logger.debug("%s: growing the lmdb map to %d bytes", self.path, new_size)
                self._live().set_mapsize(new_size)

    def commit_file(self, entry: FileEntry, records: Mapping[str, ChunkRecord | bytes]) -> None:
        """Write one source file's chunks (records or their :func:`encode_record` bytes) and its
        index entry in one transaction.

        Chunks listed by a previous entry of the same file that are not in ``records`` are
        deleted in the same transaction.
        """
        encoded = {
            key: record if isinstance(record, bytes) else encode_record(record)
            for key, record in records.items()
        }
        index_key = file_key(entry.path).encode()

        def operation(txn: lmdb.Transaction) -> None:
            previous = txn.get(index_key)
            if previous is not None:
                for key in FileEntry.from_json(previous).chunk_keys:
                    if key not in encoded:
                        txn.delete(key.encode())
            for key, raw in encoded.items():
                txn.put(key.encode(), raw)
            txn.put(index_key, entry.to_json())

        self._write(operation)

    def add_latents(self, codec_id: str, codec: CodecInfo, latents: Mapping[str, np.ndarray]) -> None:
        """Add (or replace) codec latents ``[D, L]`` of several chunks and record ``codec`` in the
        meta, all in one transaction. ``D`` must equal ``codec.latent_dim``."""
        name = latent_name(codec_id)
        known = self.meta.codecs.get(codec_id)
        if known is not None and known != codec:
            raise DatasetError(
                f"{self.path}: latents of codec {codec_id!r} were stored with {known}, not {codec}"
            )
        for key, array in latents.items():
            if np.ndim(array) != 2 or np.shape(array)[0] != codec.latent_dim:
                raise DatasetError(
                    f"latents for {key!r}: shape {np.shape(array)}, expected [{codec.latent_dim}, L]"
                )
        new_meta = dataclasses.replace(self.meta, codecs={**self.meta.codecs, codec_id: codec})

        def operation(txn: lmdb.Transaction) -> None:
            for key, array in latents.items():
                raw = txn.get(key.encode())
                if raw is None:
                    raise DatasetError(f"{self.path}: no chunk {key!r} to add {name} to")
                record = add_latents(decode_record(raw), codec_id, array)
                txn.put(key.encode(), encode_record(record))
            txn.put(META_KEY.encode(), new_meta.to_json())

        self._write(operation)
        self.meta = new_meta

    def close(self) -> None:
        """Release this handle (the environment closes when its last handle in the process does)."""
        if self._env is not None:
            _release_env(self.path, self._env)
            self._env = None

    def __enter__(self) -> DatasetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_meta(env: lmdb.Environment, path: Path) -> DatasetMeta:
    with env.begin() as txn:
        raw = txn.get(META_KEY.encode())
    if raw is None:
        raise DatasetError(
            f"{path}: not an after dataset (no {META_KEY} entry); make one with `after prepare`"
        )
    return DatasetMeta.from_json(raw, str(path))


def open_dataset(path: str | Path, readonly: bool = True, sample_rate: int | None = None) -> DatasetStore:
    """Open an existing dataset folder.

    Several handles on one folder in one process share one LMDB environment (LMDB forbids opening
    it twice); a writable handle cannot be had while a read-only one is open in the same process.
    Raises DatasetError if it is missing, of another format version, or (when ``sample_rate`` is
    given) made at another sample rate.
    """
    path = Path(path)
    if not (path / "data.mdb").is_file():
        raise DatasetError(f"{path}: not an after dataset (no data.mdb); make one with `after prepare`")
    env = _acquire_env(path, readonly=readonly)
    try:
        meta = _read_meta(env, path)
        if sample_rate is not None and meta.sample_rate != sample_rate:
            raise DatasetError(
                f"{path}: dataset audio is at {meta.sample_rate} Hz, but {sample_rate} Hz is needed; "
                f"prepare the audio again with `after prepare --sample-rate {sample_rate}`"
            )
    except BaseException:
        _release_env(path, env)
        raise
    return DatasetStore(path, env, meta, readonly)


# (real path, process id) -> [environment, writable, number of open handles]
_OPEN_ENVS: dict[tuple[str, int], list[Any]] = {}


def _acquire_env(path: Path, readonly: bool, map_size: int = INITIAL_MAP_SIZE) -> lmdb.Environment:
    key = (os.path.realpath(path), os.getpid())
    slot = _OPEN_ENVS.get(key)
    if slot is not None:
        if not readonly and not slot[1]:
            raise DatasetError(f"{path}: already open read-only in this process; close it before writing")
        slot[2] += 1
        return slot[0]
    try:
        env = _open_env(path, readonly, map_size)
    except lmdb.Error as error:
        raise DatasetError(f"{path}: cannot open the lmdb dataset ({error})") from error
    _OPEN_ENVS[key] = [env, not readonly, 1]
    return env


def _release_env(path: Path, env: lmdb.Environment) -> None:
    key = (os.path.realpath(path), os.getpid())
    slot = _OPEN_ENVS.get(key)
    if slot is None or slot[0] is not env:  # e.g. a handle inherited through fork: not ours to close
        return
    slot[2] -= 1
    if slot[2] == 0:
        del _OPEN_ENVS[key]
        env.close()


def _open_env(path: Path, readonly: bool, map_size: int = INITIAL_MAP_SIZE) -> lmdb.Environment:
    if not readonly:
        return lmdb.open(str(path), map_size=map_size, subdir=True, readahead=False, max_dbs=0)
    try:
        return lmdb.open(str(path), readonly=True, lock=True, readahead=False, subdir=True)
    except lmdb.Error:  # e.g. a dataset on read-only storage: read without the reader lock
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)


def create_dataset(
    path: str | Path, sample_rate: int, chunk_samples: int, map_size: int = INITIAL_MAP_SIZE
) -> DatasetStore:
    """Open ``path`` for writing, creating an empty dataset there if none exists.

    An existing dataset must have the same sample rate and chunk length, else DatasetError.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DatasetError(f"{path}: exists and is not a folder (expected a dataset folder)")
    if path.is_dir() and not (path / "data.mdb").exists() and any(path.iterdir()):
        raise DatasetError(f"{path}: folder is not empty and holds no dataset; choose a new folder")
    path.mkdir(parents=True, exist_ok=True)
    env = _acquire_env(path, readonly=False, map_size=map_size)
    with env.begin(write=True) as txn:
        raw = txn.get(META_KEY.encode())
        if raw is None:
            meta = DatasetMeta(sample_rate=int(sample_rate), chunk_samples=int(chunk_samples))
            txn.put(META_KEY.encode(), meta.to_json())
    if raw is not None:
        try:
            meta = DatasetMeta.from_json(raw, str(path))
        except BaseException:
            _release_env(path, env)
            raise
        if (meta.sample_rate, meta.chunk_samples) != (sample_rate, chunk_samples):
            _release_env(path, env)
            raise DatasetError(
                f"{path}: dataset holds {meta.chunk_samples}-sample chunks at {meta.sample_rate} Hz "
                f"({meta.chunk_seconds:g} s), not {chunk_samples} at {sample_rate} Hz; use the same "
                "--sample-rate/--chunk-seconds or a new folder"
            )
    return DatasetStore(path, env, meta, readonly=False)
