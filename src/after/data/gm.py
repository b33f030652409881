"""General MIDI program names and instrument families.

General MIDI groups its 128 melodic programs (0-based numbers 0..127) into 16 families of 8
consecutive programs each. Drum tracks (MIDI channel 10) have no program family of their own; we
label them with :data:`DRUM_FAMILY`.
"""

from __future__ import annotations

import operator

from after.errors import BadInputError

FAMILIES: tuple[str, ...] = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)
"""The 16 General MIDI families, in program order (family ``i`` holds programs ``8i .. 8i+7``)."""

DRUM_FAMILY = "drums"
"""Family label used for drum tracks, which General MIDI keeps outside the 128 programs."""

PROGRAMS_PER_FAMILY = 8

_PROGRAM_NAMES: tuple[str, ...] = (
    # piano
    "Acoustic Grand Piano",
    "Bright Acoustic Piano",
    "Electric Grand Piano",
    "Honky-tonk Piano",
    "Electric Piano 1",
    "Electric Piano 2",
    "Harpsichord",
    "Clavinet",
    # chromatic percussion
    "Celesta",
    "Glockenspiel",
    "Music Box",
    "Vibraphone",
    "Marimba",
    "Xylophone",
    "Tubular Bells",
    "Dulcimer",
    # organ
    "Drawbar Organ",
    "Percussive Organ",
    "Rock Organ",
    "Church Organ",
    "Reed Organ",
    "Accordion",
    "Harmonica",
    "Tango Accordion",
    # guitar
    "Acoustic Guitar (nylon)",
    "Acoustic Guitar (steel)",
    "Electric Guitar (jazz)",
    "Electric Guitar (clean)",
    "Electric Guitar (muted)",
    "Overdriven Guitar",
    "Distortion Guitar",
    "Guitar Harmonics",
    # bass
    "Acoustic Bass",
    "Electric Bass (finger)",
    "Electric Bass (pick)",
    "Fretless Bass",
    "Slap Bass 1",
    "Slap Bass 2",
    "Synth Bass 1",
    "Synth Bass 2",
    # strings
    "Violin",
    "Viola",
    "Cello",
    "Contrabass",
    "Tremolo Strings",
    "Pizzicato Strings",
    "Orchestral Harp",
    "Timpani",
    # ensemble
    "String Ensemble 1",
    "String Ensemble 2",
    "Synth Strings 1",
    "Synth Strings 2",
    "Choir Aahs",
    "Voice Oohs",
    "Synth Choir",
    "Orchestra Hit",
    # brass
    "Trumpet",
    "Trombone",
    "Tuba",
    "Muted Trumpet",
    "French Horn",
    "Brass Section",
    "Synth Brass 1",
    "Synth Brass 2",
    # reed
    "Soprano Sax",
    "Alto Sax",
    "Tenor Sax",
    "Baritone Sax",
    "Oboe",
    "English Horn",
    "Bassoon",
    "Clarinet",
    # pipe
    "Piccolo",
    "Flute",
    "Recorder",
    "Pan Flute",
    "Blown Bottle",
    "Shakuhachi",
    "Whistle",
    "Ocarina",
    # synth lead
    "Lead 1 (square)",
    "Lead 2 (sawtooth)",
    "Lead 3 (calliope)",
    "Lead 4 (chiff)",
    "Lead 5 (charang)",
    "Lead 6 (voice)",
    "Lead 7 (fifths)",
    "Lead 8 (bass + lead)",
    # synth pad
    "Pad 1 (new age)",
    "Pad 2 (warm)",
    "Pad 3 (polysynth)",
    "Pad 4 (choir)",
    "Pad 5 (bowed)",
    "Pad 6 (metallic)",
    "Pad 7 (halo)",
    "Pad 8 (sweep)",
    # synth effects
    "FX 1 (rain)",
    "FX 2 (soundtrack)",
    "FX 3 (crystal)",
    "FX 4 (atmosphere)",
    "FX 5 (brightness)",
    "FX 6 (goblins)",
    "FX 7 (echoes)",
    "FX 8 (sci-fi)",
    # ethnic
    "Sitar",
    "Banjo",
    "Shamisen",
    "Koto",
    "Kalimba",
    "Bagpipe",
    "Fiddle",
    "Shanai",
    # percussive
    "Tinkle Bell",
    "Agogo",
    "Steel Drums",
    "Woodblock",
    "Taiko Drum",
    "Melodic Tom",
    "Synth Drum",
    "Reverse Cymbal",
    # sound effects
    "Guitar Fret Noise",
    "Breath Noise",
    "Seashore",
    "Bird Tweet",
    "Telephone Ring",
    "Helicopter",
    "Applause",
    "Gunshot",
)


def _check_program(program: int) -> int:
    """Return ``program`` as an int if it is a General MIDI program number 0..127, else raise."""
    try:
        number = operator.index(program)  # accepts int and numpy integers, refuses floats
    except TypeError:
        number = -1
    if isinstance(program, bool) or not 0 <= number <= 127:
        raise BadInputError(f"MIDI program {program!r}: expected an integer in 0..127")
    return number


def family_of(program: int) -> str:
    """The General MIDI family of a program number (0..127), e.g. ``family_of(40) == "strings"``."""
    return FAMILIES[_check_program(program) // PROGRAMS_PER_FAMILY]


def programs_of(family: str) -> tuple[int, ...]:
    """The 8 program numbers of a family name from :data:`FAMILIES` (drums have none: empty tuple)."""
    if family == DRUM_FAMILY:
        return ()
    if family not in FAMILIES:
        raise BadInputError(
            f"instrument family {family!r}: expected one of {', '.join(FAMILIES)} or {DRUM_FAMILY!r}"
        )
    first = FAMILIES.index(family) * PROGRAMS_PER_FAMILY
    return tuple(range(first, first + PROGRAMS_PER_FAMILY))


def program_name(program: int) -> str:
    """Human-readable General MIDI name of a program number, e.g. ``"Acoustic Grand Piano"`` for 0."""
    return _PROGRAM_NAMES[_check_program(program)]


def track_family(program: int, is_drum: bool) -> str:
    """Family label of a MIDI track: :data:`DRUM_FAMILY` for drum tracks, else :func:`family_of`."""
    return DRUM_FAMILY if is_drum else family_of(program)
