"""nn~ export of the main model: contract check, same output as the pipeline, batches, attributes."""

import logging

import numpy as np
import pytest
import torch

from after.cli.main import main
from after.codec.config import codec_preset
from after.diffusion.config import diffusion_preset
from after.export.model_export import ExportedAfter, check_model_file
from after.export.nn_tilde import NnTildeModule
from after.runtime.bundle import random_bundle, release_bundle
from after.runtime.pipeline import AudioToAudioPipeline, MidiToAudioPipeline
from after.runtime.voices import VoiceAllocator

HOP = 1024
VECTOR = [0.3, -0.2, 0.1, 0.5, -0.5, 0.0, 0.2, -0.1]


def signal(samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 22050
    return (0.3 * np.sin(2 * np.pi * 200 * t * (1 + t)) + 0.05 * rng.standard_normal(samples)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def audio_bundle():
    return random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=0)


@pytest.fixture(scope="module")
def midi_bundle():
    return random_bundle(codec_preset("tiny"), diffusion_preset("tiny_midi"), seed=1, name="tiny-midi")


@pytest.fixture(scope="module")
def audio_file(audio_bundle, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "audio.ts"
    ExportedAfter(audio_bundle, chunk=2).export(path)
    return path


@pytest.fixture(scope="module")
def midi_file(midi_bundle, tmp_path_factory):
    """Written by the CLI from a released folder: ``after export FOLDER --out NAME.ts --midi``."""
    folder = release_bundle(midi_bundle, tmp_path_factory.mktemp("models") / "tiny-midi")
    out = tmp_path_factory.mktemp("export") / "after.midi.tiny.ts"
    code = main(["export", str(folder), "--out", str(out), "--midi", "--voices", "4", "--map-steps", "50"])
    assert code == 0
    return out


def fresh(path):
    return torch.jit.load(str(path))


def test_check_passes_on_audio_and_midi_exports(audio_file, midi_file, caplog):
    assert check_model_file(audio_file) == ([], [])
    assert midi_file.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    with caplog.at_level(logging.INFO):
        assert main(["check-export", str(midi_file)]) == 0
    assert any("passes the nn~ contract check" in r.getMessage() for r in caplog.records)


def test_methods_and_labels_follow_the_contract(audio_file, midi_file):
    audio, midi = fresh(audio_file), fresh(midi_file)
    assert set(audio.get_methods()) == {
        "forward", "forward_manual", "structure", "timbre", "diffuse", "decode", "generate",
        "latent2map", "map2latent",
    }  # fmt: skip
    assert audio.forward_params.tolist() == [2, 1, 1, 1]
    assert audio.forward_manual_params.tolist() == [1 + 8, 1, 1, 1]
    assert audio.timbre_params.tolist() == [1, 1, 8, HOP]
    assert audio.diffuse_params.tolist() == [12 + 8, HOP, 16, HOP]
    assert midi.forward_manual_params.tolist() == [2 * 4 + 8, HOP, 1, 1]
    assert midi.structure_params.tolist() == [2 * 4, HOP, 16, HOP]
    assert list(midi.forward_manual_input_labels[:2]) == [
        "(signal) voice 0 pitch",
        "(signal) voice 0 velocity",
    ]
    assert audio.get_attributes() == ["nb_steps", "guidance_timbre", "guidance_structure"]
    assert audio.get_sample_rate() == 22050


def test_file_output_equals_the_pipeline(audio_bundle, audio_file):
    model = fresh(audio_file)
    assert model.set_nb_steps(3) == 0 and model.set_guidance_timbre(1.5) == 0
    assert model.set_guidance_structure(0.5) == 0
    pipeline = AudioToAudioPipeline(
        audio_bundle, chunk=2, steps=3, guidance_timbre=1.5, guidance_structure=0.5
    )
    pipeline.set_timbre_vector(VECTOR)
    x = signal(4096 * 2 + 8192, seed=0)
    expected = pipeline.transfer_stream(x)[0]
    outputs, start = [], 0
    for size in (4096, 8192, 4096):  # any multiple of hop * chunk, changing between calls
        block = torch.zeros(1, 9, size)
        block[0, 0] = torch.from_numpy(x[start : start + size])
        block[0, 1:] = torch.tensor(VECTOR)[:, None]
        outputs.append(model.forward_manual(block)[0, 0])
        start += size
    got = torch.cat(outputs).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_live_timbre_forward_equals_the_pipeline(audio_bundle, audio_file):
    model = fresh(audio_file)
    # the live timbre is refreshed at call boundaries: compare with the same block size (4 frames)
    pipeline = AudioToAudioPipeline(audio_bundle, chunk=4, live_timbre=True)
    structure, timbre = signal(16384, 1), signal(16384, 2)
    expected = pipeline.stream(
        [np.stack([structure, timbre])[:, i : i + 4096] for i in range(0, 16384, 4096)]
    )
    got = torch.cat([model(torch.from_numpy(np.stack([structure, timbre])[None, :, i : i + 4096]))
                     for i in range(0, 16384, 4096)], dim=-1)  # fmt: skip
    assert np.abs(got[0].numpy() - expected).max() <= 1e-4 * np.abs(expected).max()


def test_midi_file_equals_the_pipeline(midi_bundle, midi_file):
    model = fresh(midi_file)
    pipeline = MidiToAudioPipeline(midi_bundle, chunk=1, n_voices=4)
    pipeline.set_timbre_vector(VECTOR)
    allocator = VoiceAllocator(4)
    frames = []
    for block in range(16):
        if block == 1:
            allocator.note_on(60, 100, 100)
            allocator.note_on(64, 80, 700)
        if block == 5:
            allocator.note_off(60, 10)
        if block == 7:
            allocator.note_on(67, 90, 0)
        if block == 12:
            allocator.all_notes_off(0)
        frames.append(allocator.render(1, HOP))
    expected = pipeline.stream([np.zeros((0, HOP), np.float32)] * 16, frames)[0]
    voices = torch.from_numpy(np.concatenate([f.to_nn_tilde() for f in frames], axis=1))  # [8, 16]
    outputs = []
    for i in range(0, 16, 4):
        block = torch.zeros(1, 8 + 8, 4)
        block[0, :8] = voices[:, i : i + 4]
        block[0, 8:] = torch.tensor(VECTOR)[:, None]
        outputs.append(model.forward_manual(block)[0, 0])
    got = torch.cat(outputs).numpy()
    assert np.abs(expected).max() > 1e-3
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_every_batch_element_is_generated_independently(audio_file):
    x = torch.from_numpy(signal(4096, 3))
    single_in = torch.zeros(1, 9, 4096)
    single_in[0, 0] = x
    single = fresh(audio_file).forward_manual(single_in)
    batch = fresh(audio_file).forward_manual(single_in.repeat(4, 1, 1))
    assert batch.shape == (4, 1, 4096)
    torch.testing.assert_close(batch[0], single[0], rtol=1e-4, atol=1e-4 * float(single.abs().max()))
    for b in range(1, 4):  # same input, own noise: not a copy of element 0
        assert (batch[b] - batch[0]).abs().max() > 1e-3
    model = fresh(audio_file)
    first = model.forward_manual(single_in)
    model.forward_manual(single_in.repeat(4, 1, 1))
    again = model.forward_manual(single_in)  # batch 4 -> 1 restarts the stream from the beginning
    torch.testing.assert_close(again, first, rtol=1e-4, atol=1e-6)


def test_setters_refuse_bad_values_and_keep_the_old_one(audio_file):
    model = fresh(audio_file)
    steps = model.get_nb_steps()
    assert model.set_nb_steps(0) == -1 and model.set_nb_steps(-3) == -1 and model.set_nb_steps(10**6) == -1
    assert model.get_nb_steps() == steps
    assert model.set_guidance_timbre(-1.0) == -1 and model.set_guidance_structure(float("nan")) == -1
    assert model.set_nb_steps(6) == 0 and model.get_nb_steps() == 6
    assert model.set_guidance_timbre(2.5) == 0 and model.get_guidance_timbre() == 2.5
    assert model.get_guidance_structure() == 1.0


def test_map_methods_round_trip_a_point(midi_file):
    model = fresh(midi_file)
    xy = torch.tensor([0.3, -0.6])[None, :, None].expand(1, 2, 64)
    c = model.map2latent(xy)
    assert c.shape == (1, 8, 64)
    back = model.latent2map(c)
    assert back.shape == (1, 2, 64) and torch.isfinite(back).all()


class WrongLength(NnTildeModule):
    """Breaks the contract: forward returns half the samples it promises; setter accepts anything."""

    def __init__(self):
        super().__init__(22050)
        self.register_attribute("nb_steps", 4)
        self.register_method("forward", 1, 1, 1, 1, test=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.size(-1) // 2]

    @torch.jit.export
    def get_nb_steps(self) -> int:
        return 4

    @torch.jit.export
    def set_nb_steps(self, value: int) -> int:
        return 0


def test_check_export_fails_clearly_on_a_broken_file(tmp_path, caplog):
    path = tmp_path / "broken.ts"
    WrongLength().export(path)
    problems, _ = check_model_file(path)
    assert any("method 'forward'" in p and "expected (1, 1, 4096)" in p for p in problems)
    assert any("set_nb_steps(0) returned 0" in p for p in problems)
    assert any("'guidance_timbre' is missing" in p for p in problems)
    assert main(["check-export", str(path)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("\n" not in e for e in errors)
    assert main(["check-export", str(tmp_path / "none.ts")]) == 1
    assert "file not found" in caplog.records[-2].getMessage()


def test_export_cli_refuses_an_audio_model_as_midi(audio_bundle, tmp_path, caplog):
    folder = release_bundle(audio_bundle, tmp_path / "audio-model")
    assert main(["export", str(folder), "--out", str(tmp_path / "x.ts"), "--midi"]) == 2
    assert "is an audio model" in caplog.records[-1].getMessage()
    assert main(["export", str(folder), "--out", str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.ts").exists()
