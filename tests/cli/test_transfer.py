"""``after transfer``: audio and MIDI structures give audio of the right length and rate; bad input
gives one clear line and exit code 2."""

import logging

import numpy as np
import pytest
import soundfile as sf

from after.cli.main import main
from after.codec.config import codec_preset
from after.data.audio import save_audio
from after.data.midi import Note, save_notes
from after.diffusion.config import diffusion_preset
from after.runtime.bundle import random_bundle, release_bundle
from after.runtime.timbre_map import fit_timbre_map


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 330 * t) * np.exp(-2 * t)
    return np.stack([mono * (0.5 + 0.5 * c) for c in range(channels)]).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    audio = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=0, name="tiny-audio")
    audio.timbre_map = fit_timbre_map(np.random.default_rng(0).standard_normal((8, 8)), steps=10)
    midi = random_bundle(codec_preset("tiny"), diffusion_preset("tiny_midi"), seed=1, name="tiny-midi")
    return release_bundle(audio, root / "audio"), release_bundle(midi, root / "midi")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    save_audio(root / "timbre.flac", tone(0.8, 22050), 22050)
    save_audio(root / "structure.wav", tone(1.3, 44100, channels=2), 44100)  # other rate, stereo
    save_notes(root / "song.mid", [Note(60, 100, 0.0, 0.5), Note(67, 90, 0.25, 0.9), Note(64, 70, 0.6, 1.2)])
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return root


def test_audio_structure_gives_its_length_at_the_model_rate(models, files, tmp_path, caplog):
    out = tmp_path / "out.wav"
    with caplog.at_level(logging.INFO):
        code = main(["transfer", "--model", str(models[0]), "--timbre", str(files / "timbre.flac"),
                     "--structure", str(files / "structure.wav"), "--out", str(out), "--steps", "2",
                     "--chunk", "2"])  # fmt: skip
    assert code == 0
    info = sf.info(str(out))
    assert info.samplerate == 22050 and info.channels == 1
    assert info.frames == round(1.3 * 44100 * 22050 / 44100)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "resampling from 44100 Hz" in messages and "mixing 2 channels down to mono" in messages
    audio, _ = sf.read(str(out))
    assert np.abs(audio).max() > 1e-3


def test_the_progress_bar_is_shown_unless_no_progress(models, files, tmp_path, capsys):
    args = ["transfer", "--model", str(models[0]), "--timbre", str(files / "timbre.flac"),
            "--structure", str(files / "structure.wav"), "--steps", "1", "--chunk", "2"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "shown.wav")]) == 0
    assert "generating" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "hidden.wav"), "--no-progress"]) == 0
    assert "generating" not in capsys.readouterr().err
    assert (tmp_path / "hidden.wav").is_file()


def test_threads_set_torch_for_the_run_only_and_keep_the_output(models, files, tmp_path, monkeypatch):
    """``--threads N`` is torch's thread count while the model runs (1 by default), the count is
    restored after, and the output does not depend on it beyond float rounding."""
    import torch

    import after.runtime.transfer as transfer_module

    seen, real = [], transfer_module.transfer_files

    def recording(**kwargs):
        seen.append(torch.get_num_threads())
        return real(**kwargs)

    monkeypatch.setattr(transfer_module, "transfer_files", recording)
    before = torch.get_num_threads()
    args = ["transfer", "--model", str(models[0]), "--timbre", str(files / "timbre.flac"),
            "--structure", str(files / "structure.wav"), "--steps", "2", "--no-progress"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "one.wav")]) == 0
    assert main([*args, "--out", str(tmp_path / "two.wav"), "--threads", "2"]) == 0
    assert seen == [1, 2] and torch.get_num_threads() == before
    one, two = (sf.read(str(tmp_path / f"{n}.wav"))[0] for n in ("one", "two"))
    np.testing.assert_allclose(one, two, atol=1e-4)


def test_midi_structure_gives_its_duration_plus_the_tail(models, files, tmp_path):
    out = tmp_path / "out.flac"
    code = main(["transfer", "--model", str(models[1]), "--timbre", str(files / "timbre.flac"),
                 "--structure", str(files / "song.mid"), "--out", str(out),
                 "--steps", "2", "--tail", "0.5"])  # fmt: skip
    assert code == 0
    info = sf.info(str(out))
    assert info.samplerate == 22050 and info.format == "FLAC"
    assert info.frames == round((1.2 + 0.5) * 22050)


def test_manual_timbre_and_map_position(models, files, tmp_path):
    base = [
        "transfer",
        "--model",
        str(models[0]),
        "--structure",
        str(files / "structure.wav"),
        "--steps",
        "1",
    ]
    assert main([*base, "--timbre-vector", ",".join(["0.1"] * 8), "--out", str(tmp_path / "v.wav")]) == 0
    assert main([*base, "--map-xy", "0.2,-0.3", "--out", str(tmp_path / "m.wav")]) == 0
    a, _ = sf.read(str(tmp_path / "v.wav"))
    b, _ = sf.read(str(tmp_path / "m.wav"))
    assert a.shape == b.shape and not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--model": "{tmp}/nowhere"}, "model not found"),
        ({"--model": "{files}/timbre.flac"}, "is a file, not a model"),
        ({"--model": "{midi}"}, "is a MIDI model: give a .mid file"),
        ({"--structure": "{files}/song.mid"}, "takes its structure from audio, not from a MIDI file"),
        ({"--steps": "0"}, "steps=0: expected an integer >= 1"),
        ({"--guidance-timbre": "-1"}, "guidance_timbre=-1.0: expected a number >= 0"),
        ({"--timbre-vector": "0.1,0.2,0.3"}, "timbre_vector: got 3 values, expected 8"),
        ({"--timbre-vector": "0.1,abc"}, "expected numbers separated by commas"),
        ({"--structure": "{files}/broken.wav"}, "broken.wav"),
        ({"--structure": "{files}/missing.wav"}, "structure file not found"),
        ({"--out": "{tmp}/out.mp4"}, "must be a .wav or .flac"),
        ({"--threads": "0"}, "--threads 0: expected a whole number of CPU threads >= 1"),
    ],
)
def test_bad_input_is_one_clear_line(models, files, tmp_path, caplog, change, message):
    args = {
        "--model": str(models[0]),
        "--timbre": str(files / "timbre.flac"),
        "--structure": str(files / "structure.wav"),
        "--out": str(tmp_path / "out.wav"),
        "--steps": "1",
    }
    for key, value in change.items():
        args[key] = value.format(tmp=tmp_path, files=files, midi=models[1])
    argv = ["transfer"] + [item for pair in args.items() for item in pair]
    assert main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and "Traceback" not in errors[0]
    assert message in errors[0]
    assert not (tmp_path / "out.wav").exists()
