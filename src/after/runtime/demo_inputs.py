"""The demo's example inputs: short MIDI phrases from the procedural generator, played by a few
General MIDI instruments of the two training soundfonts (FluidR3_GM and TimGM6mb) with FluidSynth.

Everything comes from the seed: the phrases from ``numpy.random.default_rng(seed)``, the audio from
FluidSynth (a fresh synthesiser per phrase, so a rendering never depends on the one before).
FluidSynth starts OpenMP threads: a process that has rendered must not fork afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from after.data.midi import Note, notes_in_window
from after.data.stems import assign_program, clean_notes
from after.errors import AfterError

log = logging.getLogger(__name__)

SOUNDFONTS = ("FluidR3_GM", "TimGM6mb")
"""The only soundfonts the demo plays (the training ones; the others are kept for evaluation)."""

PHRASE_STYLES = ("melody", "arpeggio", "chords", "bass")
"""Procedural styles a phrase is taken from, in order of preference."""

MIN_NOTES = 3
MAX_PIECES = 50
PEAK_DBFS = -1.0  # like the training corpus
FADE_S = 0.02


@dataclass(frozen=True)
class Instrument:
    """A General MIDI ``program`` of one of :data:`SOUNDFONTS`."""

    name: str
    program: int
    soundfont: str


STRUCTURE_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("piano", 0, "FluidR3_GM"),
    Instrument("nylon guitar", 24, "TimGM6mb"),
    Instrument("marimba", 12, "FluidR3_GM"),
)
"""Who plays phrase k as the structure of the audio-to-audio model (cycled over the phrases)."""

TIMBRE_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("flute", 73, "FluidR3_GM"),
    Instrument("trumpet", 56, "TimGM6mb"),
    Instrument("violin", 40, "FluidR3_GM"),
    Instrument("church organ", 19, "TimGM6mb"),
    Instrument("alto sax", 65, "FluidR3_GM"),
    Instrument("cello", 42, "TimGM6mb"),
)
"""The timbre references, in order (the demo takes the first ``n_references``)."""


@dataclass(frozen=True)
class Phrase:
    """A few seconds of one procedural stem: ``notes`` in seconds from 0 (program 0)."""

    name: str
    style: str
    notes: tuple[Note, ...]
    seconds: float
    tempo_bpm: float

    def shifted(self, offset_s: float) -> list[Note]:
        """The notes ``offset_s`` seconds later."""
        return [replace(n, start=n.start + offset_s, end=n.end + offset_s) for n in self.notes]


def make_phrases(
    rng: np.random.Generator, count: int, seconds: float, prefix: str = "phrase"
) -> list[Phrase]:
    """``count`` phrases of ``seconds`` seconds, each cut from a new procedural piece at its first
    note (a stem of the most preferred style in :data:`PHRASE_STYLES` with at least
    :data:`MIN_NOTES` notes in the window)."""
    from after.data.procedural import generate_piece

    phrases: list[Phrase] = []
    for _ in range(MAX_PIECES * max(count, 1)):
        if len(phrases) == count:
            break
        stems = {stem.label: stem for stem in generate_piece(rng)}
        for style in PHRASE_STYLES:
            stem = stems.get(style)
            if stem is None or not stem.notes:
                continue
            first = min(note.start for note in stem.notes)
            window = notes_in_window(stem.notes, first, first + seconds)
            notes = [n for n in clean_notes(window) if n.end <= seconds + 1e-9 and n.start < seconds]
            if len(notes) >= MIN_NOTES:
                name = f"{prefix}{len(phrases) + 1}"
                phrases.append(Phrase(name, style, tuple(notes), float(seconds), stem.tempo_bpm))
                break
    if len(phrases) < count:
        raise AfterError(f"the procedural generator gave only {len(phrases)} usable phrases of {count}")
    return phrases


class PhraseRenderer:
    """Plays phrases with :data:`SOUNDFONTS` at ``sample_rate`` Hz (one FluidSynth per process)."""

    def __init__(self, sample_rate: int) -> None:
        from after.data.render import FluidRenderer
        from after.data.synth import resolve_soundfonts

        self.sample_rate = int(sample_rate)
        self.paths = {font.name: font.path for font in resolve_soundfonts(SOUNDFONTS)}
        self._renderer = FluidRenderer(list(self.paths.values()), self.sample_rate)

    def render(self, phrase: Phrase, instrument: Instrument) -> np.ndarray:
        """Mono float32 ``[round(seconds * rate)]``: ``phrase`` played by ``instrument`` (moved
        into its range), cut at the phrase's end with a short fade, peak-normalised."""
        from after.data.render import peak_normalise

        if instrument.soundfont not in self.paths:
            raise AfterError(f"instrument {instrument.name}: soundfont {instrument.soundfont} is not allowed")
        notes = assign_program(phrase.notes, instrument.program)
        audio = self._renderer.render(notes, self.paths[instrument.soundfont], instrument.program, 0.0)
        length = round(phrase.seconds * self.sample_rate)
        audio = np.pad(audio[:length], (0, max(0, length - audio.size))).astype(np.float32)
        fade = min(round(FADE_S * self.sample_rate), length)
        if fade:
            audio[length - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        audio, _ = peak_normalise(audio, PEAK_DBFS)
        return audio

    def close(self) -> None:
        self._renderer.close()
