"""Ceiling of the timbre-ID metric of ``after eval``: its accuracy on the ground-truth renders.

Builds, for every seed, exactly what :func:`after.eval.protocol.run_protocol` builds (the held-out
sources split by piece, the triplets, the timbre-ID training renders of the other pieces, the
classifier fitted on programs and scored by family), then reports the family accuracy of the
trivial rows: ``ground_truth`` (the target render: the ceiling), ``copy_timbre`` (the style
render, same program and soundfont) and ``copy_structure`` (the content render, another family),
overall and per family, with the time of each step. No model is needed.

    .venv/bin/python benchmarks/bench_timbre_id.py [--seeds 0 1 2] [--cases 40]
        [--per-program 4] [--clip-s 8] [--sample-rate 44100]
"""

from __future__ import annotations

import argparse
import collections
import logging
import time

import numpy as np

log = logging.getLogger("bench_timbre_id")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--per-program", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--clip-s", type=float, default=None, help="default: the protocol's")
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from after.data.gm import family_of
    from after.eval.protocol import ProtocolOptions, _sources
    from after.eval.timbre_id import TimbreIdClassifier
    from after.eval.triplets import build_triplets, make_renderer, render_triplet, timbre_training_set

    rows = {"ground_truth": [], "copy_timbre": [], "copy_structure": []}
    parts = {"ground_truth": "target", "copy_timbre": "style", "copy_structure": "content"}
    by_family: dict[str, list[bool]] = collections.defaultdict(list)
    for seed in args.seeds:
        options = ProtocolOptions(cases=args.cases, seed=seed, transcription=False)
        per_program = args.per_program or options.timbre_per_program
        clip_s = args.clip_s or options.timbre_clip_s
        start = time.perf_counter()
        own, other = _sources(options)
        triplets = build_triplets(own, options.cases, seed, options.soundfonts, clip_s=options.clip_s)
        renderer = make_renderer(options.soundfonts, args.sample_rate)
        try:
            rendered = [render_triplet(t, renderer) for t in triplets]
            programs = sorted({t.target_program for t in triplets} | {t.content_program for t in triplets})
            begin = time.perf_counter()
            clips, labels = timbre_training_set(
                other, programs, renderer, options.soundfonts, per_program, clip_s, seed
            )
            render_s = time.perf_counter() - begin
        finally:
            renderer.close()
        begin = time.perf_counter()
        classifier = TimbreIdClassifier().fit(
            clips, labels, args.sample_rate, groups=[family_of(p) for p in labels]
        )
        fit_s = time.perf_counter() - begin
        families = [t.family for t in triplets]
        begin = time.perf_counter()
        scores = {}
        for row, part in parts.items():
            predicted = classifier.predict([getattr(r, part) for r in rendered], args.sample_rate)
            hits = [p == f for p, f in zip(predicted, families)]
            scores[row] = float(np.mean(hits))
            rows[row].append(scores[row])
            if row == "ground_truth":
                for family, hit in zip(families, hits):
                    by_family[family].append(hit)
        predict_s = (time.perf_counter() - begin) / (len(parts) * len(rendered))
        log.info(
            "seed %d: %d programs x %d renders of %.1f s | ground_truth %.3f copy_timbre %.3f "
            "copy_structure %.3f | training renders %.1f s, fit (features + classifier) %.1f s, "
            "%.0f ms per scored clip, total %.1f s",
            seed,
            len(programs),
            per_program,
            clip_s + 0.5,
            scores["ground_truth"],
            scores["copy_timbre"],
            scores["copy_structure"],
            render_s,
            fit_s,
            1000 * predict_s,
            time.perf_counter() - start,
        )
    log.info("mean over seeds %s:", args.seeds)
    for row, values in rows.items():
        log.info("  %-15s %.3f (per seed %s)", row, np.mean(values), " ".join(f"{v:.3f}" for v in values))
    log.info("ground_truth by family:")
    for family in sorted(by_family):
        hits = by_family[family]
        log.info("  %-21s %.2f (%d clips)", family, np.mean(hits), len(hits))


if __name__ == "__main__":
    main()
