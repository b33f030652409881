import math

import mido
import numpy as np
import pytest

from after.data.midi import (
    Note,
    load_midi_info,
    load_notes,
    notes_from_array,
    notes_in_window,
    notes_to_array,
    piano_roll,
    roll_to_notes,
    save_notes,
)
from after.errors import BadInputError, MidiFileError


def random_notes(seed: int, count: int = 200, seconds: float = 30.0) -> list[Note]:
    rng = np.random.default_rng(seed)
    notes = []
    for _ in range(count):
        start = float(rng.uniform(0, seconds))
        is_drum = bool(rng.random() < 0.15)
        notes.append(
            Note(
                pitch=int(rng.integers(21, 109)),
                velocity=int(rng.integers(1, 128)),
                start=start,
                end=start + float(rng.uniform(0.01, 2.0)),
                program=0 if is_drum else int(rng.choice([0, 24, 33, 40, 73])),
                is_drum=is_drum,
            )
        )
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def assert_same_notes(got: list[Note], expected: list[Note], tolerance: float) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert (a.pitch, a.velocity, a.program, a.is_drum) == (b.pitch, b.velocity, b.program, b.is_drum)
        assert abs(a.start - b.start) <= tolerance and abs(a.end - b.end) <= tolerance


@pytest.mark.parametrize("tempo_bpm", [120.0, 47.0, 200.0])
def test_save_load_round_trip(tmp_path, tempo_bpm):
    notes = random_notes(seed=int(tempo_bpm))
    # back-to-back repeats of one pitch must survive as separate notes
    notes += [Note(60, 100, 31.0, 31.5, 40), Note(60, 80, 31.5, 32.0, 40), Note(60, 90, 32.0, 32.25, 40)]
    # overlapping notes of one pitch and instrument, which one MIDI track cannot pair unambiguously
    notes += [Note(70, 100, 33.0, 35.0, 24), Note(70, 60, 33.5, 34.0, 24), Note(70, 30, 33.6, 33.7, 24)]
    path = tmp_path / "sub" / "song.mid"
    save_notes(path, notes, tempo_bpm=tempo_bpm)
    assert [p.name for p in path.parent.iterdir()] == ["song.mid"]  # no temporary left
    loaded = load_notes(path)
    assert_same_notes(loaded, sorted(notes, key=lambda n: (n.start, n.pitch)), tolerance=1e-3)
    info = load_midi_info(path)
    assert info.n_notes == len(notes) and info.has_drums
    assert info.programs == (0, 24, 33, 40, 73)
    assert info.duration_s == pytest.approx(max(n.end for n in notes), abs=1e-3)


def test_drums_go_to_channel_ten(tmp_path):
    path = tmp_path / "drums.mid"
    save_notes(path, [Note(36, 100, 0.0, 0.1, is_drum=True), Note(60, 100, 0.0, 1.0, program=33)])
    channels = {
        m.note: m.channel for track in mido.MidiFile(str(path)).tracks for m in track if m.type == "note_on"
    }
    assert channels[36] == 9 and channels[60] != 9


def test_reads_tempo_changes_and_running_programs(tmp_path):
    # type 1: tempo map in track 0 (120 bpm, then 60 bpm from beat 4), notes in track 1
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    midi.tracks.append(
        mido.MidiTrack(
            [
                mido.MetaMessage("set_tempo", tempo=500_000),
                mido.MetaMessage("set_tempo", tempo=1_000_000, time=1920),
            ]
        )
    )
    midi.tracks.append(
        mido.MidiTrack(
            [
                mido.Message("note_on", note=60, velocity=90, time=0),
                mido.Message("note_on", note=60, velocity=0, time=480),  # running-status style note-off
                mido.Message("program_change", program=40, time=1440),
                mido.Message("note_on", note=62, velocity=70, time=0),  # at beat 4 = 2.0 s
                mido.Message("note_off", note=62, time=480),  # one beat at 60 bpm = 1.0 s
                mido.Message("note_on", note=64, velocity=50, time=0),  # never released
                mido.Message("note_on", note=65, velocity=50, time=240),
                mido.Message("note_off", note=65, time=240),
            ]
        )
    )
    path = tmp_path / "tempo.mid"
    midi.save(str(path))
    got = load_notes(path)
    assert_same_notes(
        got,
        [
            Note(60, 90, 0.0, 0.5),
            Note(62, 70, 2.0, 3.0, 40),
            Note(64, 50, 3.0, 4.0, 40),
            Note(65, 50, 3.5, 4.0, 40),
        ],
        tolerance=1e-9,
    )


