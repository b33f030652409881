"""The record format and the LMDB store: round trips, versions, transactions, latents."""

from __future__ import annotations

import json
import pickle

import lmdb
import numpy as np
import pytest
import safetensors.numpy

from after.data.records import (
    FORMAT_VERSION,
    META_KEY,
    ChunkRecord,
    CodecInfo,
    FileEntry,
    add_latents,
    chunk_key,
    create_dataset,
    decode_record,
    encode_record,
    open_dataset,
)
from after.errors import DatasetError

RATE = 16000
CHUNK = 4000


def _record(seed: int, n_notes: int = 3) -> ChunkRecord:
    rng = np.random.default_rng(seed)
    notes = np.column_stack(
        [
            rng.integers(0, 128, n_notes),
            rng.integers(1, 128, n_notes),
            rng.uniform(-0.1, 0.2, n_notes),
            rng.uniform(0.2, 0.4, n_notes),
            np.full(n_notes, 40),
            np.zeros(n_notes),
        ]
    ).astype(np.float64)
    return ChunkRecord(
        audio=rng.uniform(-1, 1, CHUNK).astype(np.float32),
        notes=notes,
        metadata={"file": "a/b.wav", "chunk_index": seed, "offset_s": 0.25 * seed, "family": "strings"},
    )


def test_record_round_trip_keeps_audio_notes_metadata_and_latents():
    record = add_latents(_record(1), "codec-a", np.arange(12, dtype=np.float16).reshape(3, 4))
    back = decode_record(encode_record(record))
    assert back.audio.dtype == np.float32 and back.audio.shape == (CHUNK,)
    np.testing.assert_allclose(back.audio, record.audio, atol=0.5 / 32767 + 1e-7)  # int16 storage
    np.testing.assert_array_equal(back.notes, record.notes)
    assert back.metadata == record.metadata
    assert set(back.latents) == {"codec-a"} and back.latents["codec-a"].dtype == np.float16
    np.testing.assert_array_equal(back.latents["codec-a"], record.latents["codec-a"])


def test_record_without_notes_round_trips_to_an_empty_note_array():
    back = decode_record(encode_record(ChunkRecord(audio=np.zeros(10, dtype=np.float32))))
    assert back.notes.shape == (0, 6)


def test_record_of_another_version_or_a_pickle_is_refused():
    tensors = {"audio": np.zeros(4, dtype=np.int16), "notes": np.zeros((0, 6))}
    header = json.dumps({"format_version": FORMAT_VERSION + 1, "metadata": {}})
    future = safetensors.numpy.save(tensors, metadata={"after_record": header})
    with pytest.raises(DatasetError, match="version"):
        decode_record(future)
    with pytest.raises(DatasetError, match="unreadable"):
        decode_record(pickle.dumps({"audio": [0.0]}))


def test_bad_latents_are_refused():
    with pytest.raises(DatasetError, match=r"\[D, L\]"):
        encode_record(add_latents(_record(0), "c", np.zeros(5, dtype=np.float32)))
    with pytest.raises(DatasetError, match="codec id"):
        add_latents(_record(0), "bad/id", np.zeros((2, 2), dtype=np.float32))


def test_dataset_meta_version_and_sample_rate_are_checked(tmp_path):
    path = tmp_path / "data"
    create_dataset(path, RATE, CHUNK).close()
    with open_dataset(path) as store:
        assert (store.meta.sample_rate, store.meta.chunk_samples) == (RATE, CHUNK)
    with pytest.raises(DatasetError, match="22050 Hz is needed"):
        open_dataset(path, sample_rate=22050)
    with pytest.raises(DatasetError, match="--sample-rate"):
        create_dataset(path, 22050, CHUNK)
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        meta = json.loads(txn.get(META_KEY.encode()))
        meta["format_version"] = FORMAT_VERSION + 1
        txn.put(META_KEY.encode(), json.dumps(meta).encode())
    env.close()
    with pytest.raises(DatasetError, match=f"format version {FORMAT_VERSION + 1}"):
        open_dataset(path)


def test_missing_or_foreign_folders_are_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"no data\.mdb"):
        open_dataset(tmp_path / "nothing")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        create_dataset(tmp_path / "busy", RATE, CHUNK)


def test_commit_file_replaces_the_chunks_of_a_file_and_grows_the_map(tmp_path):
    path = tmp_path / "data"
    keys = [chunk_key("a/b.wav", i) for i in range(40)]
    with create_dataset(path, RATE, CHUNK, map_size=1 << 16) as store:  # 64 KiB: must grow
        records = {key: _record(i) for i, key in enumerate(keys)}
        store.commit_file(FileEntry("a/b.wav", 1, 2, "done", chunk_keys=tuple(keys)), records)
        assert store.chunk_keys() == sorted(keys)
        store.commit_file(
            FileEntry("a/b.wav", 1, 3, "done", chunk_keys=tuple(keys[:2])), {k: records[k] for k in keys[:2]}
        )
    with open_dataset(path) as store:
        assert store.chunk_keys() == sorted(keys[:2])
        assert store.files()["a/b.wav"].mtime_ns == 3
        np.testing.assert_allclose(store.get(keys[1]).audio, records[keys[1]].audio, atol=1e-4)
        with pytest.raises(DatasetError, match="read-only"):
            store.commit_file(FileEntry("x.wav", 1, 1, "skipped", reason="r"), {})


def test_chunk_keys_depend_only_on_path_and_position():
    assert chunk_key("x/y.wav", 3) == chunk_key("x/y.wav", 3)
    assert chunk_key("x/y.wav", 3) != chunk_key("x/z.wav", 3) != chunk_key("x/y.wav", 4)


def test_add_latents_writes_latents_and_codec_info_together(tmp_path):
    path = tmp_path / "data"
    keys = [chunk_key("f.wav", i) for i in range(3)]
    codec = CodecInfo(hop=100, latent_dim=4, sample_rate=RATE)
    with create_dataset(path, RATE, CHUNK) as store:
        store.commit_file(
            FileEntry("f.wav", 1, 1, "done", chunk_keys=tuple(keys)),
            {k: _record(i) for i, k in enumerate(keys)},
        )
        latents = {k: np.full((4, 40), i, dtype=np.float32) for i, k in enumerate(keys[:2])}
        store.add_latents("tiny", codec, latents)
        with pytest.raises(DatasetError, match=r"expected \[4, L\]"):
            store.add_latents("tiny", codec, {keys[2]: np.zeros((3, 40), dtype=np.float32)})
        with pytest.raises(DatasetError, match="were stored with"):
            store.add_latents("tiny", CodecInfo(hop=50, latent_dim=4, sample_rate=RATE), {})
        with pytest.raises(DatasetError, match="no chunk"):
            store.add_latents("tiny", codec, {"chunk/nope/00000": np.zeros((4, 40), dtype=np.float32)})
    with open_dataset(path) as store:
        assert store.meta.codecs == {"tiny": codec}
        np.testing.assert_array_equal(store.get(keys[1]).latents["tiny"], latents[keys[1]])
        assert "tiny" not in store.get(keys[2]).latents
        assert store.get(keys[0]).metadata == _record(0).metadata  # the rest of the record is kept
