"""The models shipped inside the package: found by name, within the size budget, never unpickled,
tamper-checked, and used by ``after transfer`` and ``after export`` when no model is given."""

import json
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from after.cli.main import main
from after.data.audio import save_audio
from after.data.midi import Note, save_notes
from after.errors import ModelFileError
from after.runtime.bundle import (
    DEFAULT_MIDI_MODEL_NAME,
    DEFAULT_MODEL_NAME,
    MODEL_FILE,
    load_bundle,
    models_dir,
)

SIZE_BUDGET_BYTES = 40 * 1024 * 1024


def shipped_files() -> list:
    return sorted(p for p in models_dir().rglob("*") if p.is_file() and p.name != "__init__.py")


def test_both_models_ship_as_safetensors_and_json_within_the_budget():
    files = shipped_files()
    assert {p.parent.name for p in files} >= {DEFAULT_MODEL_NAME, DEFAULT_MIDI_MODEL_NAME}
    # nothing that could be unpickled: weights are safetensors, descriptions JSON
    assert {p.suffix for p in files if "__pycache__" not in p.parts} <= {".safetensors", ".json"}
    assert sum(p.stat().st_size for p in files) <= SIZE_BUDGET_BYTES
    audio, midi = load_bundle(None), load_bundle(DEFAULT_MIDI_MODEL_NAME)
    assert audio.diffusion_config.mode == "audio" and midi.diffusion_config.mode == "midi"
    assert audio.sample_rate == midi.sample_rate


def test_the_two_models_share_one_codec_file_and_a_copy_still_loads(tmp_path):
    # one 12 MB codec in the package: the MIDI model's model.json names the audio model's file
    codecs = [p for p in shipped_files() if p.name == "codec.safetensors"]
    assert [p.parent.name for p in codecs] == [DEFAULT_MODEL_NAME]
    midi = load_bundle(DEFAULT_MIDI_MODEL_NAME)
    audio = load_bundle(DEFAULT_MODEL_NAME)
    for key, value in audio.codec.state_dict().items():
        assert torch.equal(midi.codec.state_dict()[key], value)
    # a copy of the MIDI model taken out of the package finds the codec there by its sha256
    copy = tmp_path / "my-midi-model"
    shutil.copytree(models_dir() / DEFAULT_MIDI_MODEL_NAME, copy)
    assert load_bundle(copy).mode == "midi"


def test_a_tampered_copy_is_refused_naming_the_file(tmp_path):
    copy = tmp_path / "default"
    shutil.copytree(models_dir() / DEFAULT_MODEL_NAME, copy)
    weights = copy / "diffusion.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(
        ModelFileError, match=r"diffusion\.safetensors.*sha256|sha256.*diffusion\.safetensors"
    ):
        load_bundle(copy)


def test_a_config_that_does_not_match_the_weights_is_refused(tmp_path):
    copy = tmp_path / "default"
    shutil.copytree(models_dir() / DEFAULT_MODEL_NAME, copy)
    description = json.loads((copy / MODEL_FILE).read_text())
    description["diffusion"]["denoiser"]["dim"] = int(description["diffusion"]["denoiser"]["dim"]) * 2
    (copy / MODEL_FILE).write_text(json.dumps(description))
    with pytest.raises(ModelFileError):
        load_bundle(copy)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    rate = 22050
    t = np.arange(int(1.5 * rate)) / rate
    notes = sum(np.sin(2 * np.pi * f * t) * (t >= start) for f, start in ((262, 0.0), (330, 0.5), (392, 1.0)))
    save_audio(root / "structure.wav", (0.2 * notes * np.exp(-1.5 * t))[None].astype(np.float32), rate)
    saw = 2 * ((220 * t) % 1.0) - 1
    save_audio(root / "timbre.wav", (0.2 * saw)[None].astype(np.float32), rate)
    save_notes(root / "song.mid", [Note(60, 100, 0.0, 0.5), Note(64, 90, 0.5, 1.0), Note(67, 80, 1.0, 1.5)])
    return root


@pytest.mark.parametrize("structure", ["structure.wav", "song.mid"])
def test_transfer_without_model_uses_the_embedded_one(inputs, tmp_path, caplog, structure):
    out = tmp_path / "out.wav"
    args = ["transfer", "--timbre", str(inputs / "timbre.wav"), "--structure", str(inputs / structure)]
    with caplog.at_level(logging.INFO):
        assert main([*args, "--out", str(out), "--steps", "2"]) == 0
    expected = DEFAULT_MIDI_MODEL_NAME if structure.endswith(".mid") else DEFAULT_MODEL_NAME
    assert f"(model {expected})" in caplog.text
    audio, rate = sf.read(str(out))
    assert rate == load_bundle(expected).sample_rate
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3


def test_export_without_model_exports_the_embedded_one(tmp_path):
    out = tmp_path / "default.ts"
    assert main(["export", "--out", str(out)]) == 0
    module = torch.jit.load(str(out))
    bundle = load_bundle(None)
    assert int(module.get_sample_rate()) == bundle.sample_rate
    assert (tmp_path / "default.png").is_file()