def test_music21_file_with_several_parts_loads(tmp_path, monkeypatch):
    from music21 import corpus, instrument

    score = corpus.parse("bach/bwv66.6")
    chosen = [instrument.Violin(), instrument.Flute(), instrument.Clarinet(), instrument.Violoncello()]
    for part, chosen_instrument in zip(score.parts, chosen):
        part.insert(0, chosen_instrument)
    path = tmp_path / "chorale.mid"
    score.write("midi", fp=str(path))
    assert mido.MidiFile(str(path)).ticks_per_beat > 5000  # the high resolution pretty_midi refuses
    notes = load_notes(path)
    assert len(notes) == sum(len(p.stripTies().flatten().notes) for p in score.parts)  # tied notes merge
    assert {n.program for n in notes} == {40, 73, 71, 42}
    assert notes == sorted(notes, key=lambda n: (n.start, n.pitch))

    # same notes and times as pretty_midi reads once its corruption check is lifted for this test only
    import pretty_midi

    monkeypatch.setattr(pretty_midi.pretty_midi, "MAX_TICK", 1e10)
    reference = pretty_midi.PrettyMIDI(str(path))
    expected = sorted(
        (
            Note(n.pitch, n.velocity, n.start, n.end, i.program, i.is_drum)
            for i in reference.instruments
            for n in i.notes
        ),
        key=lambda n: (n.start, n.pitch, n.end, n.program),
    )
    assert_same_notes(notes, expected, tolerance=1e-6)


@pytest.mark.parametrize(
    "content",
    [b"", b"MThd not really a midi file", b"RIFF\x00\x00\x00\x00WAVEfmt "],
    ids=["empty", "text", "wav"],
)
def test_bad_midi_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(MidiFileError, match="not a readable MIDI file") as caught:
        load_notes(path)
    assert str(path) in str(caught.value)
    with pytest.raises(MidiFileError, match="no such file"):
        load_notes(tmp_path / "missing.mid")


def test_file_without_notes_gives_empty_list(tmp_path):
    path = tmp_path / "silent.mid"
    save_notes(path, [])
    assert load_notes(path) == []


def test_save_refuses_bad_notes(tmp_path):
    for bad in [
        Note(128, 10, 0, 1),
        Note(60, 0, 0, 1),
        Note(60, 10, 1, 0.5),
        Note(60, 10, 0, 1, program=200),
    ]:
        with pytest.raises(BadInputError):
            save_notes(tmp_path / "x.mid", [bad])
    assert not (tmp_path / "x.mid").exists()


def test_notes_in_window_shifts_and_clips():
    notes = [
        Note(60, 100, 0.0, 1.0),
        Note(62, 100, 0.5, 2.5),
        Note(64, 100, 2.0, 3.0),
        Note(65, 100, 3.0, 4.0),
    ]
    window = notes_in_window(notes, 1.0, 3.0)
    assert window == [
        Note(62, 100, 0.0, 1.5),
        Note(64, 100, 1.0, 2.0),
    ]  # ends at 1.0 / starts at 3.0 excluded
    for note in notes_in_window(random_notes(3), 5.0, 9.0):
        assert 0.0 <= note.start <= note.end <= 4.0


def test_note_array_round_trip():
    notes = random_notes(4)
    array = notes_to_array(notes)
    assert array.shape == (len(notes), 6) and array.dtype == np.float64
    assert notes_from_array(array) == notes
    assert notes_to_array([]).shape == (0, 6)
    assert notes_from_array(np.zeros((0, 6))) == []
    with pytest.raises(BadInputError):
        notes_from_array(np.zeros((3, 5)))


@pytest.mark.parametrize("frame_rate", [21.533203125, 21.533, 100.0, 44100 / 512])
def test_piano_roll_onsets_land_on_their_frame(frame_rate):
    notes = [n for n in random_notes(5, count=300, seconds=20.0) if not n.is_drum]
    n_frames = math.ceil(25.0 * frame_rate)
    roll = piano_roll(notes, frame_rate, n_frames)
    assert roll.shape == (2, 128, n_frames) and roll.dtype == np.float32
    for note in notes:
        frame = math.floor(note.start * frame_rate)
        assert note.start * frame_rate - 1 < frame <= note.start * frame_rate
        assert roll[1, note.pitch, frame] >= note.velocity / 127 - 1e-7
        assert roll[0, note.pitch, frame] >= note.velocity / 127 - 1e-7
    # a note starting exactly on a frame edge belongs to that frame, not the one before
    edge = piano_roll([Note(60, 127, 37 / frame_rate, 40 / frame_rate)], frame_rate, 50)
    assert np.flatnonzero(edge[1, 60]).tolist() == [37]
    assert np.flatnonzero(edge[0, 60]).tolist() == [37, 38, 39]


