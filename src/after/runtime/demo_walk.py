"""A walk across the 2-D timbre map: waypoints, positions along the path, and the map to walk on.

The walk visits the map positions of the demo's timbre references in order and comes back to the
first (a closed loop, so the stream ends where it began); when the references sit too close
together on the map (or there are fewer than two), it goes round a circle instead. Positions are
spaced evenly by arc length, one per generated block, and the map's decoder turns each into a
timbre vector.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from after.runtime.timbre_map import TimbreMap

if TYPE_CHECKING:
    from after.runtime.bundle import ModelBundle

log = logging.getLogger(__name__)

MIN_SPREAD = 0.3
"""Smallest distance between two reference positions for the walk to go through them."""
CIRCLE_RADIUS = 0.7
CIRCLE_POINTS = 8


def walk_waypoints(reference_xy: np.ndarray) -> np.ndarray:
    """Waypoints ``[K, 2]`` of a closed walk (the last equals the first) from the references' map
    positions ``[R, 2]`` (clipped to the square ``[-1, 1]^2``), or a circle (see module doc)."""
    points = np.clip(np.asarray(reference_xy, dtype=np.float64).reshape(-1, 2), -1.0, 1.0)  # [R, 2]
    if len(points) >= 2:
        spread = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1).max()
        if spread >= MIN_SPREAD:
            return np.concatenate([points, points[:1]], axis=0)
    angles = np.linspace(0.0, 2 * np.pi, CIRCLE_POINTS + 1)
    return CIRCLE_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # [K, 2]


def walk_positions(waypoints: np.ndarray, count: int) -> np.ndarray:
    """``count`` positions ``[count, 2]`` evenly spaced by arc length along the polyline
    ``waypoints [K, 2]``, from its first point to its last."""
    waypoints = np.asarray(waypoints, dtype=np.float64)
    if count < 1:
        return np.zeros((0, 2))
    lengths = np.linalg.norm(np.diff(waypoints, axis=0), axis=1)  # [K - 1]
    cumulative = np.concatenate([[0.0], np.cumsum(lengths)])  # [K]
    if count == 1 or cumulative[-1] <= 0.0:
        return np.repeat(waypoints[:1], count, axis=0)
    targets = np.linspace(0.0, cumulative[-1], count)
    x = np.interp(targets, cumulative, waypoints[:, 0])
    y = np.interp(targets, cumulative, waypoints[:, 1])
    return np.stack([x, y], axis=1)


def map_to_vectors(timbre_map: TimbreMap, positions: np.ndarray) -> np.ndarray:
    """Timbre vectors ``[N, ZT]`` of map positions ``[N, 2]``."""
    with torch.no_grad():
        xy = torch.as_tensor(np.asarray(positions, dtype=np.float32)).reshape(-1, 2)  # [N, 2]
        return timbre_map.from_map(xy).numpy().astype(np.float64)


def vectors_to_map(timbre_map: TimbreMap, vectors: np.ndarray) -> np.ndarray:
    """Map positions ``[N, 2]`` of timbre vectors ``[N, ZT]``."""
    with torch.no_grad():
        return timbre_map.to_map(torch.as_tensor(np.asarray(vectors, dtype=np.float32))).numpy()


def map_for_walk(
    bundle: ModelBundle,
    reference_vectors: np.ndarray,
    reference_labels: Sequence[str],
    fit_steps: int,
    seed: int,
) -> tuple[TimbreMap, np.ndarray, list[str], bool]:
    """The map to walk on and the points to draw under the walk.

    Returns ``(map, background vectors [N, ZT], their labels, fitted)``: the bundle's own map when
    it ships one (``fitted`` False), else a map fitted here on the references' vectors and the
    :func:`~after.runtime.timbre_map.synthetic_references` (``fitted`` True). The background
    points are the synthetic references.
    """
    from after.runtime.timbre_map import collect_timbre_vectors, fit_timbre_map

    synthetic, labels = collect_timbre_vectors(bundle)
    if bundle.timbre_map is not None:
        return bundle.timbre_map.eval(), synthetic, labels, False
    log.info("model %s ships no timbre map: fitting one on the demo's references", bundle.name)
    vectors = np.concatenate([synthetic, np.asarray(reference_vectors, np.float32)], axis=0)
    fitted = fit_timbre_map(vectors, list(labels) + list(reference_labels), steps=fit_steps, seed=seed)
    return fitted, synthetic, labels, True
