"""Fixtures for the evaluation tests: one FluidSynth renderer per session."""

from __future__ import annotations

import pytest
from eval_renders import FLUID_R3, SAMPLE_RATE

from after.eval.triplets import DEFAULT_SOUNDFONTS, make_renderer, render_notes


@pytest.fixture(scope="session")
def renderer():
    synth = make_renderer(DEFAULT_SOUNDFONTS, SAMPLE_RATE)
    yield synth
    synth.close()


@pytest.fixture(scope="session")
def render(renderer):
    """``render(notes, program, soundfont=FluidR3, seconds=None) -> [T]`` float32 at SAMPLE_RATE."""

    def _render(notes, program, soundfont=FLUID_R3, seconds=None):
        seconds = seconds if seconds is not None else max(n.end for n in notes) + 0.5
        return render_notes(renderer, notes, soundfont, program, seconds)

    return _render