def test_piano_roll_does_not_drift_over_ten_minutes():
    frame_rate = 44100 / 2048  # 21.533... Hz
    beat = 0.5
    notes = [Note(60 + (i % 12), 100, i * beat, i * beat + 0.25) for i in range(1200)]  # 10 minutes
    n_frames = math.ceil(600.0 * frame_rate)
    roll = piano_roll(notes, frame_rate, n_frames)
    onset_frames = np.flatnonzero(roll[1].max(axis=0))
    expected = [math.floor(n.start * frame_rate) for n in notes]
    assert onset_frames.tolist() == expected
    # the same notes windowed at the end give the same frames as the long roll
    tail = piano_roll(notes, frame_rate, 100, start=500 / frame_rate)
    np.testing.assert_array_equal(tail, roll[:, :, 500:600])


def test_repeated_notes_stay_separate_and_short_notes_are_kept():
    frame_rate = 10.0
    notes = [Note(60, 100, 0.0, 0.5), Note(60, 50, 0.5, 1.0), Note(64, 80, 0.52, 0.53)]
    roll = piano_roll(notes, frame_rate, 12)
    assert np.flatnonzero(roll[1, 60]).tolist() == [0, 5]  # the re-attack shows as a second onset
    assert np.flatnonzero(roll[0, 60]).tolist() == list(range(10))  # sustain without a gap
    assert roll[1, 60, 5] == pytest.approx(50 / 127)
    assert np.flatnonzero(roll[0, 64]).tolist() == [5] and np.flatnonzero(roll[1, 64]).tolist() == [5]
    assert roll_to_notes(roll, frame_rate) == [
        Note(60, 100, 0.0, 0.5),
        Note(60, 50, 0.5, 1.0),
        Note(64, 80, 0.5, 0.6),
    ]


def test_overlapping_same_pitch_takes_max_velocity_and_drums_are_optional():
    notes = [Note(60, 40, 0.0, 1.0), Note(60, 90, 0.5, 0.8), Note(38, 120, 0.2, 0.3, is_drum=True)]
    roll = piano_roll(notes, 10.0, 12)
    assert roll[0, 60, 6] == pytest.approx(90 / 127) and roll[0, 60, 9] == pytest.approx(40 / 127)
    assert not roll[:, 38].any()
    assert piano_roll(notes, 10.0, 12, include_drums=True)[1, 38, 2] == pytest.approx(120 / 127)


@pytest.mark.parametrize("frame_rate", [21.533, 50.0])
def test_roll_to_notes_inverts_piano_roll(frame_rate):
    notes = [n for n in random_notes(6, count=150, seconds=20.0) if not n.is_drum]
    roll = piano_roll(notes, frame_rate, math.ceil(23.0 * frame_rate))
    recovered = roll_to_notes(roll, frame_rate, program=5)
    # notes of one pitch that start in the same frame collapse into one; compare (pitch, onset frame)
    onsets: dict[tuple[int, int], int] = {}
    for note in notes:
        key = (note.pitch, math.floor(note.start * frame_rate))
        onsets[key] = max(onsets.get(key, 0), note.velocity)
    assert {(n.pitch, round(n.start * frame_rate)): n.velocity for n in recovered} == onsets
    assert all(n.program == 5 and n.end > n.start for n in recovered)


@pytest.mark.parametrize("frame_rate", [21.533, 50.0])
def test_monophonic_roll_survives_a_round_trip_through_notes(frame_rate):
    # notes that leave a frame between repeats of a pitch carry no ambiguity: roll -> notes -> roll is exact
    last_end: dict[int, float] = {}
    notes = []
    for note in random_notes(7, count=300, seconds=20.0):
        if not note.is_drum and note.start >= last_end.get(note.pitch, -1.0) + 2.0 / frame_rate:
            notes.append(note)
            last_end[note.pitch] = note.end
    roll = piano_roll(notes, frame_rate, math.ceil(23.0 * frame_rate))
    recovered = roll_to_notes(roll, frame_rate)
    assert len(recovered) == len(notes)
    notes.sort(key=lambda n: (math.floor(n.start * frame_rate), n.pitch))  # the order notes come back in
    for got, note in zip(recovered, notes):
        assert (got.pitch, got.velocity) == (note.pitch, note.velocity)
        assert got.start <= note.start < got.start + 1 / frame_rate  # onset to the frame
        assert note.end <= got.end < note.end + 1 / frame_rate + 1e-9  # ends at the next frame edge
    np.testing.assert_array_equal(piano_roll(recovered, frame_rate, roll.shape[2]), roll)


def test_roll_to_notes_reads_sustain_only_rolls():
    sustain = np.zeros((128, 10), dtype=np.float32)
    sustain[60, 2:5] = 0.5
    sustain[60, 7:9] = 0.3
    assert roll_to_notes(sustain, 10.0, threshold=0.1) == [Note(60, 64, 0.2, 0.5), Note(60, 38, 0.7, 0.9)]
