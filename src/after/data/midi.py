"""MIDI notes: reading, writing, windowing and piano rolls.

Files are parsed with mido directly (not pretty_midi), so MIDI written by music21, whose tick
resolution is very high, loads without touching any global limit. A note is a :class:`Note` with
times in seconds; a drum note (MIDI channel 10) has ``is_drum=True``.

Piano roll frame convention: frame ``k`` covers ``[start + k / frame_rate, start + (k+1) / frame_rate)``.
"""

from __future__ import annotations

import math
import os
import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from after.errors import BadInputError, MidiFileError

DRUM_CHANNEL = 9  # MIDI channel 10, counted from 0
SAVE_TICKS_PER_BEAT = 9600
"""Resolution used by :func:`save_notes`; at 120 bpm one tick is 0.05 ms."""
_FRAME_TOLERANCE = 1e-6  # in frames: absorbs float error when a time lies exactly on a frame edge


@dataclass(frozen=True)
class Note:
    """One note: MIDI ``pitch`` and ``velocity`` (0..127), ``start``/``end`` in seconds,
    General MIDI ``program`` (0..127) and whether it is on the drum channel."""

    pitch: int
    velocity: int
    start: float
    end: float
    program: int = 0
    is_drum: bool = False

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class MidiInfo:
    """Summary of a MIDI file: length in seconds (last note end), notes, instruments and timing."""

    duration_s: float
    n_notes: int
    programs: tuple[int, ...]  # sorted programs of the melodic (non-drum) notes
    has_drums: bool
    n_tracks: int
    ticks_per_beat: int


# ---------------------------------------------------------------------------------------------------------
# reading


def _read_midi_file(path: Path) -> mido.MidiFile:
    if not path.exists():
        raise MidiFileError(path, "no such file")
    if not path.is_file():
        raise MidiFileError(path, "not a regular file (expected a MIDI file)")
    try:
        midi = mido.MidiFile(str(path), clip=True)
    except Exception as error:  # mido raises OSError, EOFError, ValueError, KeyError, ... on bad data
        raise MidiFileError(
            path, f"not a readable MIDI file (mido: {type(error).__name__}: {error})"
        ) from error
    if midi.type == 2:
        raise MidiFileError(
            path, "MIDI type 2 (independent sequences) is not supported; expected type 0 or 1"
        )
    if not midi.ticks_per_beat or midi.ticks_per_beat <= 0:
        raise MidiFileError(
            path, f"invalid time division {midi.ticks_per_beat} (expected ticks per beat > 0)"
        )
    return midi


class _TempoMap:
    """Converts absolute ticks to seconds given all tempo changes of a file (any track)."""

    def __init__(self, midi: mido.MidiFile) -> None:
        changes: dict[int, int] = {0: 500_000}  # tick -> microseconds per beat; MIDI default 120 bpm
        for track in midi.tracks:
            tick = 0
            for message in track:
                tick += message.time
                if message.type == "set_tempo":
                    changes[tick] = message.tempo
        self.ticks = np.array(sorted(changes), dtype=np.int64)
        self.tempi = np.array([changes[t] for t in self.ticks], dtype=np.float64)
        seconds_per_tick = self.tempi / (1e6 * midi.ticks_per_beat)
        spans = np.diff(self.ticks) * seconds_per_tick[:-1]
        self.seconds = np.concatenate([[0.0], np.cumsum(spans)])
        self.seconds_per_tick = seconds_per_tick

    def to_seconds(self, ticks: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.ticks, ticks, side="right") - 1
        return self.seconds[index] + (ticks - self.ticks[index]) * self.seconds_per_tick[index]


def _collect_tick_notes(midi: mido.MidiFile) -> list[tuple[int, int, int, int, int, bool]]:
    """Pair note-ons and note-offs per (track, channel, pitch), first in first out.

    Returns ``(pitch, velocity, start_tick, end_tick, program, is_drum)`` tuples. A note still
    sounding at the end of its track ends at the track's last tick.
    """
    notes = []
    for track in midi.tracks:
        programs: dict[int, int] = defaultdict(int)
        sounding: dict[tuple[int, int], deque[tuple[int, int, int]]] = defaultdict(deque)
        tick = 0
        for message in track:
            tick += message.time
            kind = message.type
            if kind == "program_change":
                programs[message.channel] = message.program
            elif kind == "note_on" and message.velocity > 0:
                key = (message.channel, message.note)
                sounding[key].append((tick, message.velocity, programs[message.channel]))
            elif kind in ("note_off", "note_on"):
                key = (message.channel, message.note)
                if sounding[key]:
                    start, velocity, program = sounding[key].popleft()
                    notes.append((message.note, velocity, start, tick, program, key[0] == DRUM_CHANNEL))
        for (channel, pitch), queue in sounding.items():
            for start, velocity, program in queue:
                notes.append((pitch, velocity, start, tick, program, channel == DRUM_CHANNEL))
    return notes


