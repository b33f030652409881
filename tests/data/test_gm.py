import numpy as np
import pytest

from after.data import gm
from after.errors import BadInputError


def test_sixteen_families_of_eight_programs_cover_all_programs():
    assert len(gm.FAMILIES) == 16
    seen = []
    for family in gm.FAMILIES:
        programs = gm.programs_of(family)
        assert len(programs) == 8
        assert all(gm.family_of(p) == family for p in programs)
        seen.extend(programs)
    assert seen == list(range(128))


@pytest.mark.parametrize(
    ("program", "family", "name"),
    [
        (0, "piano", "Acoustic Grand Piano"),
        (24, "guitar", "Acoustic Guitar (nylon)"),
        (33, "bass", "Electric Bass (finger)"),
        (40, "strings", "Violin"),
        (56, "brass", "Trumpet"),
        (71, "reed", "Clarinet"),
        (73, "pipe", "Flute"),
        (127, "sound_effects", "Gunshot"),
    ],
)
def test_known_programs(program, family, name):
    assert gm.family_of(program) == family
    assert gm.program_name(program) == name
    assert gm.family_of(np.int64(program)) == family


def test_names_are_unique_and_drums_have_their_own_family():
    names = [gm.program_name(p) for p in range(128)]
    assert len(set(names)) == 128
    assert gm.track_family(0, is_drum=True) == gm.DRUM_FAMILY
    assert gm.track_family(40, is_drum=False) == "strings"
    assert gm.programs_of(gm.DRUM_FAMILY) == ()


@pytest.mark.parametrize("bad", [-1, 128, 3.0, "7", None, True])
def test_bad_program_refused_with_value_named(bad):
    with pytest.raises(BadInputError, match=r"0\.\.127"):
        gm.family_of(bad)
    with pytest.raises(BadInputError, match=r"0\.\.127"):
        gm.program_name(bad)


def test_unknown_family_refused():
    with pytest.raises(BadInputError, match="'violins'"):
        gm.programs_of("violins")
