"""Metric properties on real FluidSynth renders (FluidR3_GM, 16 kHz)."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
from eval_renders import SAMPLE_RATE, melody

from after.data import transcription
from after.errors import AfterError, BadInputError
from after.eval import metrics
from after.eval.features import mel_filterbank, mel_spectrogram, mfcc
from after.eval.metrics import bootstrap_ci, fd_mfcc, lsd, mfcc_distance, note_f1, onset_f1

FLUTE, TRUMPET, PIANO = 73, 56, 0

needs_transcription = pytest.mark.skipif(
    not transcription.transcription_available(), reason="basic-pitch / onnxruntime not installed"
)


def _noise_like(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(audio.size)
    noise *= np.sqrt(np.mean(audio**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)
    return (audio + noise).astype(np.float32)


def test_mel_band_of_a_sine_is_the_band_centred_on_its_frequency():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for hz in (220.0, 1000.0, 3500.0):
        spectrum = mel_spectrogram(np.sin(2 * np.pi * hz * t), SAMPLE_RATE).mean(axis=1)  # [128]
        bank = mel_filterbank(SAMPLE_RATE, 2048, 128)
        centres = np.linspace(0, SAMPLE_RATE / 2, 1025)[bank.argmax(axis=1)]
        assert abs(centres[spectrum.argmax()] - hz) < 0.06 * hz + 16


def test_mfcc_ignores_gain_only_in_c0():
    x = np.random.default_rng(0).standard_normal(SAMPLE_RATE)
    loud, quiet = mfcc(x, SAMPLE_RATE), mfcc(0.1 * x, SAMPLE_RATE)
    assert not np.allclose(loud[0], quiet[0])
    np.testing.assert_allclose(loud[1:], quiet[1:], atol=1e-6)


def test_lsd_is_zero_on_identity_and_grows_with_noise(render):
    audio = render(melody(1), PIANO)
    assert lsd(audio, audio, SAMPLE_RATE) == pytest.approx(0.0, abs=1e-9)
    assert lsd(audio, 0.3 * audio, SAMPLE_RATE) == pytest.approx(0.0, abs=1e-4)  # loudness-invariant
    distances = [lsd(_noise_like(audio, snr), audio, SAMPLE_RATE) for snr in (40.0, 20.0, 5.0)]
    assert 0.0 < distances[0] < distances[1] < distances[2]


def test_lsd_refuses_bad_audio():
    with pytest.raises(BadInputError, match="NaN"):
        lsd(np.full(1000, np.nan), np.zeros(1000), SAMPLE_RATE)
    with pytest.raises(BadInputError, match="empty"):
        lsd(np.zeros(0), np.zeros(1000), SAMPLE_RATE)


def test_mfcc_distance_separates_timbre_from_melody(render):
    first, second = melody(2), melody(3)
    flute_1, flute_2 = render(first, FLUTE), render(second, FLUTE)
    trumpet_1, trumpet_2 = render(first, TRUMPET), render(second, TRUMPET)
    assert mfcc_distance(flute_1, flute_1, SAMPLE_RATE) == pytest.approx(0.0, abs=1e-12)
    assert mfcc_distance(flute_1, flute_2, SAMPLE_RATE) < mfcc_distance(flute_1, trumpet_1, SAMPLE_RATE)
    assert mfcc_distance(trumpet_1, trumpet_2, SAMPLE_RATE) < mfcc_distance(trumpet_1, flute_1, SAMPLE_RATE)


def test_fd_mfcc_is_small_within_an_instrument_and_large_across(render):
    flutes = [render(melody(s), FLUTE) for s in (4, 5, 6, 7)]
    trumpets = [render(melody(s), TRUMPET) for s in (4, 5)]
    assert fd_mfcc(flutes, flutes, SAMPLE_RATE) == pytest.approx(0.0, abs=1e-6)
    within = fd_mfcc(flutes[:2], flutes[2:], SAMPLE_RATE)
    across = fd_mfcc(flutes[:2], trumpets, SAMPLE_RATE)
    assert within < across / 3
    with pytest.raises(BadInputError, match="set_b is empty"):
        fd_mfcc(flutes, [], SAMPLE_RATE)


def test_note_f1_on_notes_themselves():
    notes = melody(8)
    assert note_f1(notes, notes) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    shifted = [dataclasses.replace(n, start=n.start + 0.03, end=n.end + 0.03) for n in notes]
    assert note_f1(shifted, notes)["f1"] == 1.0  # within the 50 ms onset window
    late = [dataclasses.replace(n, start=n.start + 0.08, end=n.end + 0.08) for n in notes]
    assert note_f1(late, notes)["f1"] == 0.0
    transposed = [dataclasses.replace(n, pitch=n.pitch + 1) for n in notes]
    assert note_f1(transposed, notes)["f1"] == 0.0
    assert onset_f1(transposed, notes)["f1"] == 1.0  # onsets ignore pitch
    half = notes[::2]
    scores = note_f1(half, notes)
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(0.5)
    assert note_f1([], notes)["f1"] == 0.0 and note_f1([], [])["f1"] == 1.0


@needs_transcription
def test_note_f1_of_a_clean_render_is_high_and_near_zero_against_unrelated_midi(render):
    notes = melody(9)
    heard = transcription.transcribe(render(notes, PIANO), SAMPLE_RATE)
    assert note_f1(heard, notes)["f1"] >= 0.8
    assert onset_f1(heard, notes)["f1"] >= 0.8
    unrelated = [dataclasses.replace(n, pitch=n.pitch - 20) for n in melody(10, step_s=0.37)]
    assert note_f1(heard, unrelated)["f1"] <= 0.1


def test_transcription_missing_gives_install_hint(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "basic_pitch" else real_find_spec(name, *a),
    )
    transcription._session.cache_clear()
    try:
        assert not transcription.transcription_available()
        with pytest.raises(AfterError, match=r"--no-deps basic-pitch==0\.4\.0"):
            transcription.transcribe(np.zeros(SAMPLE_RATE), SAMPLE_RATE)
    finally:
        transcription._session.cache_clear()


def test_pitch_jaccard_refuses_without_essentia():
    if metrics.essentia_available():
        pytest.skip("Essentia is installed")
    with pytest.raises(AfterError, match="Essentia"):
        metrics.pitch_jaccard(np.zeros(8000), np.zeros(8000), 8000)


def test_bootstrap_ci_contains_mean_is_seeded_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 25), rng.normal(1.0, 1.0, 400)
    mean, low, high = bootstrap_ci(small, n=1000, seed=3)
    assert low < mean < high and mean == pytest.approx(small.mean())
    assert bootstrap_ci(small, n=1000, seed=3) == (mean, low, high)
    _, low_l, high_l = bootstrap_ci(large, n=1000, seed=3)
    assert high_l - low_l < 0.5 * (high - low)
    _, low_90, high_90 = bootstrap_ci(small, n=1000, alpha=0.1, seed=3)
    assert low <= low_90 and high_90 <= high
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(BadInputError):
        bootstrap_ci([float("nan")])
