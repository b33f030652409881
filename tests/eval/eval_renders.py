"""Helpers shared by the evaluation tests: seeded melodies and the render rate."""

from __future__ import annotations

import numpy as np

from after.data.midi import Note
from after.eval.triplets import DEFAULT_SOUNDFONTS

SAMPLE_RATE = 16_000
FLUID_R3 = DEFAULT_SOUNDFONTS[0]


def melody(seed: int, n_notes: int = 12, low: int = 62, high: int = 79, step_s: float = 0.3) -> list[Note]:
    """A monophonic melody of ``n_notes`` notes on a regular grid, pitches drawn in [low, high]."""
    rng = np.random.default_rng(seed)
    pitches = rng.integers(low, high + 1, size=n_notes)
    return [
        Note(int(p), int(rng.integers(80, 110)), 0.1 + i * step_s, 0.1 + i * step_s + 0.85 * step_s)
        for i, p in enumerate(pitches)
    ]
