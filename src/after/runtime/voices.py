"""Polyphonic voices from live MIDI notes, at the latent frame rate.

A MIDI model takes, per latent frame, one (pitch, velocity) pair per voice, like the nn~ inlets
of the original device (two inputs per voice, velocity 0 = silent). :class:`VoiceAllocator`
turns note-on / note-off events, stamped with a sample offset inside the coming block, into
those arrays, and :func:`voices_to_piano_roll` turns them into the exact piano roll that
:func:`after.data.midi.piano_roll` makes from the same notes in a file (training and real time
see the same input).

Frame convention (the same as :func:`after.data.midi.piano_roll`): frame ``k`` covers samples
``[k * hop, (k + 1) * hop)``. A note that starts at sample ``s`` and ends at sample ``e`` sounds
on frames ``floor(s / hop) .. ceil(e / hop) - 1`` (at least its first frame) and has its onset on
frame ``floor(s / hop)``.

Voice rules:

- a new note takes the voice that has been free longest; a voice whose note ended inside the
  note's first frame still sounds there, so it is only taken when no other voice is free;
- when every voice holds a note, the oldest note is stolen (it stops where the new one starts);
- a note-off releases the oldest sounding voice with that pitch (first in, first out, as MIDI
  files pair their events); a note-off for a pitch that no voice holds is ignored;
- a note-on with velocity 0 is a note-off;
- a repeated note (same pitch while held) takes its own voice and shows its own onset, so every
  re-attack is visible in the ``onset`` array even when the pitch never stops sounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from after.errors import BadInputError, MidiFileError

_NO_END = math.inf


@dataclass(frozen=True)
class VoiceFrames:
    """Voices over the latent frames of one block.

    Attributes:
        pitch: int16 ``[V, L]``, MIDI pitch of each voice (the last pitch it played when silent).
        velocity: int16 ``[V, L]``, 0..127; 0 = the voice is silent on that frame.
        onset: bool ``[V, L]``, True on the first frame of each note.
    """

    pitch: np.ndarray
    velocity: np.ndarray
    onset: np.ndarray

    @property
    def n_voices(self) -> int:
        return self.pitch.shape[0]

    @property
    def n_frames(self) -> int:
        return self.pitch.shape[1]

    def to_nn_tilde(self) -> np.ndarray:
        """float32 ``[2V, L]``: channel ``2v`` = pitch, ``2v + 1`` = velocity of voice ``v``,
        the per-voice inlets of an nn~ MIDI model."""
        pairs = np.stack([self.pitch, self.velocity], axis=1).astype(np.float32)  # [V, 2, L]
        return pairs.reshape(2 * self.n_voices, self.n_frames)  # [V, 2, L] -> [2V, L]

    def piano_roll(self) -> np.ndarray:
        """float32 ``[2, 128, L]`` (see :func:`voices_to_piano_roll`)."""
        return voices_to_piano_roll(self.pitch, self.velocity, self.onset)


def voices_to_piano_roll(pitch: np.ndarray, velocity: np.ndarray, onset: np.ndarray) -> np.ndarray:
    """Per-voice frames -> float32 roll ``[2, 128, L]``, as :func:`after.data.midi.piano_roll`.

    Args:
        pitch: ``[V, L]`` MIDI pitches (0..127).
        velocity: ``[V, L]`` velocities (0 = silent).
        onset: ``[V, L]`` bool, True where a note starts.

    Returns:
        channel 0 (sustain) = ``velocity / 127`` wherever a voice sounds that pitch; channel 1
        (onset) = ``velocity / 127`` on onset frames. Where voices share a pitch and frame, the
        larger value wins.
    """
    pitch = np.asarray(pitch)
    velocity = np.asarray(velocity)
    onset = np.asarray(onset, dtype=bool)
    if pitch.shape != velocity.shape or pitch.shape != onset.shape or pitch.ndim != 2:
        raise BadInputError(
            f"voice arrays of shapes {pitch.shape}, {velocity.shape}, {onset.shape}: expected equal [V, L]"
        )
    n_frames = pitch.shape[1]
    roll = np.zeros((2, 128, n_frames), dtype=np.float32)
    level = velocity.astype(np.float32) / np.float32(127.0)  # [V, L]
    frames = np.broadcast_to(np.arange(n_frames), pitch.shape)  # [V, L]
    sounding = velocity > 0
    keys = pitch.astype(np.int64)
    np.maximum.at(roll[0], (keys[sounding], frames[sounding]), level[sounding])
    attack = sounding & onset
    np.maximum.at(roll[1], (keys[attack], frames[attack]), level[attack])
    return roll


@dataclass
class _Note:
    pitch: int
    velocity: int
    start_sample: int  # absolute sample where it began
    first_frame: int  # absolute frame of its onset
    end_frame: float  # absolute frame where it stops sounding (exclusive); inf while held
    serial: int  # order of arrival, to find the oldest note


class VoiceAllocator:
    """Turns timed MIDI note events into per-voice, per-frame arrays (see the module docstring).

    Use: queue the events of the coming block with :meth:`note_on` / :meth:`note_off` /
    :meth:`push` (offsets in samples from the block start; offsets past the block wait for a later
    block), then call :meth:`render` once per block. The allocator keeps its notes across blocks.

    Args:
        n_voices: polyphony V (>= 1); the original device uses 8.
    """

    def __init__(self, n_voices: int = 8) -> None:
        if n_voices < 1:
            raise BadInputError(f"n_voices={n_voices}: expected >= 1")
        self.n_voices = int(n_voices)
        self.reset()

    def reset(self) -> None:
        """Forget every note and queued event; the next block starts at sample 0."""
        self._voices: list[_Note | None] = [None] * self.n_voices
        self._last_pitch = [0] * self.n_voices
        self._free_since = [-_NO_END] * self.n_voices  # frame where each empty voice fell silent
        self._events: list[tuple[int, int, str, int, int]] = []  # (sample, order, kind, pitch, velocity)
        self._block_start = 0  # absolute sample of the next block
        self._serial = 0

    # -- events ------------------------------------------------------------------------------------

    def note_on(self, pitch: int, velocity: int, offset: int = 0) -> None:
        """Queue a note-on ``offset`` samples after the start of the next block (velocity 0 = off)."""
        _check_midi_value("pitch", pitch)
        _check_midi_value("velocity", velocity)
        if velocity == 0:
            self.note_off(pitch, offset)
            return
        self._queue("on", pitch, velocity, offset)

    def note_off(self, pitch: int, offset: int = 0) -> None:
        """Queue a note-off ``offset`` samples after the start of the next block."""
        _check_midi_value("pitch", pitch)
        self._queue("off", pitch, 0, offset)

    def all_notes_off(self, offset: int = 0) -> None:
        """Release every sounding voice at ``offset``."""
        self._queue("all_off", 0, 0, offset)

    def push(self, message: mido.Message, offset: int = 0) -> bool:
        """Queue a mido message; note-on/off and control 120/123 (all sound/notes off) are used.

        Returns whether the message was used. All channels are merged.
        """
        kind = message.type
        if kind == "note_on":
            self.note_on(message.note, message.velocity, offset)
        elif kind == "note_off":
            self.note_off(message.note, offset)
        elif kind == "control_change" and message.control in (120, 123):
            self.all_notes_off(offset)
        else:
            return False
        return True

    def _queue(self, kind: str, pitch: int, velocity: int, offset: int) -> None:
        sample = self._block_start + max(int(offset), 0)
        self._events.append((sample, self._serial, kind, int(pitch), int(velocity)))
        self._serial += 1

    # -- rendering ---------------------------------------------------------------------------------

    def render(self, n_frames: int, hop_length: int) -> VoiceFrames:
        """Apply the events of the next ``n_frames * hop_length`` samples and return its frames.

        Returns :class:`VoiceFrames` with arrays ``[V, n_frames]``; the allocator then moves on to
        the following block.
        """
        if n_frames < 1 or hop_length < 1:
            raise BadInputError(f"render({n_frames}, {hop_length}): expected n_frames >= 1, hop_length >= 1")
        block_end = self._block_start + n_frames * hop_length
        first_frame = self._block_start // hop_length
        self._events.sort()
        due = [event for event in self._events if event[0] < block_end]
        self._events = [event for event in self._events if event[0] >= block_end]
        # every note that touches this block, per voice, in the order they took the voice
        segments: list[list[_Note]] = [[note] if note is not None else [] for note in self._voices]
        for sample, _, kind, pitch, velocity in due:
            if kind == "on":
                self._start(pitch, velocity, sample, hop_length, segments)
            elif kind == "off":
                self._release(pitch, sample, hop_length)
            else:
                for note in self._voices:
                    if note is not None and note.end_frame == _NO_END:
                        note.end_frame = _end_frame(sample, note.first_frame, hop_length)
        pitch_out = np.zeros((self.n_voices, n_frames), dtype=np.int16)
        velocity_out = np.zeros((self.n_voices, n_frames), dtype=np.int16)
        onset_out = np.zeros((self.n_voices, n_frames), dtype=bool)
        for voice, notes in enumerate(segments):
            pitch_out[voice] = self._last_pitch[voice]
            for note in notes:  # later notes overwrite earlier ones on a shared frame
                lo = max(note.first_frame, first_frame) - first_frame
                hi = min(note.end_frame, first_frame + n_frames) - first_frame
                if hi <= lo:
                    continue
                hi = int(hi)
                pitch_out[voice, lo:] = note.pitch
                velocity_out[voice, lo:hi] = note.velocity
                onset_out[voice, lo:hi] = False
                if note.first_frame >= first_frame:
                    onset_out[voice, lo] = True
            if notes:
                self._last_pitch[voice] = notes[-1].pitch
        # drop the notes that have finished sounding
        for voice, note in enumerate(self._voices):
            if note is not None and note.end_frame <= first_frame + n_frames:
                self._voices[voice] = None
                self._free_since[voice] = note.end_frame
        self._block_start = block_end
        return VoiceFrames(pitch_out, velocity_out, onset_out)

    def _start(
        self, pitch: int, velocity: int, sample: int, hop_length: int, segments: list[list[_Note]]
    ) -> None:
        frame = sample // hop_length
        voice = self._choose_voice(frame)
        old = self._voices[voice]
        if old is not None and old.end_frame > frame:
            old.end_frame = frame  # stolen (or cut where the new note begins)
        note = _Note(pitch, velocity, sample, frame, _NO_END, self._serial)
        self._serial += 1
        self._voices[voice] = note
        segments[voice].append(note)

    def _choose_voice(self, frame: int) -> int:
        """Index of the voice for a note starting on ``frame`` (see the module docstring)."""
        best_free, best_key = None, None
        for voice, note in enumerate(self._voices):
            end = self._free_since[voice] if note is None else note.end_frame
            if end <= frame and (best_key is None or end < best_key):
                best_free, best_key = voice, end
        if best_free is not None:
            return best_free
        released = [
            v for v, note in enumerate(self._voices) if note is not None and note.end_frame != _NO_END
        ]
        if released:  # still sounding on this frame only: cut the earliest-ending one
            return min(released, key=lambda v: (self._voices[v].end_frame, v))
        return min(range(self.n_voices), key=lambda v: self._voices[v].serial)  # steal the oldest

    def _release(self, pitch: int, sample: int, hop_length: int) -> None:
        held = [
            note
            for note in self._voices
            if note is not None and note.pitch == pitch and note.end_frame == _NO_END
        ]
        if held:
            oldest = min(held, key=lambda note: note.serial)
            oldest.end_frame = _end_frame(sample, oldest.first_frame, hop_length)


def _end_frame(sample: int, first_frame: int, hop_length: int) -> int:
    """Exclusive end frame of a note released at ``sample``: at least one frame long."""
    return max(-(-sample // hop_length), first_frame + 1)


def _check_midi_value(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 127:
        raise BadInputError(f"MIDI {name} {value!r}: expected an integer in 0..127")


def midi_file_events(path: str | Path, sample_rate: int) -> list[tuple[int, mido.Message]]:
    """Every channel message of a MIDI file with its time in samples: ``[(sample, message), ...]``.

    Times follow the file's tempo map (as :func:`after.data.midi.load_notes`) and are rounded to
    the nearest sample; events keep their file order. Raises MidiFileError for an unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise MidiFileError(path, "no such file")
    try:
        midi = mido.MidiFile(str(path), clip=True)
        events = []
        seconds = 0.0
        for message in midi:  # merged tracks, message.time = seconds since the previous message
            seconds += message.time
            if not message.is_meta:
                events.append((round(seconds * sample_rate), message))
    except Exception as error:  # mido raises OSError, EOFError, ValueError, KeyError, ... on bad data
        raise MidiFileError(path, f"not a readable MIDI file ({type(error).__name__}: {error})") from error
    return events


def render_events(
    allocator: VoiceAllocator,
    events: Iterable[tuple[int, mido.Message]],
    n_blocks: int,
    frames_per_block: int,
    hop_length: int,
) -> list[VoiceFrames]:
    """Play timed events ``(sample, message)`` through ``allocator`` block by block.

    Returns one :class:`VoiceFrames` per block; the allocator is reset first.
    """
    allocator.reset()
    for sample, message in events:
        allocator.push(message, sample)  # offsets from sample 0: later blocks pick them up
    return [allocator.render(frames_per_block, hop_length) for _ in range(n_blocks)]
