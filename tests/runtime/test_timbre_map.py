"""The 2-D timbre map: fitted maps stay in the box, separate timbres and decode back; the picture."""

import numpy as np
import pytest
import torch

from after.errors import BadInputError
from after.runtime.timbre_map import TimbreMap, draw_timbre_map, fit_timbre_map


def clustered(n_per: int = 40, zt: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-3, 3, size=(4, zt))
    vectors = np.concatenate([c + 0.05 * rng.standard_normal((n_per, zt)) for c in centres]).astype(
        np.float32
    )
    labels = [name for name in ("piano", "strings", "brass", "organ") for _ in range(n_per)]
    return vectors, labels, centres


def test_fitted_map_stays_in_the_box_separates_and_decodes_back():
    vectors, labels, _ = clustered()
    untrained = fit_timbre_map(vectors, labels, steps=0, seed=0)
    model = fit_timbre_map(vectors, labels, steps=1500, seed=0)
    data = torch.from_numpy(vectors)
    with torch.no_grad():
        xy = model.to_map(data)
        error = torch.mean((model.from_map(xy) - data) ** 2).item()
        error_before = torch.mean((untrained.from_map(untrained.to_map(data)) - data) ** 2).item()
    assert error < 0.1 * error_before and error < 0.1 * vectors.var()
    assert xy.abs().max().item() < 1.1  # the box penalty holds the map inside [-1, 1]^2
    means = torch.stack([xy[i * 40 : (i + 1) * 40].mean(0) for i in range(4)])
    spread = max(xy[i * 40 : (i + 1) * 40].std(0).max().item() for i in range(4))
    gaps = torch.cdist(means, means) + torch.eye(4) * 10
    assert gaps.min().item() > 3 * spread  # the four timbres land in distinct places
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted.to_map(data), xy)
    torch.testing.assert_close(scripted.from_map(xy), model.from_map(xy))


def test_fit_is_deterministic_for_a_seed():
    vectors, labels, _ = clustered(10)
    a = fit_timbre_map(vectors, labels, steps=50, seed=3)
    b = fit_timbre_map(vectors, labels, steps=50, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_bad_vectors_are_refused():
    with pytest.raises(BadInputError, match="expected \\[N >= 1, ZT\\]"):
        fit_timbre_map(np.zeros((0, 6)))
    with pytest.raises(BadInputError, match="NaN"):
        fit_timbre_map(np.full((3, 6), np.nan))
    with pytest.raises(BadInputError, match="2 labels for 3"):
        fit_timbre_map(np.zeros((3, 6)), ["a", "b"])


def test_picture_is_a_png_with_one_colour_per_label(tmp_path):
    vectors, labels, _ = clustered(10)
    model = fit_timbre_map(vectors, labels, steps=50)
    path = draw_timbre_map(model, vectors, labels, tmp_path / "sub" / "map.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    single = draw_timbre_map(TimbreMap(6), vectors[:1], None, tmp_path / "one.png")
    assert single.read_bytes()[:4] == b"\x89PNG"
