"""Which General MIDI programs the corpus renderer may use, and the pitch range each one plays.

A rendered stem must sound like a pitched instrument playing in its natural register. Drums
(channel 10), the ``percussive`` and ``sound_effects`` families and a few noise-like effects are
never used. Every eligible program has a plausible MIDI pitch range ``(low, high)``: family
defaults, refined for instruments whose real range is narrow or unusual (piccolo, tuba, timpani).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from after.data.gm import FAMILIES, family_of, programs_of
from after.errors import BadInputError

EXCLUDED_FAMILIES: frozenset[str] = frozenset({"percussive", "sound_effects"})
"""Families never rendered: they are mostly unpitched."""

EXCLUDED_PROGRAMS: frozenset[int] = frozenset(
    {
        55,  # Orchestra Hit: a one-shot effect rather than an instrument
        96,  # FX 1 (rain): noise-like
        101,  # FX 6 (goblins)
        102,  # FX 7 (echoes)
        103,  # FX 8 (sci-fi)
    }
)
"""Programs inside otherwise pitched families that do not sound like a playable pitched instrument."""

_FAMILY_RANGES: dict[str, tuple[int, int]] = {
    "piano": (33, 96),
    "chromatic_percussion": (55, 96),
    "organ": (36, 91),
    "guitar": (40, 84),
    "bass": (28, 60),
    "strings": (40, 88),
    "ensemble": (38, 88),
    "brass": (40, 80),
    "reed": (48, 84),
    "pipe": (60, 96),
    "synth_lead": (48, 91),
    "synth_pad": (40, 84),
    "synth_effects": (48, 84),
    "ethnic": (50, 86),
}

_PROGRAM_RANGES: dict[int, tuple[int, int]] = {
    6: (41, 89),  # Harpsichord
    8: (60, 103),  # Celesta
    9: (72, 105),  # Glockenspiel
    10: (60, 96),  # Music Box
    11: (53, 89),  # Vibraphone
    12: (45, 96),  # Marimba
    13: (65, 103),  # Xylophone
    14: (60, 77),  # Tubular Bells
    15: (48, 84),  # Dulcimer
    21: (41, 89),  # Accordion
    22: (60, 91),  # Harmonica
    23: (41, 89),  # Tango Accordion
    31: (52, 84),  # Guitar Harmonics (FluidR3_GM is silent above 85)
    40: (55, 100),  # Violin
    41: (48, 88),  # Viola
    42: (36, 76),  # Cello
    43: (28, 55),  # Contrabass (FluidR3_GM is silent above 57)
    46: (28, 100),  # Orchestral Harp
    47: (40, 57),  # Timpani
    52: (48, 79),  # Choir Aahs
    53: (48, 79),  # Voice Oohs
    56: (55, 84),  # Trumpet
    57: (40, 72),  # Trombone
    58: (28, 58),  # Tuba
    59: (55, 82),  # Muted Trumpet
    60: (41, 77),  # French Horn
    64: (56, 87),  # Soprano Sax
    65: (49, 80),  # Alto Sax
    66: (44, 76),  # Tenor Sax
    67: (36, 69),  # Baritone Sax
    68: (58, 91),  # Oboe
    69: (52, 81),  # English Horn
    70: (34, 72),  # Bassoon
    71: (50, 91),  # Clarinet
    72: (74, 103),  # Piccolo
    74: (72, 96),  # Recorder (FluidR3_GM is silent above 97)
    76: (60, 84),  # Blown Bottle
    77: (55, 84),  # Shakuhachi
    78: (62, 78),  # Whistle (TimGM6mb is silent above 78)
    79: (60, 84),  # Ocarina
    108: (60, 96),  # Kalimba
    109: (55, 77),  # Bagpipe
    110: (55, 96),  # Fiddle
    111: (60, 88),  # Shanai
}

PITCHED_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f not in EXCLUDED_FAMILIES)
"""The families a rendered stem may belong to, in General MIDI order (14 of them)."""


def eligible_programs(families: Sequence[str] | None = None) -> tuple[int, ...]:
    """Programs (0..127) the renderer may draw, restricted to ``families`` if given (sorted)."""
    chosen = PITCHED_FAMILIES if families is None else tuple(families)
    for family in chosen:
        if family not in PITCHED_FAMILIES:
            raise BadInputError(
                f"instrument family {family!r} cannot be rendered; "
                f"expected one of {', '.join(PITCHED_FAMILIES)}"
            )
    return tuple(
        sorted(p for family in set(chosen) for p in programs_of(family) if p not in EXCLUDED_PROGRAMS)
    )


def program_range(program: int) -> tuple[int, int]:
    """The plausible MIDI pitch range ``(low, high)`` (inclusive) of an eligible program."""
    if program in _PROGRAM_RANGES:
        return _PROGRAM_RANGES[program]
    family = family_of(program)
    if family not in _FAMILY_RANGES or program in EXCLUDED_PROGRAMS:
        raise BadInputError(f"program {program} ({family}) is not rendered by the corpus synthesiser")
    return _FAMILY_RANGES[family]


def choose_program(rng: np.random.Generator, programs: Sequence[int]) -> int:
    """Draw a program: first a family uniformly among those present, then a program within it.

    Drawing the family first keeps the families balanced even though they hold different numbers
    of eligible programs.
    """
    by_family: dict[str, list[int]] = {}
    for program in sorted(programs):
        by_family.setdefault(family_of(program), []).append(program)
    families = sorted(by_family, key=FAMILIES.index)
    family = families[int(rng.integers(len(families)))]
    members = by_family[family]
    return members[int(rng.integers(len(members)))]


def octave_shift_to_range(pitches: Sequence[int], low: int, high: int) -> int:
    """The shift (a multiple of 12 semitones) that puts the most ``pitches`` inside ``[low, high]``.

    Ties go to the shift that brings the median pitch closest to the centre of the range.
    """
    values = np.asarray(pitches, dtype=np.int64)
    if values.size == 0:
        return 0
    centre = (low + high) / 2.0
    median = float(np.median(values))
    best: tuple[int, float, int] | None = None
    for octaves in range(-8, 9):
        shift = 12 * octaves
        inside = int(np.count_nonzero((values + shift >= low) & (values + shift <= high)))
        key = (-inside, abs(median + shift - centre), shift)
        if best is None or key < best:
            best = key
    assert best is not None
    return best[2]


def fold_into_range(pitch: int, low: int, high: int) -> int:
    """Move one pitch by whole octaves into ``[low, high]``; clamp if the range is under an octave."""
    if pitch < low:
        pitch += 12 * ((low - pitch + 11) // 12)
    elif pitch > high:
        pitch -= 12 * ((pitch - high + 11) // 12)
    return min(max(pitch, low), high)