def _sort_key(note: Note) -> tuple:
    return (note.start, note.pitch, note.end, note.program, note.is_drum, note.velocity)


def load_notes(path: str | Path) -> list[Note]:
    """Read every note of a type 0 or 1 MIDI file, sorted by (start, pitch).

    Tempo changes from any track apply to all tracks. Programs are followed per track and channel
    (notes before any program change get program 0); channel 10 notes are drums. A file without
    notes returns ``[]``. Raises MidiFileError for a missing or unreadable file.
    """
    path = Path(path)
    midi = _read_midi_file(path)
    tick_notes = _collect_tick_notes(midi)
    if not tick_notes:
        return []
    tempo_map = _TempoMap(midi)
    columns = np.array([(n[2], n[3]) for n in tick_notes], dtype=np.int64)  # [N, 2] start/end ticks
    seconds = tempo_map.to_seconds(columns.reshape(-1)).reshape(-1, 2)  # [2N] -> [N, 2]
    notes = [
        Note(pitch, velocity, float(start_s), float(end_s), program, is_drum)
        for (pitch, velocity, _, _, program, is_drum), (start_s, end_s) in zip(tick_notes, seconds)
    ]
    notes.sort(key=_sort_key)
    return notes


def load_midi_info(path: str | Path) -> MidiInfo:
    """Summarise a MIDI file (see :class:`MidiInfo`). Same errors as :func:`load_notes`."""
    path = Path(path)
    midi = _read_midi_file(path)
    notes = load_notes(path)
    return MidiInfo(
        duration_s=max((n.end for n in notes), default=0.0),
        n_notes=len(notes),
        programs=tuple(sorted({n.program for n in notes if not n.is_drum})),
        has_drums=any(n.is_drum for n in notes),
        n_tracks=len(midi.tracks),
        ticks_per_beat=int(midi.ticks_per_beat),
    )


# ---------------------------------------------------------------------------------------------------------
# writing


def _check_note(note: Note, where: str) -> None:
    if not 0 <= note.pitch <= 127:
        raise BadInputError(f"{where}: note pitch {note.pitch}: expected 0..127")
    if not 1 <= note.velocity <= 127:
        raise BadInputError(f"{where}: note velocity {note.velocity}: expected 1..127 (0 means note-off)")
    if not 0 <= note.program <= 127:
        raise BadInputError(f"{where}: note program {note.program}: expected 0..127")
    if not (math.isfinite(note.start) and math.isfinite(note.end)) or note.start < 0 or note.end < note.start:
        raise BadInputError(f"{where}: note times [{note.start}, {note.end}]: expected 0 <= start <= end")


def _split_overlapping(notes: Sequence[Note], ticks_per_second: float) -> list[list[tuple]]:
    """Tick events of one instrument, spread over as few layers (tracks) as possible so that no two
    notes of the same pitch overlap within a layer: MIDI cannot tell such notes apart otherwise.

    Each layer is a sorted list of ``(tick, order, kind, pitch, velocity)``; ``order`` puts
    note-offs before note-ons on the same tick, so back-to-back repeats stay separate.
    """
    layers: list[list[tuple]] = []
    layer_ends: list[dict[int, int]] = []  # per layer: pitch -> end tick of its last note
    for note in sorted(notes, key=_sort_key):
        on = round(note.start * ticks_per_second)
        off = max(round(note.end * ticks_per_second), on + 1)  # at least one tick long
        free = (i for i, ends in enumerate(layer_ends) if ends.get(note.pitch, -1) <= on)
        index = next(free, len(layers))
        if index == len(layers):
            layers.append([])
            layer_ends.append({})
        layer_ends[index][note.pitch] = off
        layers[index].append((on, 1, "note_on", note.pitch, note.velocity))
        layers[index].append((off, 0, "note_off", note.pitch, 0))
    return [sorted(events) for events in layers]


def save_notes(path: str | Path, notes: Sequence[Note], tempo_bpm: float = 120.0) -> None:
    """Write notes to a type 1 MIDI file, atomically (temporary file + rename); creates folders.

    One track per (program, is_drum), plus extra tracks of the same instrument only where notes of
    one pitch overlap (MIDI cannot pair their note-ons and note-offs otherwise). Drums go on
    channel 10; melodic instruments take the other channels in turn (with more than 15 programs,
    channels are shared between tracks). Times are quantised to :data:`SAVE_TICKS_PER_BEAT` ticks
    per beat at a constant ``tempo_bpm``; a note is at least one tick long. Reading the file back
    with :func:`load_notes` gives the same notes (sorted) within 1 ms.
    """
    path = Path(path)
    if not (math.isfinite(tempo_bpm) and tempo_bpm > 0):
        raise BadInputError(f"tempo_bpm={tempo_bpm!r}: expected a positive number of beats per minute")
    for note in notes:
        _check_note(note, str(path))
    tempo = mido.bpm2tempo(tempo_bpm)  # microseconds per beat
    ticks_per_second = SAVE_TICKS_PER_BEAT * 1e6 / tempo
    midi = mido.MidiFile(type=1, ticks_per_beat=SAVE_TICKS_PER_BEAT)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    midi.tracks.append(conductor)
    groups: dict[tuple[bool, int], list[Note]] = defaultdict(list)
    for note in notes:
        groups[(bool(note.is_drum), int(note.program))].append(note)
    melodic_channels = [c for c in range(16) if c != DRUM_CHANNEL]
    for index, ((is_drum, program), group) in enumerate(sorted(groups.items())):
        channel = DRUM_CHANNEL if is_drum else melodic_channels[index % len(melodic_channels)]
        for layer in _split_overlapping(group, ticks_per_second):
            track = mido.MidiTrack()
            track.append(mido.Message("program_change", channel=channel, program=program, time=0))
            previous = 0
            for tick, _, kind, pitch, velocity in layer:
                message = mido.Message(
                    kind, channel=channel, note=pitch, velocity=velocity, time=tick - previous
                )
                track.append(message)
                previous = tick
            midi.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        midi.save(str(temporary))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------------
# windows and compact arrays


def notes_in_window(notes: Sequence[Note], start: float, end: float) -> list[Note]:
    """Notes sounding in ``[start, end)``, shifted by ``-start`` and clipped to ``[0, end - start]``.

    A note overlaps when it starts before ``end`` and ends after ``start``; a zero-length note
    counts when its start lies in the window. Order is kept.
    """
    if not end >= start:
        raise BadInputError(f"window [{start}, {end}]: expected start <= end")
    length = end - start
    window = []
    for note in notes:
        if note.start < end and (note.end > start or note.start >= start):
            window.append(
                Note(
                    note.pitch,
                    note.velocity,
                    min(max(note.start - start, 0.0), length),
                    min(max(note.end - start, 0.0), length),
                    note.program,
                    note.is_drum,
                )
            )
    return window


NOTE_ARRAY_COLUMNS = ("pitch", "velocity", "start", "end", "program", "is_drum")


def notes_to_array(notes: Sequence[Note]) -> np.ndarray:
    """Pack notes into float64 ``[N, 6]``: columns :data:`NOTE_ARRAY_COLUMNS` (times in seconds)."""
    array = np.array(
        [(n.pitch, n.velocity, n.start, n.end, n.program, float(n.is_drum)) for n in notes], dtype=np.float64
    )
    return array.reshape(len(notes), len(NOTE_ARRAY_COLUMNS))  # [] -> [0, 6] when empty


def notes_from_array(array: np.ndarray) -> list[Note]:
    """Inverse of :func:`notes_to_array`: float ``[N, 6]`` -> notes (same order)."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(NOTE_ARRAY_COLUMNS):
        raise BadInputError(f"note array of shape {array.shape}: expected [N, {len(NOTE_ARRAY_COLUMNS)}]")
    return [Note(round(p), round(v), s, e, round(g), bool(d)) for p, v, s, e, g, d in array.tolist()]


# ---------------------------------------------------------------------------------------------------------
# piano rolls


def _check_frame_rate(frame_rate: float) -> None:
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise BadInputError(f"frame_rate={frame_rate!r}: expected a positive number of frames per second")


def piano_roll(
    notes: Sequence[Note],
    frame_rate: float,
    n_frames: int,
    start: float = 0.0,
    include_drums: bool = False,
) -> np.ndarray:
    """Render notes as a float32 roll ``[2, 128, n_frames]`` (channel, pitch, frame).

    Frame ``k`` covers ``[start + k / frame_rate, start + (k + 1) / frame_rate)``; frame indices
    come from each note's absolute time (``floor((t - start) * frame_rate)``), so nothing drifts
    over long sequences.

    - Channel 0, sustain: ``velocity / 127`` on every frame the note overlaps, i.e. frames
      ``floor(s) .. ceil(e) - 1`` with ``s, e`` the note's start and end in frames. A note shorter
      than a frame still fills its onset frame.
    - Channel 1, onset: ``velocity / 127`` on the frame holding the note's start only. A note that
      starts before ``start`` has no onset in this roll.
    - Where notes of one pitch overlap (or share a frame, as a repeated note does with the end of
      the previous one), the larger velocity wins. Back-to-back repeats give a continuous sustain;
      the re-attack is marked by the second note's onset, which :func:`roll_to_notes` uses to split.
    - Drum notes are left out unless ``include_drums``.
    """
    _check_frame_rate(frame_rate)
    if n_frames < 0:
        raise BadInputError(f"n_frames={n_frames}: expected >= 0")
    roll = np.zeros((2, 128, n_frames), dtype=np.float32)
    for note in notes:
        if note.is_drum and not include_drums:
            continue
        first = math.floor((note.start - start) * frame_rate + _FRAME_TOLERANCE)
        last = math.ceil((note.end - start) * frame_rate - _FRAME_TOLERANCE)  # exclusive
        last = max(last, first + 1)
        if last <= 0 or first >= n_frames:
            continue
        level = np.float32(note.velocity / 127.0)
        sustain = roll[0, note.pitch, max(first, 0) : min(last, n_frames)]
        np.maximum(sustain, level, out=sustain)
        if first >= 0:
            roll[1, note.pitch, first] = max(roll[1, note.pitch, first], level)
    return roll


def roll_to_notes(
    roll: np.ndarray, frame_rate: float, program: int = 0, threshold: float = 0.0
) -> list[Note]:
    """Read notes back from a ``[2, 128, T]`` roll (see :func:`piano_roll`) or a sustain-only
    ``[128, T]`` roll. Sorted by (start, pitch).

    A note begins on a frame whose onset exceeds ``threshold``, or where the sustain rises above
    ``threshold`` after a frame at or below it; it lasts while the sustain stays above
    ``threshold`` and no new onset appears (so repeated notes stay separate), and at least one
    frame. Times are frame edges ``k / frame_rate`` in seconds (relative to the roll's start);
    velocity is ``round(127 * onset)`` (or the sustain value when the note has no onset), at least 1.
    """
    _check_frame_rate(frame_rate)
    roll = np.asarray(roll, dtype=np.float32)
    if roll.ndim == 2:
        roll = np.stack([roll, np.zeros_like(roll)])  # [128, T] -> [2, 128, T]
    if roll.ndim != 3 or roll.shape[:2] != (2, 128):
        raise BadInputError(f"piano roll of shape {roll.shape}: expected [2, 128, T] or [128, T]")
    n_frames = roll.shape[2]
    sustain, onset = roll[0], roll[1]
    active = sustain > threshold  # [128, T]
    attack = onset > threshold  # [128, T]
    previous_active = np.concatenate([np.zeros((128, 1), dtype=bool), active[:, :-1]], axis=1)
    begins = attack | (active & ~previous_active)  # [128, T]
    stops = begins | ~active  # a note ends at the first later frame where this is true
    notes = []
    for pitch in np.flatnonzero(begins.any(axis=1)):
        starts = np.flatnonzero(begins[pitch])
        boundaries = np.flatnonzero(stops[pitch])
        ends_at = np.searchsorted(boundaries, starts, side="right")
        for frame, boundary_index in zip(starts, ends_at):
            end_frame = boundaries[boundary_index] if boundary_index < len(boundaries) else n_frames
            value = onset[pitch, frame] if attack[pitch, frame] else sustain[pitch, frame]
            velocity = int(min(max(round(float(value) * 127.0), 1), 127))
            notes.append(
                Note(int(pitch), velocity, frame / frame_rate, end_frame / frame_rate, program, False)
            )
    notes.sort(key=_sort_key)
    return notes
