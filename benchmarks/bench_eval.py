"""Cost of the evaluation protocol and the scores of its trivial systems.

Builds ``--triplets`` triplets from held-out ``after synth`` material, renders them with
FluidSynth, scores copy-structure / copy-timbre / ground-truth (LSD, MFCC distance, note and
onset F1 through transcription, timbre-ID), and prints the time per step plus the report tables
(the ground-truth note F1 is the transcription ceiling per family).

    .venv/bin/python benchmarks/bench_eval.py [--triplets 28] [--sample-rate 44100] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=28)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--clip-s", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for report.md and plots (default: a temp folder)")
    args = parser.parse_args()

    from after.data.gm import family_of
    from after.data.transcription import transcribe
    from after.eval import report
    from after.eval.metrics import lsd, mfcc_distance
    from after.eval.timbre_id import TimbreIdClassifier
    from after.eval.triplets import (
        build_triplets,
        heldout_sources,
        make_renderer,
        render_triplet,
        timbre_training_set,
    )

    start = time.perf_counter()
    sources = heldout_sources(40, seed=args.seed)
    triplet_sources, id_sources = sources[: len(sources) // 2], sources[len(sources) // 2 :]
    triplets = build_triplets(triplet_sources, args.triplets, seed=args.seed, clip_s=args.clip_s)
    print(f"sources: {len(sources)} held-out stems, triplets built in {time.perf_counter() - start:.2f} s")

    renderer = make_renderer(
        ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"), args.sample_rate
    )
    start = time.perf_counter()
    rendered = [render_triplet(t, renderer) for t in triplets]
    render_s = time.perf_counter() - start
    audio_s = sum(3 * t.duration_s for t in triplets)
    print(f"render: {render_s / len(triplets):.3f} s per triplet ({audio_s / render_s:.0f}x real time)")

    programs = sorted({t.target_program for t in triplets})
    start = time.perf_counter()
    clips, labels = timbre_training_set(id_sources, programs, renderer, per_program=6, seed=args.seed)
    classifier = TimbreIdClassifier().fit(clips, labels, args.sample_rate)
    family_classifier = TimbreIdClassifier().fit(clips, [family_of(p) for p in labels], args.sample_rate)
    print(f"timbre-ID training: {len(programs)} programs x 6 clips in {time.perf_counter() - start:.1f} s")

    sample = rendered[0]
    transcribe(sample.target, args.sample_rate)  # load the ONNX session
    for name, step in (
        ("lsd", lambda: lsd(sample.content, sample.target, args.sample_rate)),
        ("mfcc_distance", lambda: mfcc_distance(sample.content, sample.target, args.sample_rate)),
        ("transcribe", lambda: transcribe(sample.content, args.sample_rate)),
    ):
        times = []
        for _ in range(3):
            begin = time.perf_counter()
            step()
            times.append(time.perf_counter() - begin)
        seconds = float(np.median(times))
        print(f"{name}: {seconds * 1000:.0f} ms per {sample.triplet.duration_s:.1f} s clip")

    start = time.perf_counter()
    rows = report.score_systems(rendered, timbre_classifier=classifier)
    score_s = time.perf_counter() - start
    family_rows = report.score_systems(
        rendered, transcribe=False, timbre_classifier=family_classifier, timbre_by="family"
    )
    for row, family_row in zip(rows, family_rows):
        row["timbre_id_family"] = family_row["timbre_id"]
    print(f"scoring 3 systems: {score_s / len(rendered):.2f} s per triplet")
    fd = report.fd_mfcc_by_system(rendered)
    summary = report.summarise(rows, metrics=(*report.METRICS, "timbre_id_family"), seed=args.seed)
    out = args.out or tempfile.mkdtemp(prefix="after-eval-")
    path = report.write_report(summary, out, fd=fd)
    print()
    print(report.markdown_table(summary, fd=fd))
    print(report.family_table(summary, "note_f1"))
    print(report.family_table(summary, "timbre_id"))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
