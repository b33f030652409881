"""Timbre-ID classifier and leakage probe on real FluidSynth renders."""

from __future__ import annotations

import numpy as np
import pytest
from eval_renders import SAMPLE_RATE, melody

from after.errors import BadInputError
from after.eval.timbre_id import (
    LogisticRegression,
    TimbreIdClassifier,
    leakage_probe,
    mfcc_statistics,
    pool_over_time,
)

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


def test_mfcc_statistics_are_loudness_invariant(render):
    audio = render(melody(30), 0)
    np.testing.assert_allclose(
        mfcc_statistics(audio, SAMPLE_RATE), mfcc_statistics(0.2 * audio, SAMPLE_RATE), atol=1e-3
    )


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
