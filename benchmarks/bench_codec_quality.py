"""Reconstruction quality of trained codecs on a dataset's held-out chunks.

For each codec (run folder, checkpoint, `.ts` file or released model folder) and each of the first
``--chunks`` chunks of the dataset's validation split (whole 6 s chunks, deterministic), the input is
encoded and decoded offline, the output aligned with the input by the codec's latency, and compared:

* output / input RMS (1 = same level);
* LSD in dB (``after.eval.metrics.lsd``: 16 kHz mel, RMS-normalised);
* multi-resolution STFT distance (spectral convergence + log-magnitude L1, FFT 2048..64, no weighting);
* correlation of the RMS envelopes (frames of one hop).

The row ``copy other chunk`` scores a different chunk of the same split against the input: the level
a codec that ignored its input could reach at best. Prints a markdown table.

    .venv/bin/python benchmarks/bench_codec_quality.py --data DATASET CODEC [CODEC ...] [--chunks 16]
"""

import argparse
import logging

import numpy as np
import torch

from after.codec.load import load_codec
from after.codec.losses import MultiResolutionSTFTLoss
from after.data.dataset import ChunkDataset
from after.eval.metrics import lsd

log = logging.getLogger("bench_codec_quality")
STFT_SIZES = (2048, 1024, 512, 256, 128, 64)


def envelope(audio: torch.Tensor, frame: int) -> np.ndarray:
    """RMS per frame of ``audio`` [T] -> [T // frame]."""
    frames = audio.shape[-1] // frame
    return audio[: frames * frame].reshape(frames, frame).pow(2).mean(-1).sqrt().numpy()


def scores(output: torch.Tensor, target: torch.Tensor, sample_rate: int, frame: int) -> dict[str, float]:
    """Quality of ``output`` against ``target`` (both [T], same length and alignment)."""
    distance = MultiResolutionSTFTLoss(STFT_SIZES)
    env_out, env_in = envelope(output, frame), envelope(target, frame)
    correlation = float(np.corrcoef(env_out, env_in)[0, 1]) if env_out.std() > 0 and env_in.std() > 0 else 0.0
    return {
        "rms_ratio": float(output.pow(2).mean().sqrt() / target.pow(2).mean().sqrt().clamp_min(1e-8)),
        "lsd_db": lsd(output.numpy(), target.numpy(), sample_rate),
        "mrstft": float(distance(output.view(1, 1, -1), target.view(1, 1, -1))),
        "envelope_correlation": correlation,
    }


def chunks(path: str, count: int) -> list[torch.Tensor]:
    """The first ``count`` whole chunks [T] of the validation split (fewer if the split is smaller)."""
    dataset = ChunkDataset(path, split="validation", deterministic=True)
    return [dataset[i]["audio"][0] for i in range(min(count, len(dataset)))]


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys()
    return {
        k: float(np.median([r[k] for r in rows]))
        if k == "rms_ratio"
        else float(np.mean([r[k] for r in rows]))
        for k in keys
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "codecs", nargs="+", help="codec run folders, checkpoints, .ts files or model folders"
    )
    parser.add_argument("--data", required=True, help="dataset folder made by `after prepare`")
    parser.add_argument("--chunks", type=int, default=16, help="validation chunks to score")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    inputs = chunks(args.data, args.chunks)
    if len(inputs) < 2:
        raise SystemExit(f"{args.data}: need at least 2 validation chunks, found {len(inputs)}")
    print("| codec | output / input RMS (median) | LSD dB | MR-STFT | envelope corr. |")
    print("|---|---|---|---|---|")
    for source in args.codecs:
        codec = load_codec(source)
        rows = []
        for audio in inputs:
            with torch.no_grad():
                output = codec.decode(codec.encode(audio.view(1, 1, -1)))[0, 0]
            delay = int(codec.latency)
            length = min(output.shape[-1] - delay, audio.shape[-1])
            rows.append(scores(output[delay : delay + length], audio[:length], codec.sample_rate, codec.hop))
        s = summarise(rows)
        print(
            f"| {source} | {s['rms_ratio']:.2f} | {s['lsd_db']:.1f} | {s['mrstft']:.2f} | "
            f"{s['envelope_correlation']:.2f} |"
        )
    sample_rate = ChunkDataset(args.data, split="validation").meta.sample_rate
    rows = [scores(inputs[(i + 1) % len(inputs)], x, sample_rate, 1024) for i, x in enumerate(inputs)]
    s = summarise(rows)
    print(
        f"| copy other chunk | {s['rms_ratio']:.2f} | {s['lsd_db']:.1f} | {s['mrstft']:.2f} | "
        f"{s['envelope_correlation']:.2f} |"
    )


if __name__ == "__main__":
    main()
