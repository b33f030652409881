"""Where does a codec lose the notes? The same probe reads the piano roll from three representations.

For paired audio + MIDI files (``after synth`` output: ``X.flac`` beside ``X.mid``), a small
non-linear probe (an MLP on three neighbouring frames, trained with binary cross-entropy) learns the
88-key piano roll at the codec's frame rate (hop / sample rate; 46.4 ms at hop 1024 and 22.05 kHz)
from

* ``input``: the log-mel spectrogram of the audio itself (229 bands, FFT 4096, the codec's hop),
* ``latent``: the codec's latent frames,
* ``reconstruction``: the log-mel spectrogram of the codec's decoded audio,

trained on one folder and scored on another (frame-level precision, recall and F1 over every key
and frame, threshold 0.5; the same probe also marks note onsets, scored with one frame of
tolerance). The input row is what such a probe can read at this frame rate; a latent
far below it means the encoder drops pitch, a reconstruction far below the latent means the
decoder does.

    .venv/bin/after synth TRAIN --minutes 40 --seed 3 --split train --soundfonts FluidR3_GM TimGM6mb
    .venv/bin/after synth TEST --minutes 6 --seed 100 --split heldout --soundfonts FluidR3_GM TimGM6mb
    .venv/bin/python benchmarks/bench_pitch_probe.py CODEC --train TRAIN --test TEST
"""

import argparse
import functools
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from after.codec.load import load_codec
from after.data.midi import load_notes, piano_roll
from after.eval.features import mel_filterbank, power_spectrogram

LOWEST_KEY, KEYS = 21, 88
MEL_BANDS, MEL_FFT = 229, 4096
CONTEXT = 1  # frames on each side


def open_codec(path: str) -> tuple[torch.nn.Module, int, int]:
    """(codec module in eval mode, sample rate, hop) of a run, checkpoint or model folder."""
    handle = load_codec(path)
    return handle.module.eval(), handle.sample_rate, handle.hop


@functools.lru_cache(maxsize=4)
def _mel_filters(sample_rate: int) -> np.ndarray:
    return mel_filterbank(sample_rate, MEL_FFT, MEL_BANDS)


