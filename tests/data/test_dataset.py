"""The torch Dataset: crops inside chunks, aligned piano rolls, a deterministic split, references."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from after.data.dataset import FAMILY_LABELS, AudioCropDataset, ChunkDataset, split_files
from after.data.midi import Note, load_notes, piano_roll, save_notes
from after.data.prepare import PrepareOptions, prepare
from after.data.records import CodecInfo, open_dataset
from after.errors import DatasetError

RATE = 8000
CROP = 3000
ROLL_RATE = 50.0
N_FILES = 8


def _write(folder, name: str, seconds: float, program: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    audio = 0.2 * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.01 * rng.standard_normal(len(t))
    sf.write(folder / f"{name}.wav", audio, RATE, subtype="FLOAT")
    starts = np.sort(rng.uniform(0.0, seconds - 0.2, 12)) + 0.0037  # off the frame grid
    notes = [
        Note(int(rng.integers(40, 90)), int(rng.integers(20, 127)), s, s + 0.33, program) for s in starts
    ]
    save_notes(folder / f"{name}.mid", notes)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    (root / "in").mkdir()
    for i in range(N_FILES):
        _write(root / "in", f"f{i}", 2.3 + 0.4 * i, program=8 * i, seed=i)
    prepare(root / "in", root / "data", PrepareOptions(sample_rate=RATE, chunk_seconds=1.0, workers=1))
    return root


def test_crops_lie_inside_their_chunk_and_match_its_audio(dataset_dir):
    data = ChunkDataset(dataset_dir / "data", CROP, split="all")
    torch.manual_seed(0)
    with open_dataset(dataset_dir / "data") as store:
        starts = []
        for index in range(len(data)):
            item = data[index]
            record = store.get(data.keys[index])
            start = round((item["offset_s"] - record.metadata["offset_s"]) * RATE)
            valid = round(record.metadata["audio_seconds"] * RATE)
            assert start >= 0 and start + CROP <= min(valid, RATE)  # never in the zero padding
            assert item["audio"].shape == (1, CROP)
            np.testing.assert_array_equal(item["audio"][0].numpy(), record.audio[start : start + CROP])
            family, program = int(item["family"]), int(item["program"])
            assert (
                FAMILY_LABELS[family] == record.metadata["family"] and program == record.metadata["program"]
            )
            starts.append(start)
    assert len(set(starts)) > 1  # offsets are random in training mode


def test_piano_roll_is_aligned_with_the_source_notes(dataset_dir):
    data = ChunkDataset(dataset_dir / "data", CROP, split="all", roll_frame_rate=ROLL_RATE)
    n_frames = int(CROP / RATE * ROLL_RATE)
    active = 0
    for index in range(0, len(data), 3):
        item = data[index]
        file = data.file_of[data.keys[index]]
        notes = load_notes(dataset_dir / "in" / file.replace(".wav", ".mid"))
        expected = piano_roll(notes, ROLL_RATE, n_frames, start=item["offset_s"])  # absolute file time
        np.testing.assert_array_equal(item["piano_roll"].numpy(), expected)
        active += int(expected.sum() > 0)
    assert active > 3


def test_split_is_deterministic_and_disjoint_by_source_file(dataset_dir):
    train = ChunkDataset(dataset_dir / "data", CROP, split="train", validation_fraction=0.3)
    validation = ChunkDataset(dataset_dir / "data", CROP, split="validation", validation_fraction=0.3)
    again = ChunkDataset(dataset_dir / "data", CROP, split="validation", validation_fraction=0.3)
    train_files, validation_files = set(train.keys_of_file), set(validation.keys_of_file)
    assert train_files and validation_files and not train_files & validation_files
    assert len(train_files | validation_files) == N_FILES
    assert validation.keys == again.keys and len(train) + len(validation) == len(
        ChunkDataset(dataset_dir / "data", split="all")
    )
    # a file's side does not depend on the other files
    paths = [f"x/{i}.wav" for i in range(200)]
    _, held_out = split_files(paths, 0.1)
    _, held_out_half = split_files(paths[:100], 0.1)
    assert set(held_out_half) == {p for p in held_out if p in paths[:100]}
    assert 5 <= len(held_out) <= 40


def test_validation_crops_are_fixed_and_training_crops_follow_the_torch_seed(dataset_dir):
    validation = ChunkDataset(dataset_dir / "data", CROP, split="validation", validation_fraction=0.3)
    first = [validation[i]["audio"] for i in range(len(validation))]
    second = [validation[i]["audio"] for i in range(len(validation))]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    train = ChunkDataset(dataset_dir / "data", CROP, split="train", validation_fraction=0.3)
    torch.manual_seed(3)
    a = [train[i]["offset_s"] for i in range(len(train))]
    torch.manual_seed(3)
    assert a == [train[i]["offset_s"] for i in range(len(train))]


def test_other_excerpt_comes_from_another_chunk_of_the_same_file(dataset_dir):
    data = ChunkDataset(dataset_dir / "data", CROP, split="all", with_reference=True)
    for key in data.keys[:10]:
        other = data.sample_other_excerpt(key)
        assert other["key"] != key and data.file_of[other["key"]] == data.file_of[key]
    item = data[0]
    assert item["reference_audio"].shape == (1, CROP)


def test_loader_workers_open_the_store_lazily(dataset_dir):
    data = ChunkDataset(dataset_dir / "data", CROP, split="all")
    first = data[0]["audio"]  # reading in the main process first must not break forked workers
    loader = DataLoader(data, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(batch["index"]) for batch in batches) == len(data)
    assert batches[0]["audio"].shape == (4, 1, CROP)
    assert batches[0]["index"][0] == 0 and batches[0]["audio"][0].shape == first.shape


def test_latents_are_cropped_in_frames_with_aligned_audio(tmp_path, dataset_dir):
    import shutil

    path = tmp_path / "data"
    shutil.copytree(dataset_dir / "data", path)
    with pytest.raises(DatasetError, match="after encode"):
        ChunkDataset(path, split="all", codec_id="tiny")
    hop, frames = 100, RATE // 100
    with open_dataset(path, readonly=False) as store:
        keys = store.chunk_keys()
        latents = {
            k: np.tile(np.arange(frames, dtype=np.float32) + 1000 * i, (4, 1)) for i, k in enumerate(keys)
        }
        store.add_latents("tiny", CodecInfo(hop=hop, latent_dim=4, sample_rate=RATE), latents)
    data = ChunkDataset(path, split="all", codec_id="tiny", crop_frames=16)
    with open_dataset(path) as store:
        for index in range(0, len(data), 4):
            item = data[index]
            record = store.get(data.keys[index])
            first = int(item["latents"][0, 0]) % 1000
            assert item["latents"].shape == (4, 16)
            np.testing.assert_array_equal(item["latents"][1].numpy() % 1000, np.arange(first, first + 16))
            np.testing.assert_array_equal(
                item["audio"][0].numpy(), record.audio[first * hop : (first + 16) * hop]
            )
            assert item["piano_roll"].shape == (2, 128, 16)


def test_audio_crop_dataset_yields_plain_audio_tensors(dataset_dir):
    crops = AudioCropDataset(dataset_dir / "data", CROP, split="all", deterministic=True)
    full = ChunkDataset(dataset_dir / "data", CROP, split="all", deterministic=True)
    assert len(crops) == len(full)
    for index in (0, len(crops) - 1):
        assert torch.equal(crops[index], full[index]["audio"])
