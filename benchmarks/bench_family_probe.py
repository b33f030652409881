"""Does a codec keep the instrument family, or only change how a classifier trained on clean audio
reads it? Family probes on the input, the latents and the reconstruction, and across them.

For ``after synth`` folders (``manifest.jsonl`` names every file's General-MIDI family), the first
``--seconds`` of each file is described three ways: the mean and standard deviation over frames of
its log-mel spectrogram (229 bands, FFT 4096, the codec's hop), of the codec's latent frames, and of
the log-mel spectrogram of the codec's reconstruction. A logistic regression
(``after.eval.timbre_id.LogisticRegression``) is fitted on one folder and scored on another:

* ``input -> input``, ``latent -> latent``, ``reconstruction -> reconstruction``: how much of the
  family each representation holds, for a classifier trained on that representation;
* ``input -> reconstruction``: a classifier trained on the renders applied to the codec's output,
  the situation of ``after eval``'s timbre-ID of codec reconstructions.

A reconstruction row close to the input row with a much lower cross row means the family is still
there and the artefacts, not the loss of the family, fool a classifier trained on clean audio.

    .venv/bin/python benchmarks/bench_family_probe.py CODEC --train TRAIN --test HELDOUT
"""

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from after.eval.timbre_id import LogisticRegression
from bench_pitch_probe import codec_views, open_codec


def statistics(features: np.ndarray) -> np.ndarray:
    """``[frames, F] -> [2 F]``: mean and standard deviation over frames."""
    return np.concatenate([features.mean(axis=0), features.std(axis=0)])


def describe(folder: Path, codec: torch.nn.Module, sample_rate: int, hop: int, seconds: float, limit: int):
    """(features per representation ``[files, F]``, families) of a folder's manifest."""
    rows: dict[str, list[np.ndarray]] = {}
    families = []
    with open(folder / "manifest.jsonl") as manifest:
        entries = [json.loads(line) for line in manifest if line.strip()][:limit]
    for entry in entries:
        audio, rate = sf.read(folder / entry["audio"], dtype="float32", always_2d=True)
        if rate != sample_rate:
            raise SystemExit(f"{folder / entry['audio']}: {rate} Hz, the codec runs at {sample_rate} Hz")
        frames = min(audio.shape[0], int(seconds * rate)) // hop
        if frames < 8:
            continue
        for name, features in codec_views(
            codec, audio.mean(axis=1)[: frames * hop], sample_rate, hop
        ).items():
            rows.setdefault(name, []).append(statistics(features))
        families.append(entry["family"])
    return {name: np.stack(parts) for name, parts in rows.items()}, families


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codec", help="codec run, checkpoint or model folder")
    parser.add_argument("--train", type=Path, required=True, help="`after synth` folder to fit the probes")
    parser.add_argument(
        "--test", type=Path, nargs="+", required=True, help="`after synth` folders to score them"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of each file")
    parser.add_argument("--train-files", type=int, default=300)
    parser.add_argument("--l2", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    codec, sample_rate, hop = open_codec(args.codec)
    train, train_families = describe(args.train, codec, sample_rate, hop, args.seconds, args.train_files)
    test: dict[str, list[np.ndarray]] = {}
    test_families: list[str] = []
    for folder in args.test:
        features, families = describe(folder, codec, sample_rate, hop, args.seconds, 10_000)
        for name, values in features.items():
            test.setdefault(name, []).append(values)
        test_families += families
    tested = {name: np.concatenate(parts) for name, parts in test.items()}
    print(f"{len(train_families)} training files, {len(test_families)} test files, "
          f"{len(set(test_families))} families; codec {args.codec}")  # fmt: skip
    print("| fitted on -> scored on | family accuracy |")
    print("|---|---|")
    for fitted, scored in (
        ("input", "input"),
        ("latent", "latent"),
        ("reconstruction", "reconstruction"),
        ("input", "reconstruction"),
    ):
        classifier = LogisticRegression(l2=args.l2).fit(train[fitted], train_families)
        accuracy = classifier.score(tested[scored], test_families)
        print(f"| {fitted} -> {scored} | {accuracy:.3f} |")


if __name__ == "__main__":
    main()
