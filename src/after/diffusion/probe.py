"""Leakage probe: how well a linear classifier predicts the instrument family from the structure code.

The structure ``s [B, ZS, L]`` should carry what is played, not what plays it. The probe pools ``s``
over time (:func:`pool_structure`: mean and standard deviation of every channel), fits a linear
classifier from those features to the family labels and reports its held-out accuracy next to chance
(the share of the most frequent class: what always guessing that class scores). Accuracy near
chance means ``s`` leaks no timbre a linear read-out can find; accuracy near 1 means it leaks a lot.

The classifier is ridge regression onto one-hot labels (closed form, no gradients, deterministic),
scored by k-fold cross-validation over the examples, so it runs inside validation (under
``torch.no_grad``) in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ProbeResult:
    """Held-out accuracy of the probe, chance level, and the counts behind them."""

    accuracy: float
    chance: float
    n_examples: int
    n_classes: int

    @property
    def above_chance(self) -> float:
        """``accuracy - chance`` (0 = no leakage a linear probe can find)."""
        return self.accuracy - self.chance


def pool_structure(s: torch.Tensor) -> torch.Tensor:
    """Time-pooled features of a structure code: ``s [B, ZS, L] -> [B, 2 ZS]`` (mean ‖ std over time)."""
    mean = s.mean(dim=-1)  # [B, ZS]
    std = s.std(dim=-1, unbiased=False) if s.size(-1) > 1 else torch.zeros_like(mean)  # [B, ZS]
    return torch.cat([mean, std], dim=-1)  # [B, 2 ZS]


def _ridge_fit(x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    """Weights ``[F + 1, K]`` of ridge regression from ``x [N, F]`` (bias added) onto ``y [N, K]``."""
    x1 = torch.cat([x, torch.ones(x.size(0), 1, dtype=x.dtype)], dim=1)  # [N, F + 1]
    gram = x1.T @ x1 + ridge * torch.eye(x1.size(1), dtype=x.dtype)
    return torch.linalg.solve(gram, x1.T @ y)


def linear_probe(
    features: torch.Tensor, labels: torch.Tensor, folds: int = 5, ridge: float = 1e-2, seed: int = 0
) -> ProbeResult | None:
    """Cross-validated accuracy of a linear classifier predicting ``labels`` from ``features``.

    Args:
        features: ``[N, F]`` (e.g. :func:`pool_structure` of ``s``).
        labels: ``[N]`` integer classes; negative labels (unknown) are ignored.
        folds: number of cross-validation folds (at most the number of examples).
        ridge: L2 regularisation of the (standardised) features.
        seed: shuffles the examples before cutting folds.

    Returns:
        A :class:`ProbeResult`, or ``None`` when fewer than two classes or four examples are known.
    """
    keep = labels >= 0
    x = features[keep].detach().to(torch.float64).cpu()
    raw = labels[keep].detach().cpu().long()
    classes, y_index = torch.unique(raw, return_inverse=True)
    n, n_classes = x.size(0), classes.numel()
    if n_classes < 2 or n < 4:
        return None
    folds = max(2, min(folds, n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    correct = 0
    for fold in range(folds):
        test = order[fold::folds]
        train_mask = torch.ones(n, dtype=torch.bool)
        train_mask[test] = False
        x_train, y_train = x[train_mask], y_index[train_mask]
        mean, std = x_train.mean(0), x_train.std(0, unbiased=False).clamp_min(1e-8)
        one_hot = torch.nn.functional.one_hot(y_train, n_classes).to(torch.float64)  # [N_train, K]
        weights = _ridge_fit((x_train - mean) / std, one_hot, ridge * x_train.size(0))
        x_test = (x[test] - mean) / std
        x_test = torch.cat([x_test, torch.ones(x_test.size(0), 1, dtype=x.dtype)], dim=1)  # [N_test, F + 1]
        correct += int((x_test @ weights).argmax(dim=1).eq(y_index[test]).sum())
    chance = float(torch.bincount(y_index, minlength=n_classes).max()) / n
    return ProbeResult(accuracy=correct / n, chance=chance, n_examples=n, n_classes=n_classes)
