"""A seeded generator of short multi-instrument pieces: melodies, chords, arpeggios, bass lines and
repeated notes over a shared key, metre, tempo and chord progression.

Everything is drawn from the ``numpy.random.Generator`` handed in, so a seed gives the same notes on
every machine. Pitches come out in a nominal register per style (bass low, melody high); the
renderer later moves each stem into the range of the instrument that plays it. Times are seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from after.data.midi import Note
from after.data.stems import SourceStem, clean_notes

STYLES: tuple[str, ...] = ("melody", "chords", "arpeggio", "bass", "repeated")
"""Kinds of stem the generator writes; the manifest source reads ``procedural:<style>``."""

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}

# Chord progressions as 0-based scale degrees of each bar's root, cycled over the piece.
PROGRESSIONS: tuple[tuple[int, ...], ...] = (
    (0, 3, 4, 0),
    (0, 5, 3, 4),
    (0, 4, 5, 3),
    (1, 4, 0, 0),
    (0, 3, 0, 4),
    (5, 3, 0, 4),
    (0, 0, 3, 4),
    (0, 6, 5, 4),
)

_REGISTER: dict[str, int] = {"melody": 72, "chords": 60, "arpeggio": 64, "bass": 40, "repeated": 62}
MIN_DURATION_S, MAX_DURATION_S = 12.0, 34.0
MIN_ONSET_GAP_S = 0.09  # fastest note value a style may choose, in seconds


@dataclass(frozen=True)
class Harmony:
    """The frame a piece's stems share: key, metre, tempo and one chord root per bar."""

    tonic: int  # pitch class 0..11
    scale: tuple[int, ...]  # 7 semitone offsets from the tonic
    tempo_bpm: float
    beats_per_bar: int
    roots: tuple[int, ...]  # scale degree (0-based) of each bar's chord root

    @property
    def beat_s(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def n_bars(self) -> int:
        return len(self.roots)

    def pitch(self, degree: int, register: int) -> int:
        """MIDI pitch of scale ``degree`` (any integer; 7 = one octave up) near ``register``."""
        octave, step = divmod(degree, 7)
        base = register - (register - self.tonic) % 12  # the tonic at or just below the register
        return base + 12 * octave + self.scale[step]

    def chord_degrees(self, bar: int, size: int = 3) -> list[int]:
        """Scale degrees of the bar's chord: root, third, fifth (and seventh when ``size`` is 4)."""
        root = self.roots[bar % self.n_bars]
        return [root + 2 * k for k in range(size)]


def random_harmony(rng: np.random.Generator) -> Harmony:
    """Draw key, mode, metre, tempo (60-170 bpm) and a progression lasting 12-34 s."""
    tempo = float(rng.uniform(60.0, 170.0))
    beats_per_bar = int(rng.choice([3, 4, 4]))
    bar_s = beats_per_bar * 60.0 / tempo
    n_bars = max(2, round(float(rng.uniform(MIN_DURATION_S, MAX_DURATION_S)) / bar_s))
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    scale = list(SCALES.values())[int(rng.integers(len(SCALES)))]
    roots = tuple(progression[i % len(progression)] for i in range(n_bars))
    return Harmony(int(rng.integers(12)), scale, tempo, beats_per_bar, roots)


def _note_value(rng: np.random.Generator, harmony: Harmony, choices: tuple[float, ...]) -> float:
    """A note value in beats, among ``choices``, no shorter than :data:`MIN_ONSET_GAP_S`."""
    playable = [c for c in choices if c * harmony.beat_s >= MIN_ONSET_GAP_S] or [max(choices)]
    return float(playable[int(rng.integers(len(playable)))])


def _melody(rng: np.random.Generator, h: Harmony) -> list[tuple[float, float, int]]:
    palettes = ((1.0, 2.0, 1.5, 1.0, 3.0), (0.5, 1.0, 1.0, 0.5, 1.5, 2.0), (0.25, 0.5, 0.5, 0.5, 1.0))
    palette = palettes[int(rng.integers(len(palettes)))]
    rest_p, legato = rng.uniform(0.0, 0.25), rng.uniform(0.55, 1.0)
    steps, weights = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4]), np.array([1, 2, 5, 10, 3, 10, 5, 2, 1])
    total, position, degree, events = h.n_bars * h.beats_per_bar, 0.0, int(rng.integers(0, 5)), []
    while position < total - 1e-9:
        value = min(_note_value(rng, h, palette), total - position)
        if rng.random() >= rest_p:
            degree += int(rng.choice(steps, p=weights / weights.sum()))
            degree = int(np.clip(degree, -4, 10))
            bar = int(position // h.beats_per_bar)
            if position % h.beats_per_bar == 0 and rng.random() < 0.6:  # land on a chord tone
                tones = [d + 7 * k for d in h.chord_degrees(bar) for k in (-1, 0, 1)]
                degree = min(tones, key=lambda d: (abs(d - degree), d))
            events.append((position, value * legato, h.pitch(degree, _REGISTER["melody"])))
        position += value
    return events


def _chords(rng: np.random.Generator, h: Harmony) -> list[tuple[float, float, int]]:
    size, sustain = int(rng.choice([3, 4])), rng.random() < 0.5
    hit_p, legato = rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.95)
    value = _note_value(rng, h, (1.0, 2.0)) if not sustain else float(h.beats_per_bar)
    events = []
    for bar in range(h.n_bars):
        pitches = [h.pitch(d, _REGISTER["chords"]) for d in h.chord_degrees(bar, size)]
        position = float(bar * h.beats_per_bar)
        while position < (bar + 1) * h.beats_per_bar - 1e-9:
            length = min(value, (bar + 1) * h.beats_per_bar - position)
            if sustain or position == bar * h.beats_per_bar or rng.random() < hit_p:
                events += [(position, length * (0.95 if sustain else legato), p) for p in pitches]
            position += length
    return events


