"""The evaluation protocol end to end on untrained tiny models, and the release checks' logic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from after.codec.config import codec_preset
from after.data import transcription
from after.diffusion.config import diffusion_preset
from after.errors import BadInputError
from after.eval import checks as release
from after.eval.checks import Check, evaluate_checks, verdict
from after.eval.metrics import lsd, mfcc_distance
from after.eval.protocol import ProtocolOptions, _sources, _systems, parse_cases, run_protocol
from after.eval.protocol_report import write_protocol_report
from after.eval.report import ALL_FAMILIES, METRICS
from after.eval.triplets import build_triplets, make_renderer, render_triplet
from after.runtime.bundle import random_bundle
from after.runtime.pipeline import build_pipeline

SMALL = dict(clip_s=3.0, timbre_per_program=2, timbre_clip_s=2.0, n_boot=100)
MODEL_SYSTEMS = {"audio_to_audio", "midi_to_audio", "codec_reconstruction", "codec_reconstruction_midi"}
TRIVIAL = {"copy_structure", "copy_timbre", "ground_truth"}


@pytest.fixture(scope="module")
def bundles():
    audio = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=0, name="tiny-audio")
    midi = random_bundle(codec_preset("tiny"), diffusion_preset("tiny_midi"), seed=1, name="tiny-midi")
    return audio, midi


@pytest.fixture(scope="module")
def options():
    return ProtocolOptions(cases=3, seed=1, **SMALL)


@pytest.fixture(scope="module")
def result(bundles, options):
    return run_protocol(*bundles, options)


def test_every_row_metric_and_family_is_there(result, options):
    use_f1 = transcription.transcription_available()
    assert result["transcription"] == use_f1
    systems = MODEL_SYSTEMS | TRIVIAL  # the two random codecs differ: one codec row each
    assert {r["system"] for r in result["rows"]} == systems
    assert len(result["rows"]) == options.cases * len(systems)
    expected = {"lsd", "mfcc_distance", "timbre_id"} | ({"note_f1", "onset_f1"} if use_f1 else set())
    for row in result["rows"]:
        assert expected <= set(row) and all(np.isfinite(row[m]) for m in expected)
    families = result["families"]
    assert len(families) == options.cases  # target families cycle: 3 cases, 3 families
    entries = {(s["system"], s["family"], s["metric"]) for s in result["summary"]}
    for system in systems:
        for family in [*families, ALL_FAMILIES]:
            assert {(system, family, m) for m in expected} <= entries
    assert set(result["fd_mfcc"]) == systems and result["fd_mfcc"]["ground_truth"] == pytest.approx(
        0, abs=1e-6
    )
    assert set(result["speed"]) == MODEL_SYSTEMS
    assert all(s["rtf"] > 0 for s in result["speed"].values())
    assert result["speed"]["audio_to_audio"]["latency_ms"] > 0
    leakage = result["leakage"]
    assert leakage["status"] in ("measured", "n/a")
    if leakage["status"] == "measured":
        assert 0.0 <= leakage["accuracy"] <= 1.0 and leakage["n_test"] > 0
    assert {c["name"] for c in result["checks"]} == set(release.CHECKS)
    assert result["verdict"] in ("pass", "fail", "incomplete")


def first_triplet(options, sample_rate: int):
    """Triplet 0 of the protocol's held-out set and its renders, rebuilt independently of the run."""
    own, _ = _sources(options)
    triplet = build_triplets(own, options.cases, options.seed, clip_s=options.clip_s)[0]
    renderer = make_renderer(options.soundfonts, sample_rate)
    rendered = render_triplet(triplet, renderer)
    renderer.close()
    return triplet, rendered


def test_rows_score_the_right_inputs(result, bundles, options):
    """Rebuild triplet 0 independently: the model row is the transfer of the content render with the
    style render as timbre reference, the codec row the codec's reconstruction of the target."""
    audio_bundle, _ = bundles
    triplet, rendered = first_triplet(options, audio_bundle.sample_rate)
    rate = rendered.sample_rate
    pipeline = build_pipeline(audio_bundle, seed=options.seed + triplet.index)
    pipeline.set_timbre_audio(rendered.style)
    transferred = pipeline.transfer(rendered.content)[0]
    codec = _systems(audio_bundle, None, options)[0]["codec_reconstruction"](rendered)
    codec = codec[: rendered.target.size]  # the codec pads to whole frames; rows score the target's length
    rows = {r["system"]: r for r in result["rows"] if r["triplet"] == 0}
    assert rows["audio_to_audio"]["lsd"] == pytest.approx(lsd(transferred, rendered.target, rate), rel=1e-6)
    assert rows["audio_to_audio"]["mfcc_distance"] == pytest.approx(
        mfcc_distance(transferred, rendered.target, rate), rel=1e-6, abs=1e-9
    )
    assert rows["codec_reconstruction"]["lsd"] == pytest.approx(lsd(codec, rendered.target, rate), rel=1e-6)
    assert rows["ground_truth"]["lsd"] == 0.0 < rows["codec_reconstruction"]["lsd"]
    assert rows["copy_structure"]["lsd"] == pytest.approx(lsd(rendered.content, rendered.target, rate))


