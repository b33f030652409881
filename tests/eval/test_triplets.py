"""The triplet protocol: held-out sources, determinism, shared notes/instruments, scoring, report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from eval_renders import melody

from after.data import transcription
from after.data.gm import family_of
from after.data.instruments import eligible_programs, program_range
from after.data.synth import split_of
from after.errors import BadInputError, DatasetError
from after.eval import report
from after.eval.metrics import lsd
from after.eval.timbre_id import TimbreIdClassifier
from after.eval.triplets import (
    DEFAULT_SOUNDFONTS,
    EvalSource,
    build_triplets,
    heldout_sources,
    render_triplet,
    timbre_training_notes,
    timbre_training_set,
)


@pytest.fixture(scope="module")
def sources():
    return heldout_sources(10, seed=0)


def _key(note):
    return (note.pitch, note.velocity, round(note.start, 9), round(note.end, 9))


def test_heldout_sources_come_only_from_heldout_pieces(sources):
    assert len(sources) >= 10
    for source in sources:
        piece_key = source.key.rsplit(":", 1)[0]
        assert source.split == "heldout" == split_of(piece_key)
    assert heldout_sources(10, seed=0) == sources


def test_triplets_are_deterministic_for_a_seed(sources):
    first = build_triplets(sources, 16, seed=4)
    assert build_triplets(sources, 16, seed=4) == first
    assert build_triplets(sources, 16, seed=5) != first


def test_triplet_invariants(sources):
    triplets = build_triplets(sources, 28, seed=2)
    assert len({t.family for t in triplets}) >= 10
    keys = {s.key for s in sources}
    for t in triplets:
        assert t.content_key != t.style_key and {t.content_key, t.style_key} <= keys
        assert family_of(t.content_program) != family_of(t.target_program) == t.family
        # content and target: the same notes; style: another source, same program as the target
        assert [_key(n) for n in t.content_notes] == [_key(n) for n in t.target_notes]
        assert {n.program for n in t.content_notes} == {t.content_program}
        assert {n.program for n in t.target_notes} == {n.program for n in t.style_notes} == {t.target_program}
        assert len(t.content_notes) >= 3 and len(t.style_notes) >= 3
        assert max(n.end for n in t.content_notes + t.style_notes) < t.duration_s


def test_training_sources_are_refused(sources):
    leaked = [*sources, EvalSource("procedural:train-piece:melody", tuple(melody(0)), split="train")]
    with pytest.raises(BadInputError, match="held out"):
        build_triplets(leaked, 4)
    with pytest.raises(DatasetError, match="at least 2"):
        build_triplets(sources[:1], 4)


def test_timbre_training_renders_play_where_the_triplets_play_the_program(sources):
    programs = [0, 33, 73, 105]  # piano, bass, flute, banjo
    renders = timbre_training_notes(sources, programs, per_program=4, clip_s=3.0, seed=1)
    assert [program for _, _, program in renders] == [p for p in programs for _ in range(4)]
    assert [sf for _, sf, _ in renders[:4]] == [*DEFAULT_SOUNDFONTS, *DEFAULT_SOUNDFONTS]
    assert timbre_training_notes(sources, programs, per_program=4, clip_s=3.0, seed=1) == renders
    for notes, _, program in renders:
        assert len(notes) >= 3 and {n.program for n in notes} == {program}
        assert max(n.end for n in notes) <= 3.0 + 0.1 + 1e-9
        pitches = [n.pitch for n in notes]
        # inside the range the program shares with some program of another family (a content's)
        shared = []
        for other in eligible_programs():
            if family_of(other) != family_of(program):
                (a, b), (c, d) = program_range(program), program_range(other)
                if min(b, d) - max(a, c) >= 12:
                    shared.append((max(a, c), min(b, d)))
        assert any(low <= min(pitches) and max(pitches) <= high for low, high in shared)


def test_rendered_triplet_shares_soundfont_between_style_and_target(sources, renderer):
    triplet = build_triplets(sources, 1, seed=7, clip_s=3.0)[0]
    rendered = render_triplet(triplet, renderer)
    lengths = {rendered.content.size, rendered.style.size, rendered.target.size}
    assert lengths == {round(triplet.duration_s * renderer.sample_rate)}
    assert lsd(rendered.target, rendered.target, renderer.sample_rate) == 0.0
    # the same notes through another soundfont sound different from the target
    other = next(s for s in DEFAULT_SOUNDFONTS if s != triplet.target_soundfont)
    swapped = dataclasses.replace(triplet, target_soundfont=other)
    again = render_triplet(triplet, renderer)
    np.testing.assert_array_equal(again.target, rendered.target)  # rendering is deterministic
    assert not np.allclose(render_triplet(swapped, renderer).target, rendered.target)


def test_protocol_rows_summary_and_report(sources, renderer, tmp_path):
    use_transcription = transcription.transcription_available()
    triplets = build_triplets(sources, 4, seed=3, clip_s=3.0)
    rendered = [render_triplet(t, renderer) for t in triplets]
    programs = sorted({t.target_program for t in triplets} | {t.content_program for t in triplets})
    clips, labels = timbre_training_set(sources, programs, renderer, per_program=2, clip_s=2.0)
    classifier = TimbreIdClassifier().fit(clips, labels, renderer.sample_rate)
    rows = report.score_systems(
        rendered,
        {"silence": lambda r: np.zeros_like(r.target)},
        transcribe=use_transcription,
        timbre_classifier=classifier,
    )
    assert len(rows) == 4 * 4
    by_system = {}
    for row in rows:
        by_system.setdefault(row["system"], []).append(row)
    assert all(
        r["lsd"] == 0.0 and r["mfcc_distance"] == pytest.approx(0.0, abs=1e-9)
        for r in by_system["ground_truth"]
    )
    mean = {
        s: {m: np.mean([r[m] for r in rs]) for m in rs[0] if m in report.METRICS}
        for s, rs in by_system.items()
    }
    assert mean["copy_structure"]["lsd"] > 0.0 and mean["copy_timbre"]["lsd"] > 0.0
    assert mean["ground_truth"]["timbre_id"] >= mean["copy_structure"]["timbre_id"]
    if use_transcription:
        assert mean["ground_truth"]["note_f1"] > mean["copy_timbre"]["note_f1"]
        assert mean["copy_timbre"]["note_f1"] < 0.3
    summary = report.summarise(rows, n_boot=200)
    overall = [s for s in summary if s.family == report.ALL_FAMILIES and s.system == "copy_structure"]
    assert all(s.low <= s.mean <= s.high and s.n == 4 for s in overall)
    fd = report.fd_mfcc_by_system(rendered)
    assert fd["ground_truth"] == pytest.approx(0.0, abs=1e-6)
    assert fd["copy_timbre"] > 0.0 and fd["copy_structure"] > 0.0
    path = report.write_report(summary, tmp_path, fd=fd)
    text = path.read_text()
    assert "| silence |" in text and "| ground_truth |" in text and "lsd ↓" in text
    assert text.index("| silence |") < text.index("| copy_structure |")  # models first
    assert (tmp_path / "lsd.png").stat().st_size > 1000
