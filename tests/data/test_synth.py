"""``after synth``: a deterministic, resumable, aligned MIDI/audio corpus in FluidR3_GM and TimGM6mb."""

import itertools
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from after.cli.main import main
from after.data import synth as synth_module
from after.data.audio import audio_info, load_audio
from after.data.gm import family_of
from after.data.instruments import PITCHED_FAMILIES, eligible_programs, fold_into_range, program_range
from after.data.midi import Note, load_notes
from after.data.procedural import generate_piece
from after.data.render import FluidRenderer, FluidSynthMissingError, trim_release
from after.data.stems import assign_program, clean_notes
from after.data.synth import (
    TRAINING_SOUNDFONTS,
    SynthConfig,
    plan_jobs,
    read_manifest,
    resolve_soundfonts,
    split_of,
    synthesize,
)
from after.errors import BadInputError, DatasetError

CORPUS = SynthConfig(minutes=4, seed=7)


@pytest.fixture(scope="module")
def corpus_one_worker(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one_worker")
    synthesize(out, CORPUS, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def corpus_two_workers(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two_workers")
    synthesize(out, CORPUS, workers=2, progress=False)
    return out


def stem_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".flac", ".mid")}


# ---------------------------------------------------------------------------------------------------------
# the corpus


def test_same_seed_gives_the_same_files_whatever_the_worker_count(corpus_one_worker, corpus_two_workers):
    assert read_manifest(corpus_one_worker) == read_manifest(corpus_two_workers)
    files = stem_files(corpus_one_worker)
    assert files == stem_files(corpus_two_workers)
    # nothing but the manifest's stems is left behind (stems rendered ahead of the cut are removed)
    listed = {r[k] for r in read_manifest(corpus_one_worker) for k in ("audio", "midi")}
    assert set(files) == listed
    assert not list(corpus_two_workers.glob(".*"))


def test_another_seed_gives_another_corpus(corpus_one_worker, tmp_path):
    records = synthesize(tmp_path, SynthConfig(minutes=0.2, seed=8), workers=1, progress=False)
    assert [r["source"] for r in records] != [r["source"] for r in read_manifest(corpus_one_worker)][
        : len(records)
    ]


def test_requested_duration_is_reached_and_overshot_by_at_most_one_stem(corpus_one_worker):
    durations = [r["duration_s"] for r in read_manifest(corpus_one_worker)]
    target = CORPUS.minutes * 60
    assert sum(durations) >= target
    assert sum(durations[:-1]) < target
    assert all(3.0 <= d <= 45.0 for d in durations)


def test_corpus_spans_many_instrument_families(corpus_one_worker):
    records = read_manifest(corpus_one_worker)
    families = {r["family"] for r in records}
    assert len(families) >= 5, families
    assert families <= set(PITCHED_FAMILIES)
    assert {r["source"].split(":")[0] for r in records} == {"music21", "procedural"}


def test_manifest_records_describe_their_files(corpus_one_worker):
    settings = json.loads((corpus_one_worker / "synth.json").read_text())
    assert settings["config"]["seed"] == CORPUS.seed
    for record in read_manifest(corpus_one_worker):
        assert record["audio"] == record["id"] + ".flac" and record["midi"] == record["id"] + ".mid"
        info = audio_info(corpus_one_worker / record["audio"])
        assert (info.channels, info.sample_rate, info.format) == (1, 44100, "FLAC")
        assert record["sample_rate"] == 44100
        assert record["duration_s"] == pytest.approx(info.duration_s, abs=1e-5)
        assert record["family"] == family_of(record["program"])
        assert record["program"] in eligible_programs()
        assert record["soundfont"] in TRAINING_SOUNDFONTS and not record["heldout_soundfont"]
        assert record["split"] == "train" == split_of(record["piece"])
        assert record["seed"] == CORPUS.seed and record["gain"] > 0
        assert record["source"].startswith(("music21:", "procedural:"))
        notes = load_notes(corpus_one_worker / record["midi"])
        assert len(notes) == record["n_notes"] > 0
        low, high = program_range(record["program"])
        assert all(n.program == record["program"] and not n.is_drum for n in notes)
        assert all(low <= n.pitch <= high for n in notes)
        # MIDI and audio share time 0 and the audio holds every note
        assert 0.0 <= min(n.start for n in notes) < 0.3
        assert max(n.end for n in notes) <= record["duration_s"] + 1e-3
        audio, _ = load_audio(corpus_one_worker / record["audio"])
        assert np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), abs=2e-3)  # peak-normalised to -1 dBFS


def test_rerun_with_the_same_arguments_skips_rendered_stems(corpus_one_worker, tmp_path):
    out = tmp_path / "corpus"
    first = synthesize(out, SynthConfig(minutes=0.3, seed=7), workers=1, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".flac", ".mid")}
    again = synthesize(out, SynthConfig(minutes=0.3, seed=7), workers=2, progress=False)
    assert again == first
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".flac", ".mid")}
    # a longer run extends the shorter one: same first stems, same files as a fresh long run
    longer = synthesize(out, SynthConfig(minutes=4, seed=7), workers=2, progress=False)
    assert longer[: len(first)] == first
    assert stem_files(out) == stem_files(corpus_one_worker)
    with pytest.raises(DatasetError, match="seed=7"):
        synthesize(out, SynthConfig(minutes=0.3, seed=8), workers=1, progress=False)


