"""Timbre identification and leakage probes: linear classifiers on fixed features.

- :class:`LogisticRegression`: multinomial logistic regression with L2 penalty on standardised
  features, fitted with L-BFGS (scipy), deterministic.
- :func:`mfcc_statistics`: per-clip feature vector, mean and standard deviation over frames of
  MFCCs 1..19 plus their deltas' standard deviation (57 numbers).
- :class:`TimbreIdClassifier`: predicts the General MIDI program (or any label) of a clip from
  :func:`mfcc_statistics`; trained on separate renders of the programs, it scores an output by
  whether it is recognised as the timbre reference's program.
- :func:`leakage_probe`: how well a linear probe predicts a label (e.g. the program) from features
  (e.g. the time-pooled structure code ``s``); accuracy near chance means no leak.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.special

from after.errors import BadInputError
from after.eval.features import EVAL_SAMPLE_RATE, mfcc, rms_normalise, to_eval_rate

STAT_MFCCS = 20  # c0..c19 computed, c0 dropped


class LogisticRegression:
    """Multinomial logistic regression ``softmax(x W + b)`` on standardised features.

    Args:
        l2: penalty ``l2 / 2 * |W|^2`` added to the mean cross-entropy (bias not penalised).
        max_iter: L-BFGS iterations.
    """

    def __init__(self, l2: float = 1e-3, max_iter: int = 500) -> None:
        self.l2 = float(l2)
        self.max_iter = int(max_iter)
        self.classes_: list[Hashable] = []
        self._mean = self._scale = self._weights = self._bias = None

    def fit(self, features: np.ndarray, labels: Sequence[Hashable]) -> LogisticRegression:
        """Fit on ``features [N, F]`` and ``N`` labels (any hashable values, at least 2 distinct)."""
        x = _check_features(features)
        if len(labels) != x.shape[0]:
            raise BadInputError(f"{x.shape[0]} feature rows but {len(labels)} labels")
        self.classes_ = sorted(set(labels), key=repr)
        if len(self.classes_) < 2:
            raise BadInputError(f"need at least 2 distinct labels to fit a classifier, got {self.classes_}")
        index = {c: i for i, c in enumerate(self.classes_)}
        y = np.array([index[label] for label in labels])
        self._mean = x.mean(axis=0)
        self._scale = np.where(x.std(axis=0) > 1e-12, x.std(axis=0), 1.0)
        z = (x - self._mean) / self._scale
        n, f = z.shape
        k = len(self.classes_)
        onehot = np.eye(k)[y]  # [N, K]

        def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            weights = theta[: f * k].reshape(f, k)  # [F*K] -> [F, K]
            bias = theta[f * k :]
            logits = z @ weights + bias  # [N, K]
            log_probs = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
            loss = -np.sum(onehot * log_probs) / n + 0.5 * self.l2 * np.sum(weights**2)
            error = (np.exp(log_probs) - onehot) / n  # [N, K]
            grad_w = z.T @ error + self.l2 * weights
            return float(loss), np.concatenate([grad_w.ravel(), error.sum(axis=0)])

        result = scipy.optimize.minimize(
            loss_and_grad,
            np.zeros(f * k + k),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter},
        )
        self._weights = result.x[: f * k].reshape(f, k)  # [F*K] -> [F, K]
        self._bias = result.x[f * k :]
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, K]`` (columns in the order of ``classes_``)."""
        if self._weights is None:
            raise BadInputError("classifier is not fitted yet: call fit() first")
        z = (_check_features(features) - self._mean) / self._scale
        return scipy.special.softmax(z @ self._weights + self._bias, axis=1)

    def predict(self, features: np.ndarray) -> list[Hashable]:
        """Most likely label of each row of ``features [N, F]``."""
        return [self.classes_[i] for i in self.predict_proba(features).argmax(axis=1)]

    def score(self, features: np.ndarray, labels: Sequence[Hashable]) -> float:
        """Accuracy (0..1) on ``features [N, F]`` against ``labels``."""
        predicted = self.predict(features)
        return float(np.mean([p == t for p, t in zip(predicted, labels)]))


