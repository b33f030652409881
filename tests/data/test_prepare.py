"""``after prepare`` / ``after info``: good material in, bad files reported, resumable, deterministic."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from after.cli.main import main
from after.data.midi import Note, load_notes, save_notes
from after.data.prepare import COMMIT_DELAY_ENV, PrepareOptions, prepare
from after.data.records import open_dataset
from after.errors import AfterError, BadInputError, DatasetError

RATE = 16000
CHUNK_S = 1.0
OPTIONS = PrepareOptions(sample_rate=RATE, chunk_seconds=CHUNK_S, workers=1)


def _sine(seconds: float, freq: float, amp: float = 0.3, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    mono = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono  # [T, C] or [T]


def _notes(seconds: float, program: int, pitch: int = 60) -> list[Note]:
    return [
        Note(pitch + k % 5, 90, 0.13 + k * 0.4, 0.13 + k * 0.4 + 0.3, program)
        for k in range(int(seconds / 0.4))
    ]


def _good(folder: Path, relative: str, seconds: float, freq: float, program: int, **kwargs) -> None:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "FLOAT" if path.suffix == ".wav" else None
    sf.write(path, _sine(seconds, freq, **kwargs), kwargs.get("rate", RATE), subtype=subtype)
    save_notes(path.with_suffix(".mid"), _notes(seconds, program))


# good file -> (chunks kept, family)
GOOD = {
    "a/violin.wav": (3, "strings"),  # 2.7 s: 2 chunks + a 0.7 s tail kept (zero-padded)
    "a/b/flute.wav": (2, "pipe"),  # 2.3 s: the 0.3 s tail is dropped
    "stereo.wav": (2, "piano"),  # 2 channels, mixed down
    "six.wav": (1, "brass"),  # 6 channels: mixed down with a notice
    "gap.wav": (2, "organ"),  # 1 s sine, 1 s silence (skipped chunk), 1 s sine
    "hi.wav": (2, "reed"),  # 32 kHz: resampled down
}
BAD = {
    "corrupt.wav": "not a readable audio file",
    "empty.wav": "empty",
    "text.wav": "not a readable audio file",
    "nan.wav": "NaN",
    "low.wav": "8000 Hz is below the dataset's 16000 Hz",
    "silence.flac": "silent: peak below -60 dBFS over 360 s",
    "quiet.wav": "silent: peak -90.5 dBFS",
    "nonotes.wav": "MIDI side-car has no notes",
    "orphan.wav": "no MIDI side-car",
    "badmidi.wav": "not a readable MIDI file",
    "short.wav": "too short",
}


def make_corpus(folder: Path) -> None:
    """A folder holding every kind of good and bad file of the tables above."""
    _good(folder, "a/violin.wav", 2.7, 440, 40)
    _good(folder, "a/b/flute.wav", 2.3, 660, 73)
    _good(folder, "stereo.wav", 2.0, 330, 0, channels=2)
    _good(folder, "six.wav", 1.0, 550, 56, channels=6)
    _good(folder, "hi.wav", 2.0, 500, 65, rate=32000)
    gap = np.concatenate([_sine(1.0, 300), np.zeros(RATE), _sine(1.0, 300)])
    sf.write(folder / "gap.wav", gap, RATE, subtype="FLOAT")
    save_notes(folder / "gap.mid", _notes(3.0, 16))
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 40)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("these are my lyrics, not audio\n" * 20)
    nan = _sine(2.0, 200)
    nan[100] = np.nan
    sf.write(folder / "nan.wav", nan, RATE, subtype="FLOAT")
    _good(folder, "low.wav", 2.0, 200, 0, rate=8000)
    sf.write(folder / "silence.flac", np.zeros(360 * RATE, dtype=np.int16), RATE)  # 6 min: streamed check
    sf.write(folder / "quiet.wav", 1e-4 * _sine(2.0, 200), RATE, subtype="FLOAT")  # -90.5 dBFS
    save_notes(folder / "silence.mid", _notes(2.0, 0))
    sf.write(folder / "nonotes.wav", _sine(2.0, 250), RATE)
    save_notes(folder / "nonotes.mid", [])
    sf.write(folder / "orphan.wav", _sine(2.0, 250), RATE)
    sf.write(folder / "badmidi.wav", _sine(2.0, 250), RATE)
    (folder / "badmidi.mid").write_bytes(b"MThd garbage")
    _good(folder, "short.wav", 0.3, 250, 0)
    (folder / "readme.txt").write_text("not audio, not looked at")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare")
    make_corpus(root / "in")
    summary = prepare(root / "in", root / "data", OPTIONS)
    return root, summary


def test_prepare_keeps_exactly_the_good_material(prepared):
    root, summary = prepared
    with open_dataset(root / "data") as store:
        files = store.files()
        done = {path: entry for path, entry in files.items() if entry.status == "done"}
        assert set(done) == set(GOOD)
        for path, (n_chunks, family) in GOOD.items():
            assert len(done[path].chunk_keys) == n_chunks, path
            assert done[path].info["family"] == family
        assert len(store.chunk_keys()) == sum(n for n, _ in GOOD.values()) == summary.chunks_added
        for _, record in store.records():
            meta = record.metadata
            assert record.audio.shape == (RATE,)
            assert not np.all(record.audio == 0)
            if meta["file"] != "a/violin.wav" or meta["chunk_index"] != 2:
                assert meta["audio_seconds"] == CHUNK_S
            else:  # the kept tail is zero-padded
                assert meta["audio_seconds"] == pytest.approx(0.7)
                assert np.all(record.audio[int(0.7 * RATE) + 1 :] == 0)
            assert meta["offset_s"] == meta["chunk_index"] * CHUNK_S
    assert summary.silent_chunks == 1
    assert ("six.wav", "6 channels mixed down to mono") in summary.notices


def test_chunks_are_the_peak_normalised_source_with_its_notes(prepared):
    root, _ = prepared
    source, _ = sf.read(root / "in" / "a/violin.wav", dtype="float32")
    notes = load_notes(root / "in" / "a/violin.mid")
    with open_dataset(root / "data") as store:
        entry = store.files()["a/violin.wav"]
        gain = 10 ** (entry.info["gain_db"] / 20)
        peak = 0.0
        for key in entry.chunk_keys:
            record = store.get(key)
            start = record.metadata["chunk_index"] * RATE
            expected = source[start : start + RATE] * gain
            np.testing.assert_allclose(record.audio[: len(expected)], expected, atol=2e-4)
            peak = max(peak, float(np.abs(record.audio).max()))
            inside = [n for n in notes if n.start < start / RATE + CHUNK_S and n.end > start / RATE]
            assert len(record.notes) == len(inside)
            np.testing.assert_allclose(record.notes[:, 2], [n.start - start / RATE for n in inside])
            assert set(record.notes[:, 4]) <= {40.0}
    assert peak == pytest.approx(10 ** (-1 / 20), abs=1e-3)  # -1 dBFS


def test_every_bad_file_is_reported_with_its_reason(prepared, caplog):
    root, summary = prepared
    reasons = dict(summary.skipped)
    assert set(reasons) == set(BAD)
    for path, phrase in BAD.items():
        assert phrase in reasons[path], (path, reasons[path])
    assert summary.failed == []
    with open_dataset(root / "data") as store:  # the index keeps the reasons for `after info`
        stored = {p: e.reason for p, e in store.files().items() if e.status == "skipped"}
    assert stored == reasons


def test_bad_files_are_logged(tmp_path, caplog):
    folder = tmp_path / "in"
    _good(folder, "ok.wav", 1.0, 440, 0)
    (folder / "text.wav").write_text("hello")
    with caplog.at_level(logging.INFO, logger="after"):
        prepare(folder, tmp_path / "data", OPTIONS)
    assert any("skipped text.wav: not a readable audio file" in m for m in caplog.messages)
    assert any("added 1 files" in m for m in caplog.messages)


def test_info_json_matches_what_was_written(prepared, capsys):
    root, summary = prepared
    assert main(["info", str(root / "data"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    n_chunks = sum(n for n, _ in GOOD.values())
    assert info["chunks"] == n_chunks
    assert info["seconds"] == pytest.approx(n_chunks * CHUNK_S)
    assert info["audio_seconds"] == pytest.approx(summary.seconds_added) == pytest.approx(n_chunks - 0.3)
    assert (info["sample_rate"], info["chunk_seconds"], info["format_version"]) == (RATE, CHUNK_S, 1)
    assert info["families"] == {family: n for n, family in GOOD.values()}
    assert info["programs"]["Violin"] == 3
    assert info["files"] == len(GOOD)
    assert {item["path"]: item["reason"] for item in info["skipped"]} == dict(summary.skipped)
    assert info["latents"] == {}


def test_rerun_adds_only_new_or_changed_files(tmp_path):
    folder = tmp_path / "in"
    _good(folder, "one.wav", 2.0, 440, 0)
    _good(folder, "low.wav", 2.0, 200, 0, rate=8000)
    first = prepare(folder, tmp_path / "data", OPTIONS)
    assert (first.files_added, [p for p, _ in first.skipped]) == (1, ["low.wav"])
    with open_dataset(tmp_path / "data") as store:
        before = {key: store.get(key).audio for key in store.chunk_keys()}
    _good(folder, "two.wav", 1.0, 550, 40)
    second = prepare(folder, tmp_path / "data", OPTIONS)
    assert (second.files_added, second.files_unchanged, second.skipped) == (1, 2, [])
    third = prepare(
        folder, tmp_path / "data", PrepareOptions(**{**OPTIONS.__dict__, "allow_upsampling": True})
    )
    assert third.files_added == 1 and third.files_unchanged == 2  # the skipped file gets its new chance
    _good(folder, "one.wav", 1.0, 440, 0)  # changed: shorter now
    os.utime(folder / "one.wav", ns=(1, 1))
    fourth = prepare(folder, tmp_path / "data", OPTIONS)
    assert fourth.files_added == 1
    with open_dataset(tmp_path / "data") as store:
        files = store.files()
        assert {p for p, e in files.items() if e.status == "done"} == {"one.wav", "two.wav", "low.wav"}
        assert len(files["one.wav"].chunk_keys) == 1
        assert set(store.chunk_keys()) == {k for e in files.values() for k in e.chunk_keys}
        kept = files["one.wav"].chunk_keys[0]
        assert kept in before and len(store.chunk_keys()) == 1 + 1 + 2


def test_prepare_refuses_a_dataset_made_with_other_settings(tmp_path):
    _good(tmp_path / "in", "one.wav", 1.0, 440, 0)
    prepare(tmp_path / "in", tmp_path / "data", OPTIONS)
    with pytest.raises(DatasetError, match="16000 Hz"):
        prepare(tmp_path / "in", tmp_path / "data", PrepareOptions(sample_rate=22050, chunk_seconds=1.0))
    with pytest.raises(BadInputError, match="no audio files"):
        prepare(tmp_path / "data", tmp_path / "data2", OPTIONS)


def test_manifest_fields_are_attached(tmp_path):
    folder = tmp_path / "in"
    _good(folder, "s0.flac", 1.0, 440, 0)
    entry = {
        "id": "s0",
        "audio": "s0.flac",
        "midi": "s0.mid",
        "program": 71,
        "program_name": "Clarinet",
        "family": "reed",
        "soundfont": "TimGM6mb",
        "source": "procedural",
        "seed": 3,
    }
    (folder / "manifest.jsonl").write_text(json.dumps(entry) + "\n")
    prepare(folder, tmp_path / "data", OPTIONS)
    with open_dataset(tmp_path / "data") as store:
        meta = store.get(store.chunk_keys()[0]).metadata
    assert {k: meta[k] for k in ("program", "family", "soundfont", "source", "seed")} == {
        "program": 71,
        "family": "reed",
        "soundfont": "TimGM6mb",
        "source": "procedural",
        "seed": 3,
    }


def test_transcribe_without_basic_pitch_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "basic_pitch", None)  # makes `import basic_pitch` fail
    _good(tmp_path / "in", "one.wav", 1.0, 440, 0)
    options = PrepareOptions(sample_rate=RATE, chunk_seconds=1.0, midi="transcribe")
    with pytest.raises(AfterError, match=r"pip install --no-deps basic-pitch==0\.4\.0"):
        prepare(tmp_path / "in", tmp_path / "data", options)
    assert not (tmp_path / "data").exists()


def _all_records(path: Path) -> dict[str, bytes]:
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = {bytes(k).decode(): bytes(v) for k, v in txn.cursor() if bytes(k).startswith(b"chunk/")}
    env.close()
    return items


def _n_files(path: Path) -> int:
    try:
        with open_dataset(path) as store:
            return len(store.files())
    except DatasetError:
        return 0


def test_run_killed_midway_then_resumed_equals_an_uninterrupted_run(tmp_path):
    folder = tmp_path / "in"
    for i in range(8):
        _good(folder, f"f{i}.wav", 2.6, 200 + 50 * i, 8 * i)
    code = (
        "import sys; from after.data.prepare import PrepareOptions, prepare; "
        f"prepare(sys.argv[1], sys.argv[2], PrepareOptions(sample_rate={RATE}, chunk_seconds=1.0, workers=1))"
    )
    env = {**os.environ, COMMIT_DELAY_ENV: "0.3"}
    process = subprocess.Popen([sys.executable, "-c", code, str(folder), str(tmp_path / "killed")], env=env)
    deadline = time.monotonic() + 60
    while _n_files(tmp_path / "killed") < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = _n_files(tmp_path / "killed")
    assert 2 <= partial < 8, "the run was not interrupted between files"
    resumed = prepare(folder, tmp_path / "killed", OPTIONS)
    assert resumed.files_added == 8 - partial
    reference = prepare(
        folder, tmp_path / "whole", PrepareOptions(sample_rate=RATE, chunk_seconds=1.0, workers=2)
    )
    assert reference.files_added == 8
    killed, whole = _all_records(tmp_path / "killed"), _all_records(tmp_path / "whole")
    assert len(whole) == 8 * 3 and killed == whole


def test_cli_exit_codes(tmp_path, caplog):
    _good(tmp_path / "in", "ok.wav", 1.0, 440, 0)
    (tmp_path / "in" / "text.wav").write_text("hello")
    args = ["--sample-rate", str(RATE), "--chunk-seconds", "1", "--workers", "1"]
    with caplog.at_level(logging.INFO, logger="after"):
        assert main(["prepare", str(tmp_path / "in"), str(tmp_path / "data"), *args]) == 0
    assert any("skipped text.wav" in m for m in caplog.messages)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "text.wav").write_text("hello")
    assert main(["prepare", str(tmp_path / "bad"), str(tmp_path / "data2"), *args]) == 1
    assert main(["prepare", str(tmp_path / "missing"), str(tmp_path / "data3"), *args]) == 2
    assert main(["info", str(tmp_path / "missing")]) == 2


def test_two_hours_of_silence_beside_a_good_file_is_skipped(tmp_path, caplog):
    rate = 44100
    folder = tmp_path / "in"
    folder.mkdir()
    with sf.SoundFile(folder / "two_hours.flac", "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        block = np.zeros(rate * 600, dtype=np.int16)
        for _ in range(12):  # 12 x 10 min
            out.write(block)
    sf.write(folder / "good.wav", _sine(3.0, 440, rate=rate), rate)
    options = PrepareOptions(sample_rate=rate, chunk_seconds=1.0, midi="none", workers=1)
    with caplog.at_level(logging.INFO):
        summary = prepare(folder, tmp_path / "data", options)
    with open_dataset(tmp_path / "data") as store:
        sources = {store.get(key).metadata["file"] for key in store.chunk_keys()}
        assert len(store.chunk_keys()) == 3
    assert sources == {"good.wav"}
    assert "two_hours.flac: silent: peak below -60 dBFS over 7200 s" in caplog.text
    assert summary.files_added == 1


def test_transcribed_notes_follow_the_played_melody(tmp_path):
    from after.data.synth import resolve_soundfonts
    from after.data.transcription import transcription_available

    if not transcription_available():
        if os.environ.get("CI") == "true":
            pytest.fail("the transcription extra must be installed in CI (scripts/setup.sh)")
        pytest.skip("basic-pitch's ONNX model is not installed")
    rate = 22050
    melody = [Note(60 + (2 * k) % 12, 100, 0.5 * k, 0.5 * k + 0.4, 73) for k in range(12)]
    (soundfont,) = resolve_soundfonts(["FluidR3_GM"])
    folder = tmp_path / "in"
    folder.mkdir()
    save_notes(tmp_path / "melody.mid", melody)
    # The fluidsynth CLI renders in its own process (FluidSynth loaded here would make forks hang).
    command = ["fluidsynth", "-ni", "-q", "-r", str(rate), "-F", str(folder / "flute.wav")]
    subprocess.run([*command, soundfont.path, str(tmp_path / "melody.mid")], check=True, timeout=60)
    options = PrepareOptions(sample_rate=rate, chunk_seconds=3.0, midi="transcribe", workers=1)
    prepare(folder, tmp_path / "data", options)
    with open_dataset(tmp_path / "data") as store:
        record = store.get(sorted(store.chunk_keys())[0])
    pitches = sorted({int(row[0]) for row in record.notes})
    assert pitches, "transcription found no notes"
    expected = sorted({note.pitch for note in melody if note.start < 3.0})
    assert len(set(pitches) & set(expected)) >= 0.8 * len(expected)
