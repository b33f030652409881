"""Nearest neighbours in the linear discriminant space: separation, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from after.errors import BadInputError
from after.eval.discriminant import DiscriminantNeighbours


def _blobs(seed: int, n: int = 40):
    """Three classes that differ along 2 of 12 dimensions; the other 10 are loud noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(["a", "b", "c"], n)
    x = rng.standard_normal((3 * n, 12)) * np.r_[0.3, 0.3, np.full(10, 5.0)]
    centres = {"a": (0.0, 0.0), "b": (2.0, 0.0), "c": (0.0, 2.0)}
    x[:, :2] += np.array([centres[label] for label in labels])
    return x, list(labels)


def test_separates_classes_hidden_among_noisy_dimensions():
    x, y = _blobs(0)
    test_x, test_y = _blobs(1)
    model = DiscriminantNeighbours(neighbours=5).fit(x, y)
    assert model.classes_ == ["a", "b", "c"]
    accuracy = np.mean([p == t for p, t in zip(model.predict(test_x), test_y)])
    assert accuracy > 0.9
    # plain nearest neighbours on the raw features are lost in the noisy dimensions
    raw = np.argmin(((test_x[:, None] - x[None]) ** 2).sum(-1), axis=1)
    assert np.mean([y[i] == t for i, t in zip(raw, test_y)]) < 0.7


def test_votes_are_smoothed_probabilities_and_deterministic():
    x, y = _blobs(2)
    first = DiscriminantNeighbours(neighbours=3, smoothing=0.3).fit(x, y).predict_proba(x[:10])
    again = DiscriminantNeighbours(neighbours=3, smoothing=0.3).fit(x, y).predict_proba(x[:10])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    assert (first > 0).all() and first.min() == pytest.approx(0.1 / 3.3)  # 0 of 3 votes
    # a training row is its own nearest neighbour
    assert DiscriminantNeighbours(neighbours=1).fit(x, y).predict(x) == y


def test_refuses_bad_input():
    x, y = _blobs(3, n=5)
    with pytest.raises(BadInputError, match="2 distinct labels"):
        DiscriminantNeighbours().fit(x, ["a"] * len(y))
    with pytest.raises(BadInputError, match="labels"):
        DiscriminantNeighbours().fit(x, y[:-1])
    with pytest.raises(BadInputError, match="not fitted"):
        DiscriminantNeighbours().predict(x)
    with pytest.raises(BadInputError, match="NaN"):
        DiscriminantNeighbours().fit(np.full_like(x, np.nan), y)
    with pytest.raises(BadInputError, match=r"\[N, F\]"):
        DiscriminantNeighbours().fit(x[0], y)
    with pytest.raises(BadInputError, match="columns"):
        DiscriminantNeighbours().fit(x, y).predict(x[:, :3])
    for kwargs in ({"neighbours": 0}, {"shrinkage": 0.0}, {"shrinkage": 1.5}, {"smoothing": 0.0}):
        with pytest.raises(BadInputError):
            DiscriminantNeighbours(**kwargs)
