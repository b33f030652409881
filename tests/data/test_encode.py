"""`after encode`: every chunk gets the codec's latents, in batches that survive an interruption."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "export"))
from codec_files import make_codec_run

from after.codec.load import load_codec
from after.data.encode import encode_dataset
from after.data.records import ChunkRecord, FileEntry, chunk_key, create_dataset, open_dataset
from after.errors import DatasetError

torch.set_num_threads(1)
CHUNK = 4096


def make_dataset(path: Path, chunks: int = 5, sample_rate: int = 22050) -> list[str]:
    rng = np.random.default_rng(0)
    keys = [chunk_key("song.wav", i) for i in range(chunks)]
    records = {k: ChunkRecord(audio=(0.3 * rng.standard_normal(CHUNK)).astype(np.float32)) for k in keys}
    entry = FileEntry(path="song.wav", size=1, mtime_ns=1, status="done", chunk_keys=tuple(keys))
    with create_dataset(path, sample_rate, CHUNK) as store:
        store.commit_file(entry, records)
    return keys


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    return load_codec(make_codec_run(tmp_path_factory.mktemp("run")).path)


def test_every_chunk_gets_the_latents_of_its_audio(tmp_path, codec):
    keys = make_dataset(tmp_path / "data")
    assert encode_dataset(tmp_path / "data", codec, batch_size=2, progress=False) == len(keys)
    with open_dataset(tmp_path / "data") as store:
        assert store.meta.codecs[codec.codec_id] == codec.info()
        for key in keys:
            record = store.get(key)
            z = record.latents[codec.codec_id]
            assert z.dtype == np.float16 and z.shape == (16, CHUNK // 1024)
            expected = codec.encode(torch.from_numpy(record.audio).reshape(1, 1, -1))[0].numpy()
            assert np.allclose(z.astype(np.float32), expected, atol=2e-3 * max(1.0, np.abs(expected).max()))


class FailingCodec:
    """Wraps a codec handle and fails on the n-th encode call (a crash in the middle of a run)."""

    def __init__(self, handle, fail_on_call: int) -> None:
        self.handle, self.calls, self.fail_on_call = handle, 0, fail_on_call

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def encode(self, audio):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("power cut")
        return self.handle.encode(audio)


def test_encoding_resumes_after_an_interruption(tmp_path, codec):
    keys = make_dataset(tmp_path / "data", chunks=5)
    with pytest.raises(RuntimeError, match="power cut"):
        encode_dataset(tmp_path / "data", FailingCodec(codec, fail_on_call=2), batch_size=2, progress=False)
    with open_dataset(tmp_path / "data") as store:
        done = [k for k in keys if codec.codec_id in store.get(k).latents]
    assert done == keys[:2]  # the first batch was committed, the failed one left no trace
    assert encode_dataset(tmp_path / "data", codec, batch_size=2, progress=False) == 3
    assert encode_dataset(tmp_path / "data", codec, batch_size=2, progress=False) == 0


def test_other_sample_rate_is_resampled_or_refused(tmp_path, codec):
    make_dataset(tmp_path / "data", chunks=2, sample_rate=44100)
    with pytest.raises(DatasetError, match=r"44100 Hz but codec .* works at 22050 Hz"):
        encode_dataset(tmp_path / "data", codec, resample=False, progress=False)
    assert encode_dataset(tmp_path / "data", codec, progress=False) == 2
    with open_dataset(tmp_path / "data") as store:
        z = store.get(store.chunk_keys()[0]).latents[codec.codec_id]
    assert z.shape == (16, 2)  # 4096 samples at 44.1 kHz -> 2048 at 22.05 kHz -> 2 frames


def test_encode_cli(tmp_path, codec):
    from after.cli.main import main

    make_dataset(tmp_path / "data", chunks=2)
    assert main(["encode", str(tmp_path / "data"), "--codec", str(codec.source), "--no-progress"]) == 0
    with open_dataset(tmp_path / "data") as store:
        assert codec.codec_id in store.meta.codecs
    assert main(["encode", str(tmp_path / "nothing"), "--codec", str(codec.source)]) == 2


def test_encode_threads_hold_for_the_run_only(tmp_path, codec, monkeypatch, caplog):
    """``--threads N`` is torch's count while encoding (torch's own count when not given), restored
    after; a bad count is refused before any latent is written."""
    import after.data.encode as encode_module
    from after.cli.main import main

    seen, real = [], encode_module.encode_dataset

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(encode_module, "encode_dataset", recording)
    make_dataset(tmp_path / "data", chunks=2)
    argv = ["encode", str(tmp_path / "data"), "--codec", str(codec.source), "--no-progress"]
    assert main([*argv, "--threads", "0"]) == 2
    assert "--threads 0: expected a whole number of CPU threads >= 1" in caplog.text
    with open_dataset(tmp_path / "data") as store:
        assert codec.codec_id not in store.meta.codecs
    before = torch.get_num_threads()
    assert main([*argv, "--threads", "2"]) == 0
    assert main(argv) == 0
    assert seen == [2, before] and torch.get_num_threads() == before
