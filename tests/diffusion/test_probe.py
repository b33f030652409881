"""Leakage probe: chance on structure codes that ignore the label, high when they encode it."""

import torch

from after.diffusion.probe import linear_probe, pool_structure

torch.set_num_threads(1)


def _labels(n: int, classes: int, seed: int) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def test_random_structure_scores_near_chance():
    labels = _labels(240, 4, 0)
    s = torch.randn(240, 12, 16, generator=torch.Generator().manual_seed(1))  # [N, ZS, L]
    result = linear_probe(pool_structure(s), labels)
    assert result is not None and result.n_classes == 4 and result.n_examples == 240
    assert abs(result.accuracy - result.chance) < 0.12
    assert result.chance < 0.4


def test_structure_that_encodes_the_label_scores_high():
    labels = _labels(240, 4, 2)
    generator = torch.Generator().manual_seed(3)
    directions = torch.randn(4, 12, generator=generator)
    s = torch.randn(240, 12, 16, generator=generator) + 1.5 * directions[labels][:, :, None]  # [N, ZS, L]
    result = linear_probe(pool_structure(s), labels)
    assert result.accuracy > 0.9 and result.above_chance > 0.5


def test_label_in_the_spread_over_time_is_found_by_the_pooled_std():
    labels = _labels(200, 2, 4)
    scale = 0.5 + labels.float()  # class 1 varies three times more over time than class 0
    s = torch.randn(200, 6, 32, generator=torch.Generator().manual_seed(5)) * scale[:, None, None]
    assert linear_probe(pool_structure(s), labels).accuracy > 0.9


def test_unknown_labels_are_ignored_and_one_class_gives_no_result():
    features = torch.randn(20, 4)
    assert linear_probe(features, torch.zeros(20, dtype=torch.long)) is None
    labels = torch.tensor([0, 1] * 10)
    labels[:6] = -1
    result = linear_probe(features, labels)
    assert result is not None and result.n_examples == 14