def test_int8_option_runs_the_int8_pipeline_and_codec(bundles, options):
    """With ``int8`` the model row is what an int8 pipeline gives (not the fp32 output), and the codec
    row is the int8 codec's reconstruction, close to the fp32 one."""
    import dataclasses

    audio_bundle, _ = bundles
    triplet, rendered = first_triplet(options, audio_bundle.sample_rate)
    int8_systems = _systems(audio_bundle, None, dataclasses.replace(options, int8=True))[0]
    fp32_systems = _systems(audio_bundle, None, options)[0]
    pipeline = build_pipeline(audio_bundle, seed=options.seed + triplet.index, int8=True)
    pipeline.set_timbre_audio(rendered.style)
    expected = pipeline.transfer(rendered.content)[0]
    np.testing.assert_allclose(int8_systems["audio_to_audio"](rendered), expected, atol=1e-6)
    assert not np.allclose(fp32_systems["audio_to_audio"](rendered), expected, atol=1e-6)
    codec8, codec32 = (s["codec_reconstruction"](rendered) for s in (int8_systems, fp32_systems))
    assert not np.array_equal(codec8, codec32)
    assert np.linalg.norm(codec8 - codec32) < 0.5 * np.linalg.norm(codec32)


def test_a_shared_codec_gives_one_codec_row():
    audio = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=3)
    midi = random_bundle(codec_preset("tiny"), diffusion_preset("tiny_midi"), seed=3)  # same codec weights
    systems, latency = _systems(audio, midi, ProtocolOptions(cases=1))
    assert set(systems) == {"audio_to_audio", "midi_to_audio", "codec_reconstruction"}
    assert set(latency) == {"audio_to_audio", "midi_to_audio"}


def test_report_and_json_hold_every_row(result, tmp_path):
    path = write_protocol_report(result, tmp_path)
    text = path.read_text()
    for system in MODEL_SYSTEMS | TRIVIAL:
        assert f"| {system} |" in text
    for name in release.CHECKS:
        assert f"| {name} |" in text
    assert text.index("## Checks") < text.index("## Results") < text.index("## Per family")
    assert "Overall: **" in text and "fd_mfcc ↓" in text and "RTF ↓" in text
    loaded = json.loads((tmp_path / "eval.json").read_text())
    assert loaded["rows"] == json.loads(json.dumps(result["rows"]))
    assert loaded["checks"] == result["checks"]
    assert (tmp_path / "lsd.png").stat().st_size > 1000


def test_same_seed_same_result():
    bundle = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=5)
    options = ProtocolOptions(cases=2, seed=2, transcription=False, **SMALL)
    first, second = run_protocol(bundle, None, options), run_protocol(bundle, None, options)
    for key in ("rows", "summary", "fd_mfcc", "checks", "leakage", "families"):
        assert first[key] == second[key], key
    assert first["notices"] == ["note/onset F1 unavailable: transcription turned off"]


