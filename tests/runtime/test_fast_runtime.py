"""Fast paths of the Python hosts: scripted engine, int8 weights, caches sized by the steps in use."""

import numpy as np
import pytest
import torch

from after.cli.main import main
from after.codec.config import codec_preset
from after.data.audio import load_audio, save_audio
from after.diffusion.config import diffusion_preset
from after.runtime.bundle import random_bundle, release_bundle
from after.runtime.engine import TransferEngine, quantize_engine, weight_bytes
from after.runtime.live import load_pipeline
from after.runtime.pipeline import AudioToAudioPipeline, MidiToAudioPipeline
from after.runtime.voices import VoiceAllocator

HOP = 1024
VECTOR = [0.3, -0.2, 0.1, 0.5, -0.5, 0.0, 0.2, -0.1]


def signal(samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 22050
    tone = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.5 * t))
    return (tone + 0.05 * rng.standard_normal(samples)).astype(np.float32)


@pytest.fixture(scope="module")
def audio_bundle():
    return random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=0)


@pytest.fixture(scope="module")
def midi_bundle():
    return random_bundle(codec_preset("tiny"), diffusion_preset("tiny_midi"), seed=1, name="tiny-midi")


def close(got: np.ndarray, expected: np.ndarray, tolerance: float = 1e-5) -> None:
    assert np.abs(expected).max() > 1e-3  # a silent output would prove nothing
    assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()


@pytest.mark.parametrize("int8", [False, True])
def test_scripted_audio_pipeline_equals_the_eager_one(audio_bundle, int8):
    settings = dict(
        chunk=1, steps=3, guidance_timbre=1.5, guidance_structure=0.7, int8=int8, live_timbre=True
    )
    eager = AudioToAudioPipeline(audio_bundle, **settings)
    scripted = AudioToAudioPipeline(audio_bundle, scripted=True, **settings)
    assert scripted.scripted and not eager.scripted
    structure, timbre = signal(HOP * 12, 0), signal(HOP * 12, 1)
    blocks = [np.stack([structure, timbre])[:, i : i + HOP] for i in range(0, HOP * 12, HOP)]
    close(scripted.stream(blocks), eager.stream(blocks))
    # settings changed mid-session reach the scripted engine; reset restarts its stream
    for pipeline in (eager, scripted):
        pipeline.set_parameter("steps", 2)
        pipeline.set_parameter("guidance_timbre", 2.0)
    close(scripted.stream(blocks), eager.stream(blocks))
    assert scripted.parameters() == eager.parameters()


def test_scripted_midi_pipeline_equals_the_eager_one(midi_bundle):
    eager = MidiToAudioPipeline(midi_bundle, chunk=1, n_voices=4, steps=2)
    scripted = MidiToAudioPipeline(midi_bundle, chunk=1, n_voices=4, steps=2, scripted=True)
    allocator = VoiceAllocator(4)
    frames = []
    for block in range(10):
        if block == 1:
            allocator.note_on(60, 100, 100)
        if block == 6:
            allocator.note_off(60, 10)
        frames.append(allocator.render(1, HOP))
    silent = [np.zeros((0, HOP), np.float32)] * 10
    for pipeline in (eager, scripted):
        pipeline.set_timbre_vector(VECTOR)
    close(scripted.stream(silent, frames), eager.stream(silent, frames))
    roll = np.zeros((2, 128, 6), np.float32)
    roll[0, 64, 1:5], roll[1, 64, 1] = 0.8, 0.8
    close(scripted.transfer_stream(roll), eager.transfer_stream(roll))


def test_int8_is_close_to_fp32_and_shares_the_codec_weights(audio_bundle):
    fp32 = AudioToAudioPipeline(audio_bundle, chunk=1, steps=2)
    int8 = AudioToAudioPipeline(audio_bundle, chunk=1, steps=2, int8=True)
    x = signal(HOP * 8, 2)
    expected, got = fp32.transfer_stream(x), int8.transfer_stream(x)
    error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert 0 < error < 0.1, error
    for engine in (fp32.engine, int8.engine):  # the live-timbre codec holds no weights of its own
        assert weight_bytes(engine) == weight_bytes(engine.codec) + weight_bytes(engine.model) + weight_bytes(
            engine.timbre_map
        )
    assert weight_bytes(int8.engine) < 0.6 * weight_bytes(fp32.engine)


def test_quantize_engine_restarts_a_running_stream(audio_bundle):
    engine = TransferEngine(audio_bundle)
    engine.start(2)
    quantize_engine(engine)
    assert engine.is_streaming() and engine.batch == 2
    with torch.no_grad():
        z = engine.codec.encode(torch.zeros(2, 1, HOP))
    assert z.shape == (2, audio_bundle.latent_dim, 1)


def test_caches_follow_the_steps_in_use(audio_bundle):
    pipeline = AudioToAudioPipeline(audio_bundle, chunk=1, steps=3)
    denoiser = pipeline.engine.model.denoiser
    attention = denoiser.blocks[0].attn
    pipeline.reset()
    assert attention.k_cache.numel() == 0 and denoiser.cond_cache.numel() == 0
    pipeline.process(signal(HOP, 3)[None])
    assert attention.k_cache.size(0) == 3 and denoiser.cond_cache.size(0) == 3
    assert attention.k_cache.size(1) == 3  # the guidance batch of one stream
    filled = attention.k_cache.clone()
    denoiser.reserve_steps(3, 5)  # growing keeps what the first slots hold
    assert attention.k_cache.size(0) == 5 and torch.equal(attention.k_cache[:3], filled)
    assert int(attention.cache_len[3]) == 0
    with pytest.raises(ValueError, match="max_steps"):
        denoiser.reserve_steps(3, denoiser.max_steps + 1)


def test_live_loader_scripts_by_default_and_cli_flags_reach_the_pipeline(audio_bundle, tmp_path):
    folder = release_bundle(audio_bundle, tmp_path / "tiny-audio")
    threads = torch.get_num_threads()
    try:
        live = load_pipeline(str(folder), "audio", block_frames=1, int8=True)
        plain = load_pipeline(str(folder), "audio", block_frames=1, scripted=False)
    finally:
        torch.set_num_threads(threads)
    assert live.scripted and live.int8 and not plain.scripted and not plain.int8
    structure, timbre = tmp_path / "s.wav", tmp_path / "t.wav"
    save_audio(structure, signal(HOP * 6, 4)[None], 22050)
    save_audio(timbre, signal(HOP * 6, 5)[None], 22050)
    outputs = {}
    for name, flags in (("plain", []), ("fast", ["--script"]), ("int8", ["--int8", "--script"])):
        out = tmp_path / f"{name}.wav"
        command = ["transfer", "--timbre", str(timbre), "--structure", str(structure), "--out", str(out)]
        assert main([*command, "--model", str(folder), "--steps", "2", *flags]) == 0
        outputs[name] = load_audio(out, 22050)[0]
    close(outputs["fast"], outputs["plain"])
    error = np.linalg.norm(outputs["int8"] - outputs["plain"]) / np.linalg.norm(outputs["plain"])
    assert 0 < error < 0.1