# ---------------------------------------------------------------------------------------------------------
# held-out split


def test_train_and_heldout_pieces_are_disjoint_and_heldout_is_about_a_tenth(tmp_path):
    def keys(split: str) -> set[str]:
        jobs = itertools.islice(plan_jobs(SynthConfig(minutes=1, seed=0, split=split)), 400)
        return {job.key for job in jobs}

    train, heldout = keys("train"), keys("heldout")
    assert train and heldout and not train & heldout
    assert all(split_of(k) == "train" for k in train) and all(split_of(k) == "heldout" for k in heldout)
    share = np.mean([split_of(f"music21:bach/piece{i}") == "heldout" for i in range(3000)])
    assert 0.08 < share < 0.12
    records = synthesize(
        tmp_path, SynthConfig(minutes=0.2, seed=0, split="heldout"), workers=1, progress=False
    )
    assert records and all(r["split"] == "heldout" == split_of(r["piece"]) for r in records)


# ---------------------------------------------------------------------------------------------------------
# alignment: MIDI onsets against onsets heard in the audio


def spectral_flux_onsets(
    audio: np.ndarray, sample_rate: int, hop: int = 128, window: int = 1024
) -> np.ndarray:
    """Onset times (s) of ``audio [T]``: peaks of the half-wave rectified log-spectral flux that
    stand out from its local median. A frame is dated at its centre."""
    padded = np.concatenate([np.zeros(window // 2), audio, np.zeros(window)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop]  # [F, window]
    magnitude = np.log1p(100.0 * np.abs(np.fft.rfft(frames * np.hanning(window), axis=1)))  # [F, bins]
    flux = np.maximum(np.diff(magnitude, axis=0), 0.0).sum(axis=1)  # [F-1]: frame k+1 against frame k
    flux /= flux.max() + 1e-12
    onsets = []
    for k in range(1, len(flux) - 1):
        local = np.median(flux[max(0, k - 20) : k + 20])
        if flux[k] > flux[k - 1] and flux[k] >= flux[k + 1] and flux[k] > local + 0.1:
            onsets.append((k + 1) * hop / sample_rate)  # centre of frame k + 1
    return np.array(onsets)


def isolated_onsets(notes: list[Note], gap_s: float = 0.12) -> np.ndarray:
    onsets = np.unique(np.round([n.start for n in notes], 4))
    before = np.diff(np.concatenate([[-1.0], onsets]))
    after = np.diff(np.concatenate([onsets, [1e9]]))
    return onsets[(before > gap_s) & (after > gap_s)]


def test_midi_onsets_match_onsets_in_the_audio(tmp_path):
    # percussive attacks and procedural material: every onset is sharp and clearly separated
    config = SynthConfig(
        minutes=1.0, seed=1, families=("piano", "guitar", "chromatic_percussion"), music21_share=0.0
    )
    records = synthesize(tmp_path, config, workers=2, progress=False)
    errors, shifted_errors = [], []
    for record in records:
        audio, rate = load_audio(tmp_path / record["audio"])
        detected = spectral_flux_onsets(audio[0], rate)
        assert len(detected) > 0
        for onset in isolated_onsets(load_notes(tmp_path / record["midi"])):
            errors.append(np.min(np.abs(detected - onset)))
            shifted_errors.append(np.min(np.abs(detected - (onset + 0.08))))
    errors, shifted_errors = np.array(errors), np.array(shifted_errors)
    assert len(errors) >= 50
    assert np.mean(errors <= 0.030) >= 0.9, np.percentile(errors, [50, 90, 100])
    # the check can fail: the same notes shifted by 80 ms do not match
    assert np.mean(shifted_errors <= 0.030) < 0.3


# ---------------------------------------------------------------------------------------------------------
# parts


def test_programs_are_pitched_and_from_many_families():
    programs = eligible_programs()
    families = {family_of(p) for p in programs}
    assert len(families) >= 10 and not families & {"percussive", "sound_effects"}
    with pytest.raises(BadInputError, match="percussive"):
        eligible_programs(["percussive"])


def test_every_program_sounds_across_its_range_in_both_soundfonts():
    soundfonts = [s.path for s in resolve_soundfonts(list(TRAINING_SOUNDFONTS))]
    renderer = FluidRenderer(soundfonts, 22050)
    silent = []
    for path in soundfonts:
        for program in eligible_programs():
            low, high = program_range(program)
            pitches = (low, (low + high) // 2, high)
            notes = [Note(p, 100, 0.5 * k, 0.5 * k + 0.3, program) for k, p in enumerate(pitches)]
            audio = renderer.render(notes, path, program, tail_s=0.0)
            for k, pitch in enumerate(pitches):
                window = audio[round(0.5 * k * 22050) : round((0.5 * k + 0.3) * 22050)]
                if np.abs(window).max() < 0.1 * np.abs(audio).max():  # only the previous note's tail
                    silent.append((Path(path).stem, program, pitch))
    renderer.close()
    assert not silent


def test_stems_are_moved_into_the_instruments_range_without_overlaps():
    rng = np.random.default_rng(0)
    for seed in range(20):
        for stem in generate_piece(np.random.default_rng(seed)):
            program = int(rng.choice(eligible_programs()))
            notes = assign_program(stem.notes, program)
            low, high = program_range(program)
            assert notes and all(low <= n.pitch <= high and n.program == program for n in notes)
            by_pitch: dict[int, list[Note]] = {}
            for note in notes:
                by_pitch.setdefault(note.pitch, []).append(note)
            for same in by_pitch.values():
                assert all(a.end <= b.start for a, b in itertools.pairwise(same))
    assert fold_into_range(20, 40, 45) == 44 and fold_into_range(90, 40, 57) == 54


def test_clean_notes_cuts_same_pitch_overlaps_and_drops_duplicates():
    notes = [Note(60, 80, 0.0, 1.0), Note(60, 90, 0.5, 1.5), Note(60, 70, 0.5, 0.7), Note(64, 0, 0.0, 0.01)]
    cleaned = clean_notes(notes)
    assert [(n.pitch, n.start, n.end) for n in cleaned] == [(60, 0.0, 0.5), (64, 0.0, 0.03), (60, 0.5, 1.5)]
    assert cleaned[1].velocity == 1


def test_trim_release_keeps_time_zero_and_every_note():
    rate = 1000
    audio = np.concatenate([np.zeros(100), np.ones(400), 0.5 ** np.arange(600), np.zeros(2000)]).astype(
        np.float32
    )
    trimmed = trim_release(audio, keep_samples=450, sample_rate=rate)
    assert np.array_equal(trimmed[:500], audio[:500])  # nothing removed or moved at the start
    assert 500 < len(trimmed) < 600
    silent = trim_release(np.zeros(3000, np.float32), keep_samples=700, sample_rate=rate)
    assert len(silent) == 700


# ---------------------------------------------------------------------------------------------------------
# errors


def test_soundfonts_outside_the_training_pair_need_an_explicit_path(tmp_path):
    assert [s.name for s in resolve_soundfonts(["FluidR3_GM", "TimGM6mb"])] == ["FluidR3_GM", "TimGM6mb"]
    with pytest.raises(BadInputError, match=r"MuseScore_General.*held-out"):
        resolve_soundfonts(["MuseScore_General"])
    with pytest.raises(BadInputError, match="no such file"):
        resolve_soundfonts([str(tmp_path / "missing.sf2")])
    explicit = resolve_soundfonts(["/usr/share/sounds/sf2/TimGM6mb.sf2"])[0]
    assert explicit.name == "TimGM6mb" and not explicit.heldout_only


def test_an_explicit_soundfont_path_is_logged_and_marked_held_out(tmp_path, caplog):
    other = tmp_path / "Other.sf2"
    shutil.copy("/usr/share/sounds/sf2/TimGM6mb.sf2", other)
    config = SynthConfig(minutes=0.1, seed=0, soundfonts=(str(other),))
    with caplog.at_level(logging.WARNING, logger="after.data.synth"):
        records = synthesize(tmp_path / "corpus", config, workers=1, progress=False)
    assert "held-out evaluation only" in caplog.text
    assert records and all(r["soundfont"] == "Other" and r["heldout_soundfont"] for r in records)


def test_a_missing_training_soundfont_names_its_package(tmp_path, monkeypatch):
    monkeypatch.setattr(synth_module, "SOUNDFONT_FOLDER", tmp_path)
    with pytest.raises(BadInputError, match=r"TimGM6mb\.sf2 not found.*timgm6mb-soundfont"):
        synthesize(tmp_path / "corpus", SynthConfig(minutes=1, soundfonts=("TimGM6mb",)), progress=False)


def test_bad_minutes_and_split_are_refused(tmp_path):
    for minutes in (0, -1, float("nan")):
        with pytest.raises(BadInputError, match="--minutes"):
            synthesize(tmp_path, SynthConfig(minutes=minutes), progress=False)
    with pytest.raises(BadInputError, match="--split"):
        synthesize(tmp_path, SynthConfig(minutes=1, split="test"), progress=False)


def test_missing_fluidsynth_is_reported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # import fluidsynth now raises ImportError
    with pytest.raises(FluidSynthMissingError, match="apt-get install fluidsynth"):
        synthesize(tmp_path, SynthConfig(minutes=0.1), workers=1, progress=False)


def test_cli_renders_a_corpus_and_reports_errors_in_one_line(tmp_path):
    assert (
        main(
            [
                "synth",
                str(tmp_path / "c"),
                "--minutes",
                "0.1",
                "--seed",
                "2",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert read_manifest(tmp_path / "c") and (tmp_path / "c" / "synth.json").is_file()
    for arguments, expected in (
        (["--minutes", "0"], "--minutes 0.0: expected a positive number"),
        (["--minutes", "1", "--soundfonts", "OPL3"], "'OPL3': unknown name"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "after", "synth", str(tmp_path / "bad"), *arguments],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr
