"""A learned 2-D map of the timbre space, and its picture.

A timbre vector ``c`` has ZT dimensions (6-8): too many for a performer's hands. The map is a tiny
autoencoder, ``encoder: ZT -> 16 -> 16 -> 2`` and ``decoder: 2 -> 16 -> 16 -> ZT`` (GELU), fitted on
timbre vectors (of a training set, or of whatever references are at hand) with the loss

    ``MSE(decoder(encoder(c)), c) + mean(relu(|encoder(c)| - 1))``

whose second term keeps the map inside the box ``[-1, 1]^2`` where the 2-D slider lives. Vectors are
standardised (mean/std stored in the module) before the encoder, and the decoder's output is
de-standardised, so the map works for any scale of ``c``.

:func:`fit_timbre_map` fits it, :func:`draw_timbre_map` draws the encoded vectors coloured by their
label (instrument family) into a PNG (matplotlib, Agg backend), which the Max device shows behind
its 2-D slider. ``TimbreMap.to_map`` / ``from_map`` are TorchScript-compatible.
"""

# No ``from __future__ import annotations``: TorchScript must see the class annotations as types.
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from after.errors import BadInputError

log = logging.getLogger(__name__)

HIDDEN = 16
COLOURS = ("#9b59b6", "#e6a23c", "#e24a33", "#3498db", "#2ecc71", "#1abc9c", "#e67e22", "#34495e")


class TimbreMap(nn.Module):
    """Map between timbre vectors ``[B, ZT]`` and points ``[B, 2]`` of the square ``[-1, 1]^2``.

    Args:
        timbre_dim: ZT.
        hidden: width of the hidden layers.
    """

    timbre_dim: int

    def __init__(self, timbre_dim: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        if timbre_dim < 1:
            raise ValueError(f"timbre_dim must be >= 1, got {timbre_dim}")
        self.timbre_dim = timbre_dim
        self.encoder = nn.Sequential(
            nn.Linear(timbre_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 2),
        )
        self.decoder = nn.Sequential(
            nn.Linear(2, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, timbre_dim),
        )
        self.register_buffer("mean", torch.zeros(timbre_dim))
        self.register_buffer("std", torch.ones(timbre_dim))

    @torch.jit.export
    def to_map(self, c: torch.Tensor) -> torch.Tensor:
        """Timbre vectors ``[B, ZT]`` -> points ``[B, 2]`` (nominally inside ``[-1, 1]^2``)."""
        return self.encoder((c - self.mean) / self.std)

    @torch.jit.export
    def from_map(self, xy: torch.Tensor) -> torch.Tensor:
        """Points ``[B, 2]`` -> timbre vectors ``[B, ZT]``."""
        return self.decoder(xy) * self.std + self.mean

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``c [B, ZT] -> (points [B, 2], reconstruction [B, ZT])``."""
        xy = self.to_map(c)
        return xy, self.from_map(xy)


def map_loss(model: TimbreMap, c: torch.Tensor) -> torch.Tensor:
    """Reconstruction MSE (in standardised units) plus the ``[-1, 1]^2`` box penalty."""
    xy = model.to_map(c)
    reconstruction = model.decoder(xy)
    target = (c - model.mean) / model.std
    return F.mse_loss(reconstruction, target) + F.relu(xy.abs() - 1.0).mean()


def fit_timbre_map(
    vectors: np.ndarray | torch.Tensor,
    labels: Sequence[str] | None = None,
    steps: int = 2000,
    seed: int = 0,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
) -> TimbreMap:
    """Fit a :class:`TimbreMap` on timbre vectors ``[N, ZT]`` (N >= 1) with Adam; returns it in eval mode.

    ``labels`` are not used by the fit (they only colour the picture) but must match N when given.
    """
    data = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    if data.dim() != 2 or data.size(0) < 1 or data.size(1) < 1:
        raise BadInputError(f"timbre vectors of shape {tuple(data.shape)}: expected [N >= 1, ZT]")
    if not torch.isfinite(data).all():
        raise BadInputError("timbre vectors hold NaN or infinite values")
    if labels is not None and len(labels) != data.size(0):
        raise BadInputError(f"{len(labels)} labels for {data.size(0)} timbre vectors")
    if steps < 0:
        raise BadInputError(f"steps={steps}: expected >= 0")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TimbreMap(data.size(1))
    model.mean.copy_(data.mean(0))
    model.std.copy_(
        data.std(0, unbiased=False).clamp_min(1e-3) if data.size(0) > 1 else torch.ones(data.size(1))
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, data.size(0), (min(batch_size, data.size(0)),), generator=generator)
        loss = map_loss(model, data[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        final = float(map_loss(model, data))
    log.info("timbre map fitted on %d vectors (%d steps): loss %.4f", data.size(0), steps, final)
    return model


def draw_timbre_map(
    model: TimbreMap,
    vectors: np.ndarray | torch.Tensor,
    labels: Sequence[str] | None,
    path: str | Path,
) -> Path:
    """Draw the encoded ``vectors [N, ZT]`` as points coloured by label (legend), with the
    ``[-1, 1]^2`` box the slider covers, into the PNG ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    data = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    with torch.no_grad():
        points = model.to_map(data).numpy() if data.numel() else np.zeros((0, 2), np.float32)
    names = list(labels) if labels is not None else ["timbre"] * len(points)
    figure, axes = plt.subplots(figsize=(6, 6), dpi=150)
    axes.set_facecolor("#d8d8d8")
    scatter_by_label(axes, points, names, size=10, alpha=0.8)
    axes.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color="black", linewidth=0.8)
    axes.axhline(0.0, color="black", linewidth=0.4)
    axes.axvline(0.0, color="black", linewidth=0.4)
    axes.set_xlim(-1.2, 1.2)
    axes.set_ylim(-1.2, 1.2)
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])
    if names:
        axes.legend(loc="upper right", fontsize=7, framealpha=0.7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


def synthetic_references(sample_rate: int, seconds: float = 1.5) -> list[tuple[str, np.ndarray]]:
    """Simple labelled test signals (sine, square, sawtooth, noise bursts at several pitches) used to
    place the map when no dataset is given: ``[(label, audio [T]), ...]``."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    envelope = np.minimum(1.0, t / 0.02) * np.exp(-t)
    signals = []
    rng = np.random.default_rng(0)
    for frequency in (110.0, 220.0, 440.0, 880.0):
        phase = 2 * np.pi * frequency * t
        signals.append(("sine", np.sin(phase)))
        signals.append(("square", np.sign(np.sin(phase))))
        signals.append(("sawtooth", 2.0 * ((frequency * t) % 1.0) - 1.0))
        signals.append(("noise", rng.standard_normal(t.size) * np.sin(phase / 50.0) ** 2))
    return [(label, (0.5 * envelope * audio).astype(np.float32)) for label, audio in signals]


def collect_timbre_vectors(
    bundle: "ModelBundle",  # noqa: F821
    dataset: str | Path | None = None,
    max_items: int = 400,
) -> tuple[np.ndarray, list[str]]:
    """Timbre vectors ``[N, ZT]`` and labels to fit the map on: crops of a dataset (labelled by
    instrument family) when given, else :func:`synthetic_references`."""
    from after.data.audio import resample

    items: list[tuple[str, np.ndarray]] = []
    if dataset is not None:
        from after.data.dataset import FAMILY_LABELS, ChunkDataset

        data = ChunkDataset(dataset, split="all", deterministic=True)
        step = max(1, len(data) // max_items)
        for index in range(0, len(data), step):
            item = data[index]
            family = int(item["family"])
            label = FAMILY_LABELS[family] if 0 <= family < len(FAMILY_LABELS) else "unknown"
            audio = item["audio"][0].numpy()
            if data.meta.sample_rate != bundle.sample_rate:
                audio = resample(audio[None], data.meta.sample_rate, bundle.sample_rate)[0]
            items.append((label, audio))
        if not items:
            raise BadInputError(f"{dataset}: dataset holds no chunks to place the timbre map")
    else:
        items = synthetic_references(bundle.sample_rate)
    vectors = []
    with torch.no_grad():
        for _, audio in items:
            usable = audio.size // bundle.hop * bundle.hop
            z = bundle.codec.encode(torch.from_numpy(np.ascontiguousarray(audio[:usable]))[None, None])
            vectors.append(bundle.model.encode_timbre(z)[0].numpy())
    return np.stack(vectors).astype(np.float32), [label for label, _ in items]


def scatter_by_label(axes, points: np.ndarray, labels: Sequence[str], size: float, alpha: float) -> None:
    """Scatter map points ``[N, 2]`` on matplotlib ``axes``: one colour and legend entry per label."""
    for index, name in enumerate(sorted(set(labels))):
        chosen = np.array([label == name for label in labels], dtype=bool)
        axes.scatter(
            points[chosen, 0],
            points[chosen, 1],
            s=size,
            alpha=alpha,
            color=COLOURS[index % len(COLOURS)],
            label=name,
        )