def _check_features(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise BadInputError(f"features of shape {x.shape}: expected a non-empty [N, F] array")
    if not np.isfinite(x).all():
        raise BadInputError("features contain NaN or infinite values")
    return x


def mfcc_statistics(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Feature vector ``[57]`` of one clip: mean and std over frames of MFCCs 1..19 and std of
    their first difference (16 kHz, hop 500, loudness-normalised)."""
    coefficients = mfcc(
        rms_normalise(to_eval_rate(audio, sample_rate)), EVAL_SAMPLE_RATE, STAT_MFCCS, hop=500
    )
    coefficients = coefficients[1:]  # drop c0: [19, frames]
    delta = np.diff(coefficients, axis=1) if coefficients.shape[1] > 1 else np.zeros_like(coefficients)
    return np.concatenate([coefficients.mean(axis=1), coefficients.std(axis=1), delta.std(axis=1)])


class TimbreIdClassifier:
    """Recognises which program (label) played a clip, from :func:`mfcc_statistics`."""

    def __init__(self, l2: float = 1e-3) -> None:
        self.model = LogisticRegression(l2=l2)

    def fit(
        self, clips: Sequence[np.ndarray], labels: Sequence[Hashable], sample_rate: int
    ) -> TimbreIdClassifier:
        """Train on audio ``clips`` (each ``[T]`` at ``sample_rate``) and their labels."""
        self.model.fit(np.stack([mfcc_statistics(c, sample_rate) for c in clips]), labels)
        return self

    def predict(self, clips: Sequence[np.ndarray], sample_rate: int) -> list[Hashable]:
        """Predicted label of each clip."""
        return self.model.predict(np.stack([mfcc_statistics(c, sample_rate) for c in clips]))

    def accuracy(self, clips: Sequence[np.ndarray], labels: Sequence[Hashable], sample_rate: int) -> float:
        """Fraction of clips whose predicted label equals the given one."""
        predicted = self.predict(clips, sample_rate)
        return float(np.mean([p == t for p, t in zip(predicted, labels)]))


@dataclass(frozen=True)
class ProbeResult:
    """Held-out accuracy of a linear probe next to the majority-class rate of the same split."""

    accuracy: float
    chance: float
    n_classes: int
    n_train: int
    n_test: int

    @property
    def above_chance(self) -> float:
        """``accuracy - chance``: near 0 means the features do not reveal the label."""
        return self.accuracy - self.chance


def pool_over_time(codes: np.ndarray) -> np.ndarray:
    """Mean and std over time of codes ``[N, C, L]``: ``[N, 2C]`` (probe features)."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 3:
        raise BadInputError(f"codes of shape {codes.shape}: expected [N, C, L]")
    return np.concatenate([codes.mean(axis=2), codes.std(axis=2)], axis=1)


def leakage_probe(
    features: np.ndarray,
    labels: Sequence[Hashable],
    test_fraction: float = 0.3,
    seed: int = 0,
    l2: float = 1e-3,
) -> ProbeResult:
    """Fit a linear probe predicting ``labels`` from ``features [N, F]`` on a stratified random
    split and report held-out accuracy against chance (the majority-class rate on the test part).

    For a structure code ``s [N, ZS, L]`` pass ``pool_over_time(s)``.
    """
    x = _check_features(features)
    labels = list(labels)
    if len(labels) != x.shape[0]:
        raise BadInputError(f"{x.shape[0]} feature rows but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in sorted(set(labels), key=repr):
        members = rng.permutation([i for i, lab in enumerate(labels) if lab == label])
        n_test = round(test_fraction * len(members)) if len(members) > 1 else 0
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    if not test:
        raise BadInputError("leakage_probe: the split left no test examples; give more rows per label")
    probe = LogisticRegression(l2=l2).fit(x[train], [labels[i] for i in train])
    test_labels = [labels[i] for i in test]
    accuracy = probe.score(x[test], test_labels)
    counts = np.unique(np.array([repr(lab) for lab in test_labels]), return_counts=True)[1]
    return ProbeResult(
        accuracy=accuracy,
        chance=float(counts.max() / len(test)),
        n_classes=len(set(labels)),
        n_train=len(train),
        n_test=len(test),
    )
