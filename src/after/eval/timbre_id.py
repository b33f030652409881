"""Timbre identification and leakage probes.

- :class:`TimbreIdClassifier`: recognises which program (or any label) played a clip. Every clip
  is cut into short windows of fixed timbre descriptors (:func:`after.eval.timbre_features.window_features`);
  a nearest-neighbour classifier in the discriminant space of the training labels
  (:class:`after.eval.discriminant.DiscriminantNeighbours`) votes on every window, and the clip
  goes to the label (or the group of labels, e.g. the instrument family of a program) with the
  highest mean log-probability over its windows. Trained on separate renders of the programs, it
  scores an output by whether it is recognised as the timbre reference's program or family.
- :class:`LogisticRegression`: multinomial logistic regression with L2 penalty on standardised
  features, fitted with L-BFGS (scipy), deterministic.
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
from after.eval.discriminant import DiscriminantNeighbours, index_labels
from after.eval.discriminant import check_features as _check_features
from after.eval.timbre_features import window_features


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
        self.classes_, y = index_labels(labels, x.shape[0])
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


class TimbreIdClassifier:
    """Recognises which label (e.g. General MIDI program) played a clip, window by window.

    Args:
        neighbours, shrinkage: of the :class:`~after.eval.discriminant.DiscriminantNeighbours`
            voting on every window.
        window_s, hop_s: window length and hop in seconds (see
            :func:`~after.eval.timbre_features.window_features`).
    """

    def __init__(
        self, neighbours: int = 5, shrinkage: float = 0.05, window_s: float = 0.5, hop_s: float = 0.25
    ) -> None:
        self.model = DiscriminantNeighbours(neighbours=neighbours, shrinkage=shrinkage)
        self.window_s = float(window_s)
        self.hop_s = float(hop_s)
        self.groups_: list[Hashable] = []
        self._membership: np.ndarray | None = None  # [labels, groups] 0/1

    def _windows(self, clip: np.ndarray, sample_rate: int) -> np.ndarray:
        return window_features(clip, sample_rate, self.window_s, self.hop_s)

    def fit(
        self,
        clips: Sequence[np.ndarray],
        labels: Sequence[Hashable],
        sample_rate: int,
        groups: Sequence[Hashable] | None = None,
    ) -> TimbreIdClassifier:
        """Train on audio ``clips`` (each ``[T]`` at ``sample_rate``) and their labels.

        ``groups`` (one per clip, optional) are what :meth:`predict` returns: the discriminant
        space separates the fine ``labels`` (programs, say) and a clip's score for a group (its
        family) is the summed probability of the group's labels. Each label must lie in one group.
        """
        labels = list(labels)
        groups = labels if groups is None else list(groups)
        if not (len(clips) == len(labels) == len(groups)):
            raise BadInputError(f"{len(clips)} clips, {len(labels)} labels and {len(groups)} groups")
        group_of: dict[Hashable, Hashable] = {}
        for label, group in zip(labels, groups):
            if group_of.setdefault(label, group) != group:
                raise BadInputError(f"label {label!r} is in two groups: {group_of[label]!r} and {group!r}")
        windows = [self._windows(clip, sample_rate) for clip in clips]  # each [W_i, F]
        rows = np.concatenate(windows)  # [sum W_i, F]
        row_labels = [label for label, w in zip(labels, windows) for _ in range(w.shape[0])]
        self.model.fit(rows, row_labels)
        self.groups_ = sorted(set(groups), key=repr)
        column = {g: j for j, g in enumerate(self.groups_)}
        self._membership = np.zeros((len(self.model.classes_), len(self.groups_)))
        for i, label in enumerate(self.model.classes_):
            self._membership[i, column[group_of[label]]] = 1.0
        return self

    def scores(self, clip: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mean over the clip's windows of the log-probability of every group: ``[groups]``
        (columns in the order of ``groups_``)."""
        if self._membership is None:
            raise BadInputError("classifier is not fitted yet: call fit() first")
        probabilities = self.model.predict_proba(self._windows(clip, sample_rate))  # [W, labels]
        return np.log(probabilities @ self._membership).mean(axis=0)  # [W, groups] -> [groups]

    def predict(self, clips: Sequence[np.ndarray], sample_rate: int) -> list[Hashable]:
        """Predicted group (the label itself when fitted without groups) of each clip."""
        return [self.groups_[int(np.argmax(self.scores(clip, sample_rate)))] for clip in clips]

    def accuracy(self, clips: Sequence[np.ndarray], labels: Sequence[Hashable], sample_rate: int) -> float:
        """Fraction of clips whose predicted group equals the given one."""
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
