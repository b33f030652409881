"""Windowed timbre descriptors: shape, gain invariance, silence gating, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from after.errors import BadInputError
from after.eval.timbre_features import N_DESCRIPTORS, window_features

RATE = 16_000


def _notes(rate: int = RATE, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * 330 * t) + 0.3 * np.sin(2 * np.pi * 990 * t)
    return (tone * np.exp(-(t % 0.5) / 0.2)).astype(np.float32)  # a note every 0.5 s


def test_shape_and_gain_invariance():
    audio = _notes()
    features = window_features(audio, RATE)
    # 3 s at hop 256: 188 frames; windows of 31 frames (0.5 s) every 16 frames (0.25 s)
    assert features.shape == (10, 2 * N_DESCRIPTORS + 1)
    assert np.isfinite(features).all()
    np.testing.assert_allclose(window_features(0.05 * audio, RATE), features, rtol=1e-3, atol=1e-3)
    # other input rates are resampled to the same 16 kHz analysis
    resampled = window_features(np.repeat(audio, 2), 2 * RATE)
    assert resampled.shape == features.shape


def test_silence_is_left_out():
    audio = _notes(seconds=2.0)
    padded = np.concatenate([audio, np.zeros(3 * RATE, dtype=np.float32)])
    features, with_silence = window_features(audio, RATE), window_features(padded, RATE)
    # of the 18 windows of the padded clip only those reaching into the notes are kept, and the
    # ones over the notes alone are unchanged
    assert features.shape[0] == 6 and with_silence.shape[0] == 8
    np.testing.assert_allclose(with_silence[: features.shape[0] - 1], features[:-1], rtol=1e-3, atol=1e-3)
    assert window_features(np.zeros(RATE, dtype=np.float32), RATE).shape[1] == 2 * N_DESCRIPTORS + 1


def test_refuses_bad_input():
    with pytest.raises(BadInputError, match="empty"):
        window_features(np.zeros(0), RATE)
    with pytest.raises(BadInputError, match="NaN"):
        window_features(np.array([0.0, np.inf, 0.0]), RATE)
    with pytest.raises(BadInputError, match="positive"):
        window_features(_notes(), RATE, window_s=0.0)