def log_mel(audio: np.ndarray, sample_rate: int, hop: int, frames: int) -> np.ndarray:
    """``[frames, MEL_BANDS]``: frame ``n`` centred on the middle of samples ``[n hop, (n + 1) hop)``."""
    power = power_spectrogram(audio[hop // 2 :], MEL_FFT, hop)  # frame k centred at k hop + hop / 2
    mel = np.log(_mel_filters(sample_rate) @ power + 1e-6).T[:frames]
    return np.pad(mel, ((0, frames - mel.shape[0]), (0, 0)))


def codec_views(
    codec: torch.nn.Module, audio: np.ndarray, sample_rate: int, hop: int
) -> dict[str, np.ndarray]:
    """The three representations of mono ``audio`` (a whole number of hops), each ``[frames, F]``:
    its log-mel, the codec's latents, and the log-mel of the codec's reconstruction (moved back by
    the codec's latency so that it lines up with the input)."""
    frames = audio.size // hop
    with torch.no_grad():
        z = codec.encode(torch.from_numpy(audio)[None, None])  # [1, D, frames]
        decoded = codec.decode(z).flatten().numpy()
    latency = int(getattr(codec, "latency", 0) or 0)
    decoded = np.pad(decoded[latency:], (0, latency))
    return {
        "input": log_mel(audio, sample_rate, hop, frames),
        "latent": z[0].T.numpy()[:frames],
        "reconstruction": log_mel(decoded, sample_rate, hop, frames),
    }


def f1_score(precision: float, recall: float) -> float:
    return 2 * precision * recall / max(precision + recall, 1e-9)


def with_context(features: np.ndarray) -> np.ndarray:
    """``[frames, F] -> [frames, (2 CONTEXT + 1) F]`` (edges repeated)."""
    padded = np.pad(features, ((CONTEXT, CONTEXT), (0, 0)), mode="edge")
    n = features.shape[0]
    return np.concatenate([padded[i : i + n] for i in range(2 * CONTEXT + 1)], axis=1)


def representations(
    folder: Path, codec: torch.nn.Module, sample_rate: int, hop: int, limit: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features per representation ``[frames, F]`` and the roll ``[frames, 2 * 88]`` of a folder
    (sustain of every key, then onset of every key)."""
    rows: dict[str, list[np.ndarray]] = {"input": [], "latent": [], "reconstruction": []}
    rolls = []
    for path in sorted(folder.rglob("*.flac"))[:limit]:
        midi = path.with_suffix(".mid")
        if not midi.exists():
            continue
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != sample_rate:
            raise SystemExit(f"{path}: {rate} Hz, the codec runs at {sample_rate} Hz")
        audio = audio.mean(axis=1)
        frames = audio.size // hop
        if frames < 4:
            continue
        for name, features in codec_views(codec, audio[: frames * hop], sample_rate, hop).items():
            rows[name].append(with_context(features))
        roll = piano_roll(load_notes(midi), sample_rate / hop, frames)  # [sustain / onset, 128, frames]
        keys = roll[:, LOWEST_KEY : LOWEST_KEY + KEYS] > 0  # [2, 88, frames]
        rolls.append(keys.transpose(2, 0, 1).reshape(frames, 2 * KEYS).astype(np.float32))
    if not rolls:
        raise SystemExit(f"{folder}: no audio file with a MIDI side-car")
    return {name: np.concatenate(parts) for name, parts in rows.items()}, np.concatenate(rolls)


def train_probe(
    features: np.ndarray, roll: np.ndarray, epochs: int, seed: int
) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    x = torch.from_numpy((features - mean) / std).float()
    y = torch.from_numpy(roll)
    probe = nn.Sequential(nn.Linear(x.shape[1], 256), nn.GELU(), nn.Linear(256, y.shape[1]))
    optimiser = torch.optim.Adam(probe.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0])
        for start in range(0, x.shape[0], 512):
            batch = order[start : start + 512]
            optimiser.zero_grad()
            loss_fn(probe(x[batch]), y[batch]).backward()
            optimiser.step()
    return probe.eval(), mean, std


def scores(probe: nn.Module, mean: np.ndarray, std: np.ndarray, features: np.ndarray, roll: np.ndarray):
    """(precision, recall, F1) of the sustain frames, then F1 of the onsets (one frame of
    tolerance either way, about the 50 ms of ``after eval``'s note matching)."""
    with torch.no_grad():
        predicted = probe(torch.from_numpy((features - mean) / std).float()).numpy() > 0.0
    truth = roll > 0.5
    sustain_hits = float(np.sum(predicted[:, :KEYS] & truth[:, :KEYS]))
    precision = sustain_hits / max(float(predicted[:, :KEYS].sum()), 1.0)
    recall = sustain_hits / max(float(truth[:, :KEYS].sum()), 1.0)
    f1 = f1_score(precision, recall)

    def widened(onsets: np.ndarray) -> np.ndarray:
        out = onsets.copy()
        out[1:] |= onsets[:-1]
        out[:-1] |= onsets[1:]
        return out

    onset_predicted, onset_truth = predicted[:, KEYS:], truth[:, KEYS:]
    onset_precision = float(np.sum(onset_predicted & widened(onset_truth))) / max(
        float(onset_predicted.sum()), 1.0
    )
    onset_recall = float(np.sum(widened(onset_predicted) & onset_truth)) / max(float(onset_truth.sum()), 1.0)
    onset_f1 = f1_score(onset_precision, onset_recall)
    return precision, recall, f1, onset_f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codec", help="codec run, checkpoint or model folder")
    parser.add_argument(
        "--train", type=Path, required=True, help="folder of audio + MIDI pairs to fit the probes"
    )
    parser.add_argument("--test", type=Path, required=True, help="folder of audio + MIDI pairs to score them")
    parser.add_argument("--train-files", type=int, default=80)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    codec, sample_rate, hop = open_codec(args.codec)
    train, train_roll = representations(args.train, codec, sample_rate, hop, args.train_files)
    test, test_roll = representations(args.test, codec, sample_rate, hop, 10_000)
    print(f"{train_roll.shape[0]} training frames, {test_roll.shape[0]} test frames "
          f"({100 * test_roll[:, :KEYS].mean():.1f} % of key-frames active); codec {args.codec}")  # fmt: skip
    print("| representation | features | precision | recall | frame F1 | onset F1 |")
    print("|---|---|---|---|---|---|")
    for name in ("input", "latent", "reconstruction"):
        probe, mean, std = train_probe(train[name], train_roll, args.epochs, seed=0)
        precision, recall, f1, onset_f1 = scores(probe, mean, std, test[name], test_roll)
        values = " | ".join(f"{v:.3f}" for v in (precision, recall, f1, onset_f1))
        print(f"| {name} | {train[name].shape[1]} | {values} |")


if __name__ == "__main__":
    main()
