"""Timbre-ID classifier (real FluidSynth renders and synthetic tones) and the leakage probe."""

from __future__ import annotations

import numpy as np
import pytest
from eval_renders import SAMPLE_RATE, melody

from after.errors import BadInputError
from after.eval.timbre_id import LogisticRegression, TimbreIdClassifier, leakage_probe, pool_over_time

PROGRAMS = (0, 24, 40, 56, 73, 81)  # piano, nylon guitar, violin, trumpet, flute, saw lead


def _clips(render, seeds):
    clips, labels = [], []
    for program in PROGRAMS:
        for seed in seeds:
            clips.append(render(melody(seed, n_notes=8, low=60, high=76), program))
            labels.append(program)
    return clips, labels


def test_timbre_id_recognises_programs_on_unseen_melodies(render):
    train_clips, train_labels = _clips(render, seeds=(11, 12, 13, 14))
    test_clips, test_labels = _clips(render, seeds=(21, 22))
    classifier = TimbreIdClassifier().fit(train_clips, train_labels, SAMPLE_RATE)
    accuracy = classifier.accuracy(test_clips, test_labels, SAMPLE_RATE)
    chance = 1.0 / len(PROGRAMS)
    assert accuracy >= 0.8 > chance + 0.5
    assert classifier.accuracy(train_clips, train_labels, SAMPLE_RATE) == 1.0


def _tone(kind: str, seed: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Two seconds of notes at random pitches: 'sine', 'square' (odd harmonics) or 'pluck'
    (sawtooth-like harmonics with a fast decay); silence between notes."""
    rng = np.random.default_rng(seed)
    out = np.zeros(2 * rate)
    for start in np.arange(0.0, 1.8, 0.4):
        f0 = 220.0 * 2 ** (rng.integers(0, 13) / 12)
        t = np.arange(int(0.3 * rate)) / rate
        if kind == "sine":
            note = np.sin(2 * np.pi * f0 * t)
        elif kind == "square":
            note = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 16, 2))
        else:
            note = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 16)) * np.exp(-t / 0.05)
        begin = int(start * rate)
        out[begin : begin + note.size] += note
    return out.astype(np.float32)


def test_timbre_id_separates_synthetic_timbres_and_groups_them():
    kinds = ("sine", "square", "pluck")
    train = [_tone(k, seed) for k in kinds for seed in range(3)]
    labels = [k for k in kinds for _ in range(3)]
    test = [_tone(k, seed) for k in kinds for seed in (10, 11)]
    truth = [k for k in kinds for _ in range(2)]
    classifier = TimbreIdClassifier().fit(train, labels, SAMPLE_RATE)
    assert classifier.predict(test, SAMPLE_RATE) == truth
    again = TimbreIdClassifier().fit(train, labels, SAMPLE_RATE)
    np.testing.assert_array_equal(again.scores(test[0], SAMPLE_RATE), classifier.scores(test[0], SAMPLE_RATE))
    # fine labels grouped: sine and square are "steady", pluck is "plucked"
    group = {"sine": "steady", "square": "steady", "pluck": "plucked"}
    grouped = TimbreIdClassifier().fit(train, labels, SAMPLE_RATE, groups=[group[k] for k in labels])
    assert grouped.groups_ == ["plucked", "steady"]
    assert grouped.predict(test, SAMPLE_RATE) == [group[k] for k in truth]
    assert grouped.accuracy(test, [group[k] for k in truth], SAMPLE_RATE) == 1.0


def test_timbre_id_refuses_bad_input():
    clips = [_tone("sine", 0), _tone("square", 0)]
    with pytest.raises(BadInputError, match="not fitted"):
        TimbreIdClassifier().predict(clips, SAMPLE_RATE)
    with pytest.raises(BadInputError, match="2 clips, 1 labels"):
        TimbreIdClassifier().fit(clips, ["a"], SAMPLE_RATE)
    with pytest.raises(BadInputError, match="two groups"):
        TimbreIdClassifier().fit([*clips, clips[0]], ["a", "b", "a"], SAMPLE_RATE, groups=["x", "y", "y"])
    with pytest.raises(BadInputError, match="2 distinct labels"):
        TimbreIdClassifier().fit(clips, ["a", "a"], SAMPLE_RATE)
    fitted = TimbreIdClassifier().fit(clips, ["a", "b"], SAMPLE_RATE)
    with pytest.raises(BadInputError, match="NaN"):
        fitted.predict([np.full(SAMPLE_RATE, np.nan, dtype=np.float32)], SAMPLE_RATE)
    with pytest.raises(BadInputError, match="empty"):
        fitted.predict([np.zeros(0, dtype=np.float32)], SAMPLE_RATE)
    assert fitted.predict([np.zeros(SAMPLE_RATE, dtype=np.float32)], SAMPLE_RATE)[0] in ("a", "b")  # silence


def test_leakage_probe_is_at_chance_without_information_and_high_with_it():
    rng = np.random.default_rng(0)
    labels = [int(i) for i in rng.integers(0, 4, size=400)]
    noise = rng.standard_normal((400, 16))
    blind = leakage_probe(noise, labels, seed=1)
    assert blind.n_classes == 4 and blind.n_train + blind.n_test == 400
    assert abs(blind.above_chance) < 0.12
    leaky = noise.copy()
    leaky[:, 0] += 4.0 * np.array(labels)  # one direction carries the label
    seen = leakage_probe(leaky, labels, seed=1)
    assert seen.accuracy > 0.9 and seen.above_chance > 0.5
    assert leakage_probe(leaky, labels, seed=1) == seen  # deterministic


def test_leakage_probe_on_time_pooled_codes():
    rng = np.random.default_rng(2)
    labels = [int(i) for i in rng.integers(0, 3, size=150)]
    codes = rng.standard_normal((150, 4, 20))  # [N, ZS, L]
    assert pool_over_time(codes).shape == (150, 8)
    assert leakage_probe(pool_over_time(codes), labels).above_chance < 0.15
    codes[:, 2, :] *= 1.0 + np.array(labels)[:, None]  # label changes the spread of one channel
    assert leakage_probe(pool_over_time(codes), labels).accuracy > 0.75


def test_classifier_refuses_bad_input():
    with pytest.raises(BadInputError, match="2 distinct labels"):
        LogisticRegression().fit(np.zeros((3, 2)), [1, 1, 1])
    with pytest.raises(BadInputError, match="labels"):
        LogisticRegression().fit(np.zeros((3, 2)), [1, 2])
    with pytest.raises(BadInputError, match="not fitted"):
        LogisticRegression().predict(np.zeros((1, 2)))
    with pytest.raises(BadInputError, match=r"\[N, C, L\]"):
        pool_over_time(np.zeros((2, 3)))