def test_missing_transcription_degrades_with_a_notice(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("transcribe must not be called without the extra")

    monkeypatch.setattr(transcription, "transcription_available", lambda: False)
    monkeypatch.setattr(transcription, "transcribe", refuse)
    bundle = random_bundle(codec_preset("tiny"), diffusion_preset("tiny_midi"), seed=6)
    result = run_protocol(None, bundle, ProtocolOptions(cases=2, seed=0, **SMALL))
    assert not result["transcription"]
    assert any("transcription extra is not installed" in n and "pip install" in n for n in result["notices"])
    assert all("note_f1" not in r and "onset_f1" not in r for r in result["rows"])
    status = {(c["name"], c["system"]): c for c in result["checks"]}
    for key in (("midi_note_f1", "midi_to_audio"), ("codec_note_f1", "codec_reconstruction")):
        assert status[key]["status"] == "n/a" and "unavailable" in status[key]["detail"]
    assert result["leakage"] is None  # no audio model, no structure codes to probe
    text = write_protocol_report(result, tmp_path, plots=False).read_text()
    midi_line = next(line for line in text.splitlines() if line.startswith("| midi_to_audio |"))
    assert midi_line.count("unavailable") == 2  # note_f1 and onset_f1 columns
    assert "transcription extra is not installed" in text


# -- checks on hand-made tables ------------------------------------------------------------------------


def table(**changes):
    """Overall means where every check passes; ``changes`` = {system: {metric: value}}."""
    base = {
        "ground_truth": {"note_f1": 0.80, "mfcc_distance": 0.0, "timbre_id": 0.9},
        "copy_structure": {"note_f1": 0.75, "mfcc_distance": 0.50, "timbre_id": 0.10},
        "copy_timbre": {"note_f1": 0.05, "mfcc_distance": 0.10, "timbre_id": 0.85},
        "audio_to_audio": {"note_f1": 0.60, "mfcc_distance": 0.20, "timbre_id": 0.75},
        "midi_to_audio": {"note_f1": 0.70, "mfcc_distance": 0.20, "timbre_id": 0.72},
        "codec_reconstruction": {"note_f1": 0.76, "mfcc_distance": 0.05, "timbre_id": 0.88},
    }
    for system, metrics in changes.items():
        base[system] = {**base.get(system, {}), **metrics}
    return base


def statuses(checks):
    return {(c.name, c.system): c.status for c in checks}


def test_all_checks_pass_on_a_good_table():
    checks = evaluate_checks(table(), n_families=12)
    assert all(c.status == "pass" for c in checks) and verdict(checks) == "pass"
    midi = next(c for c in checks if c.name == "midi_note_f1")
    assert midi.value == pytest.approx(0.70 / 0.80) and midi.threshold == release.MIDI_F1_RATIO


@pytest.mark.parametrize(
    "changes, failing",
    [
        ({"midi_to_audio": {"note_f1": 0.63}}, ("midi_note_f1", "midi_to_audio")),  # 0.7875 < 0.8
        ({"codec_reconstruction": {"note_f1": 0.71}}, ("codec_note_f1", "codec_reconstruction")),
        ({"audio_to_audio": {"timbre_id": 0.69}}, ("timbre_id", "audio_to_audio")),
        ({"midi_to_audio": {"timbre_id": 0.5}}, ("timbre_id", "midi_to_audio")),
        ({"audio_to_audio": {"note_f1": 0.04}}, ("beats_copies", "audio_to_audio")),  # below copy_timbre
        (
            {"audio_to_audio": {"mfcc_distance": 0.5}},
            ("beats_copies", "audio_to_audio"),
        ),  # ties copy_structure
        ({"copy_structure": {"timbre_id": 0.8}}, ("beats_copies", "audio_to_audio")),
    ],
)
def test_each_check_fails_alone(changes, failing):
    checks = evaluate_checks(table(**changes), n_families=12)
    failed = [key for key, status in statuses(checks).items() if status == "fail"]
    assert failed == [failing] and verdict(checks) == "fail"


def test_thresholds_are_inclusive():
    checks = evaluate_checks(table(midi_to_audio={"note_f1": 0.64, "timbre_id": 0.7}), n_families=10)
    result = statuses(checks)
    assert result[("midi_note_f1", "midi_to_audio")] == "pass"  # exactly 0.8 x ceiling
    assert result[("timbre_id", "midi_to_audio")] == "pass"  # exactly 0.7 over exactly 10 families


def test_unmeasurable_checks_are_not_applicable():
    few = statuses(evaluate_checks(table(), n_families=9))
    assert few[("timbre_id", "audio_to_audio")] == few[("timbre_id", "midi_to_audio")] == "n/a"
    no_f1 = {s: {k: v for k, v in m.items() if k != "note_f1"} for s, m in table().items()}
    checks = evaluate_checks(no_f1, n_families=12)
    result = statuses(checks)
    assert (
        result[("midi_note_f1", "midi_to_audio")]
        == result[("codec_note_f1", "codec_reconstruction")]
        == "n/a"
    )
    assert (
        result[("beats_copies", "audio_to_audio")] == "n/a"
    )  # the timbre side wins, the pitch side is unknown
    assert verdict(checks) == "incomplete"
    no_f1["audio_to_audio"]["mfcc_distance"] = 0.9  # a measured loss still fails
    assert statuses(evaluate_checks(no_f1, 12))[("beats_copies", "audio_to_audio")] == "fail"
    deaf = statuses(evaluate_checks(table(ground_truth={"note_f1": 0.0}), 12))
    assert deaf[("midi_note_f1", "midi_to_audio")] == "n/a"
    audio_only = table()
    del audio_only["midi_to_audio"]
    result = statuses(evaluate_checks(audio_only, 12))
    assert result[("midi_note_f1", "midi_to_audio")] == result[("timbre_id", "midi_to_audio")] == "n/a"


def test_a_second_codec_is_checked_too():
    checks = evaluate_checks(table(codec_reconstruction_midi={"note_f1": 0.5}), 12)
    assert statuses(checks)[("codec_note_f1", "codec_reconstruction_midi")] == "fail"
    assert (
        verdict([Check("x", "y", "pass", 1.0, 1.0, ""), Check("x", "z", "n/a", None, 1.0, "")])
        == "incomplete"
    )


@pytest.mark.parametrize("text", ["0", "-3", "abc", "2.5", ""])
def test_bad_case_counts_are_refused(text):
    with pytest.raises(BadInputError, match="--cases"):
        parse_cases(text)


def test_bad_options_are_refused():
    assert parse_cases(" 12 ") == 12
    with pytest.raises(BadInputError, match="cases"):
        ProtocolOptions(cases=0)
    with pytest.raises(BadInputError, match="clip_s"):
        ProtocolOptions(clip_s=0.2)
    with pytest.raises(BadInputError, match="audio model, a MIDI model or both"):
        run_protocol(None, None, ProtocolOptions(cases=1))
    midi = random_bundle(codec_preset("tiny"), diffusion_preset("tiny_midi"), seed=0)
    with pytest.raises(BadInputError, match="midi model, given as the audio model"):
        run_protocol(midi, None, ProtocolOptions(cases=1))
    assert METRICS  # the report's metric list drives the summary