def _arpeggio(rng: np.random.Generator, h: Harmony) -> list[tuple[float, float, int]]:
    value = _note_value(rng, h, (1.0, 0.5, 0.5, 1.0 / 3.0, 0.25))
    pattern, ring = int(rng.integers(4)), rng.uniform(0.4, 1.6)
    events, step = [], 0
    for bar in range(h.n_bars):
        tones = sorted(d + 7 * k for d in h.chord_degrees(bar) for k in (0, 1))
        order = {0: tones, 1: tones[::-1], 2: tones + tones[-2:0:-1], 3: None}[pattern]
        n_steps = round(h.beats_per_bar / value)
        for k in range(n_steps):
            degree = order[step % len(order)] if order else tones[int(rng.integers(len(tones)))]
            events.append(
                (bar * h.beats_per_bar + k * value, value * ring, h.pitch(degree, _REGISTER["arpeggio"]))
            )
            step += 1
    return events


def _bass(rng: np.random.Generator, h: Harmony) -> list[tuple[float, float, int]]:
    style, legato = int(rng.integers(4)), rng.uniform(0.6, 0.95)
    events = []
    for bar in range(h.n_bars):
        root = h.roots[bar]
        start = float(bar * h.beats_per_bar)
        if style == 0:  # one long root
            figure = [(0.0, float(h.beats_per_bar), root)]
        elif style == 1:  # root and fifth
            half = h.beats_per_bar / 2.0
            figure = [(0.0, half, root), (half, half, root + 4)]
        elif style == 2:  # walking: a scale step per beat towards the next root
            target = h.roots[(bar + 1) % h.n_bars]
            direction = 1 if target >= root else -1
            figure = [(float(b), 1.0, root + direction * b) for b in range(h.beats_per_bar)]
        else:  # driving repeated roots with an octave jump
            value = _note_value(rng, h, (0.5, 1.0))
            figure = [
                (k * value, value, root + (7 if k % 4 == 3 else 0))
                for k in range(round(h.beats_per_bar / value))
            ]
        events += [(start + o, d * legato, h.pitch(g, _REGISTER["bass"])) for o, d, g in figure]
    return events


def _repeated(rng: np.random.Generator, h: Harmony) -> list[tuple[float, float, int]]:
    value = _note_value(rng, h, (1.0, 0.5, 0.5, 1.0 / 3.0, 0.25))
    rest_p, length = rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.9)
    events, degree = [], h.chord_degrees(0)[0]
    for bar in range(h.n_bars):
        if rng.random() < 0.7:
            tones = h.chord_degrees(bar)
            degree = tones[int(rng.integers(len(tones)))]
        for k in range(round(h.beats_per_bar / value)):
            if k == 0 or rng.random() >= rest_p:
                events.append(
                    (
                        bar * h.beats_per_bar + k * value,
                        value * length,
                        h.pitch(degree, _REGISTER["repeated"]),
                    )
                )
    return events


_STYLE_FUNCTIONS: dict[str, Callable[[np.random.Generator, Harmony], list[tuple[float, float, int]]]] = {
    "melody": _melody,
    "chords": _chords,
    "arpeggio": _arpeggio,
    "bass": _bass,
    "repeated": _repeated,
}


def velocities(rng: np.random.Generator, onsets_beats: np.ndarray, h: Harmony) -> np.ndarray:
    """Velocities (1..127) for onsets given in beats: a base level, a dynamic shape over the piece
    (flat, crescendo, decrescendo, arch or waves), accents on downbeats and a little jitter."""
    total = max(h.n_bars * h.beats_per_bar, 1)
    x = onsets_beats / total  # position in the piece, 0..1
    shape = int(rng.integers(5))
    depth = rng.uniform(0.0, 35.0)
    contour = (
        np.zeros_like(x),
        x - 0.5,
        0.5 - x,
        0.5 - np.abs(x - 0.5) * 2.0,
        0.5 * np.sin(2 * np.pi * x * rng.uniform(1, 4)),
    )[shape]
    accent = rng.uniform(0.0, 14.0) * (np.mod(onsets_beats, h.beats_per_bar) < 1e-6)
    values = rng.uniform(40.0, 110.0) + depth * contour + accent + rng.normal(0.0, 4.0, size=x.shape)
    return np.clip(np.round(values), 1, 127).astype(np.int64)


def generate_piece(rng: np.random.Generator) -> list[SourceStem]:
    """One procedural piece of 1-4 stems of different styles, all 12-34 s long, sharing a harmony.

    Each stem starts after the same short lead-in (0-0.25 s); its notes are cleaned (see
    :func:`~after.data.stems.clean_notes`) and sit in the style's nominal register.
    """
    harmony = random_harmony(rng)
    n_stems = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.3, 0.3, 0.2]))
    styles = [STYLES[i] for i in rng.permutation(len(STYLES))[:n_stems]]
    lead_s = float(rng.uniform(0.0, 0.25))
    stems = []
    for style in styles:
        events = _STYLE_FUNCTIONS[style](rng, harmony)
        if not events:
            continue
        onsets = np.array([e[0] for e in events], dtype=np.float64)
        levels = velocities(rng, onsets, harmony)
        notes = [
            Note(
                pitch=int(p),
                velocity=int(v),
                start=lead_s + o * harmony.beat_s,
                end=lead_s + (o + d) * harmony.beat_s,
            )
            for (o, d, p), v in zip(events, levels)
        ]
        stems.append(SourceStem(style, f"procedural:{style}", tuple(clean_notes(notes)), harmony.tempo_bpm))
    return stems
