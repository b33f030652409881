"""Structure twins: each chunk's notes rendered by FluidSynth with an instrument of another family,
aligned with the chunk, at its level, encoded and stored resumably; bad datasets refused."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "export"))
from codec_files import make_codec_run

from after.cli.main import main
from after.codec.load import load_codec
from after.data.encode import encode_dataset
from after.data.gm import family_of
from after.data.instruments import program_range
from after.data.midi import Note, notes_to_array
from after.data.records import ChunkRecord, FileEntry, chunk_key, create_dataset, open_dataset
from after.data.twins import add_structure_twins, clip_to_chunk, twin_id, twin_program
from after.errors import DatasetError

torch.set_num_threads(1)
RATE = 22050
CHUNK = 44 * 1024  # about 2 s
ONSETS = (0.3, 1.1)  # s, note starts of the chunk that has notes
PIANO = 0


def notes_chunk() -> list[Note]:
    return [Note(60 + 7 * i, 100, start, start + 0.4) for i, start in enumerate(ONSETS)]


def make_dataset(path: Path, with_notes: bool = True) -> list[str]:
    """One file, three chunks: notes (piano), notes held over the chunk start, no notes at all."""
    rng = np.random.default_rng(0)
    keys = [chunk_key("piece.wav", i) for i in range(3)]
    held = [Note(64, 90, -0.5, 0.5), Note(67, 90, 0.8, 1.2)]
    note_sets = [notes_chunk(), held, []] if with_notes else [[], [], []]
    records = {
        key: ChunkRecord(
            audio=(0.1 * rng.standard_normal(CHUNK)).astype(np.float32), notes=notes_to_array(notes)
        )
        for key, notes in zip(keys, note_sets)
    }
    info = {"program": PIANO, "family": family_of(PIANO)}
    entry = FileEntry("piece.wav", 1, 1, "done", chunk_keys=tuple(keys), info=info)
    with create_dataset(path, RATE, CHUNK) as store:
        store.commit_file(entry, records)
    return keys


class RecordingCodec:
    """A codec handle that keeps every batch of audio it encodes."""

    def __init__(self, handle) -> None:
        self.handle, self.batches = handle, []

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def encode(self, audio):
        self.batches.append(audio.clone())
        return self.handle.encode(audio)


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    return load_codec(make_codec_run(tmp_path_factory.mktemp("codec")).path)


def test_twin_program_is_of_another_family_and_plays_every_note():
    notes = notes_chunk()
    chosen = {twin_program(f"chunk/{i}", notes, PIANO) for i in range(40)}
    assert len(chosen) > 5  # the draw depends on the chunk
    for program in chosen:
        low, high = program_range(program)
        assert family_of(program) != family_of(PIANO)
        assert low <= min(n.pitch for n in notes) and max(n.pitch for n in notes) <= high
    assert twin_program("chunk/1", notes, PIANO) == twin_program("chunk/1", notes, PIANO)
    assert twin_program("chunk/1", notes, PIANO, seed=1) is not None
    assert twin_program("chunk/1", [], PIANO) is None
    assert twin_program("chunk/1", [Note(5, 90, 0, 1), Note(125, 90, 0, 1)], PIANO) is None  # no range


def test_notes_are_clipped_to_the_chunk():
    notes = [
        Note(60, 90, -0.5, 0.5),  # held over the start
        Note(62, 90, 1.5, 2.5),  # held over the end
        Note(64, 90, -1.0, -0.2),  # before the chunk
        Note(36, 90, 0.1, 0.3, is_drum=True),
    ]
    assert clip_to_chunk(notes, 2.0) == [Note(60, 90, 0.0, 0.5), Note(62, 90, 1.5, 2.0)]


def frame_energy(audio: np.ndarray, hop: int = 441) -> np.ndarray:
    frames = audio[: audio.size // hop * hop].reshape(-1, hop)
    return (frames**2).mean(axis=1)  # [frames], 20 ms each


def test_twins_play_the_chunk_notes_with_another_instrument(tmp_path, codec):
    keys = make_dataset(tmp_path / "data")
    recorder = RecordingCodec(codec)
    assert add_structure_twins(tmp_path / "data", recorder, batch_size=8, progress=False) == 3
    audio = recorder.batches[0][:, 0].numpy()  # [3, T]: the twins, in key order
    name = twin_id(codec.codec_id)
    with open_dataset(tmp_path / "data") as store:
        records = [store.get(k) for k in keys]
        assert name in store.meta.codecs
    expected = codec.encode(torch.from_numpy(audio)[:, None])  # [3, D, L]
    for record, z in zip(records, expected):
        np.testing.assert_allclose(record.latents[name].astype(np.float32), z.numpy(), atol=2e-3, rtol=1e-2)

    twin, chunk = audio[0], records[0].audio
    assert twin.size == chunk.size
    assert np.sqrt(np.mean(twin**2)) == pytest.approx(np.sqrt(np.mean(chunk**2)), rel=1e-3)  # same level
    energy = frame_energy(twin)
    loud = energy.max()
    first_sound = int(np.argmax(energy > 1e-3 * loud)) * 441 / RATE
    assert first_sound == pytest.approx(ONSETS[0], abs=0.03)  # silent until the first note, then sounding
    second = round(ONSETS[1] * RATE / 441)
    assert energy[second + 1 : second + 5].mean() > 10 * energy[second - 4 : second - 1].mean()  # attack

    held = frame_energy(audio[1])
    assert held[:5].mean() > 1e-3 * held.max()  # a note held over the chunk start sounds from 0
    np.testing.assert_array_equal(audio[2], records[2].audio)  # no notes: the chunk itself
    assert add_structure_twins(tmp_path / "data", codec, progress=False) == 0  # resumable: nothing left


def test_twins_through_the_command_line(tmp_path):
    keys = make_dataset(tmp_path / "data")
    run = make_codec_run(tmp_path / "codec").path
    args = ["-q", "encode", str(tmp_path / "data"), "--codec", str(run), "--twins", "--no-progress"]
    assert main(args) == 0
    handle = load_codec(run)
    with open_dataset(tmp_path / "data") as store:
        for key in keys:
            latents = store.get(key).latents
            assert {handle.codec_id, twin_id(handle.codec_id)} <= set(latents)
        first = store.get(keys[0]).latents
        assert not np.allclose(first[handle.codec_id], first[twin_id(handle.codec_id)])


def test_a_dataset_without_notes_is_refused(tmp_path, codec):
    make_dataset(tmp_path / "data", with_notes=False)
    with pytest.raises(DatasetError, match=r"data: the chunks hold no notes.*after synth"):
        add_structure_twins(tmp_path / "data", codec, progress=False)
    with pytest.raises(DatasetError, match=r"soundfont .*missing\.sf2 not found"):
        missing = [str(tmp_path / "missing.sf2")]
        add_structure_twins(tmp_path / "data", codec, soundfonts=missing, progress=False)
    encode_dataset(tmp_path / "data", codec, progress=False)  # plain latents are unaffected
