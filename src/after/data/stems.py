"""One stem of symbolic material before rendering, and how it is fitted to an instrument.

A :class:`SourceStem` is what a source (the music21 corpus, the procedural generator) hands to the
renderer: one instrument's notes, in seconds from the stem's start. :func:`assign_program` moves it
into the register of the program that will play it and cleans it up so that FluidSynth and the MIDI
side-car agree note for note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from after.data.instruments import fold_into_range, octave_shift_to_range, program_range
from after.data.midi import Note

MIN_NOTE_S = 0.03
"""Shortest note kept, in seconds (shorter ones are lengthened to this)."""


@dataclass(frozen=True)
class SourceStem:
    """One instrument's part: ``notes`` in seconds from the stem start (first onset near 0).

    ``label`` names it inside its piece (``"part2-seg0"``, ``"arpeggio"``); ``source`` is the
    manifest's provenance string (``"music21:bach/bwv66.6:part2"``, ``"procedural:arpeggio"``);
    ``tempo_bpm`` is written into the MIDI side-car so that its beats mean something;
    ``offset_s`` is where the stem's time 0 lies in its source piece (before the lead-in shift).
    """

    label: str
    source: str
    notes: tuple[Note, ...]
    tempo_bpm: float = 120.0
    offset_s: float = 0.0

    @property
    def end_s(self) -> float:
        """Time of the last note-off, in seconds."""
        return max((n.end for n in self.notes), default=0.0)


def clean_notes(notes: Sequence[Note], min_duration: float = MIN_NOTE_S) -> list[Note]:
    """Make notes safe to render and to pair in MIDI.

    Sorts by (start, pitch); drops exact duplicates (same pitch and start); lengthens notes shorter
    than ``min_duration``; ends a note where the next note of the same pitch begins (a synthesiser
    cannot hold two voices of one key on one channel); clamps velocity to 1..127.
    """
    ordered = sorted(notes, key=lambda n: (n.start, n.pitch, -n.end))
    cleaned: list[Note] = []
    last_of_pitch: dict[int, int] = {}  # pitch -> index in cleaned of its latest note
    for note in ordered:
        velocity = min(max(int(note.velocity), 1), 127)
        end = max(note.end, note.start + min_duration)
        previous_index = last_of_pitch.get(note.pitch)
        if previous_index is not None:
            previous = cleaned[previous_index]
            if note.start - previous.start < min_duration:
                continue  # a duplicate onset of a sounding key
            if previous.end > note.start:
                cleaned[previous_index] = replace(previous, end=note.start)
        last_of_pitch[note.pitch] = len(cleaned)
        cleaned.append(replace(note, velocity=velocity, end=end))
    return cleaned


def assign_program(notes: Sequence[Note], program: int, transpose: int = 0) -> list[Note]:
    """Give every note ``program`` and move the notes into that program's pitch range.

    The notes are first transposed by ``transpose`` semitones, then by the octave shift that puts
    most of them in range (:func:`~after.data.instruments.octave_shift_to_range`); the few still
    outside are folded in by whole octaves. Returns cleaned notes (see :func:`clean_notes`).
    """
    low, high = program_range(program)
    pitches = [n.pitch + transpose for n in notes]
    shift = transpose + octave_shift_to_range(pitches, low, high)
    moved = [
        replace(n, pitch=fold_into_range(n.pitch + shift, low, high), program=program, is_drum=False)
        for n in notes
    ]
    return clean_notes(moved)
