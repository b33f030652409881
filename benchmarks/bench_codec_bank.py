"""What does a codec's oscillator bank add to its reconstructions? Spread of the bank and its cost.

For each codec (run folder, checkpoint or released model folder) every clip of a folder (the first
``--seconds`` of each) is encoded once and decoded several ways, and the reconstruction is compared
with the clip by the evaluation's LSD (dB) and MFCC distance (``after.eval.metrics``):

* ``as is``: the codec's own decode (convolutional decoder + bank);
* ``no bank``: the convolutional decoder alone (what the bank is added to);
* ``gate R dB``: the bank with every oscillator more than R dB below the frame's loudest muted;
* ``floor A``: the bank with every amplitude below A muted.

Also reported, for a codec with a bank: how many oscillators per latent frame lie within 20 / 40 /
60 dB of the frame's loudest (a bank that plays the partials of a few notes has a few dozen within
20 dB; one that fills the spectrum has hundreds within 40 dB).

Clips: any folder of audio, e.g. held-out renders that no codec trained on:

    .venv/bin/after synth HELDOUT --minutes 6 --seed 100 --split heldout --soundfonts FluidR3_GM TimGM6mb
    .venv/bin/python benchmarks/bench_codec_bank.py CODEC [CODEC ...] --clips HELDOUT [--count 20]
"""

import argparse
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from after.codec.load import load_codec
from after.eval.metrics import lsd, mfcc_distance

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
GATES_DB = (40.0, 30.0, 20.0)
FLOORS = (3e-3,)


def read_clips(folder: Path, seconds: float, count: int) -> list[tuple[np.ndarray, int]]:
    """Up to ``count`` mono clips ``[T]`` (first ``seconds`` of each file, files of 1 s or more)."""
    clips = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if audio.size >= rate:
            clips.append((audio[: int(seconds * rate)], rate))
        if len(clips) == count:
            break
    return clips


def decodes(
    codec: torch.nn.Module, z: torch.Tensor, amplitude: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Every decode variant of ``z [1, D, L]`` given the bank's ``amplitude [1, N, L]`` (None for a
    codec without a bank): name -> audio ``[1, 1, L * hop]``."""
    conv = codec.decode_convolutional(z)
    if amplitude is None:
        return {"as is": conv}
    bank = codec.decoder.oscillators
    peak = amplitude.amax(dim=1, keepdim=True)
    variants = {"as is": conv + bank.synthesize(amplitude), "no bank": conv}
    for gate in GATES_DB:
        kept = amplitude * (amplitude >= peak * 10 ** (-gate / 20))
        variants[f"gate {gate:.0f} dB"] = conv + bank.synthesize(kept)
    for floor in FLOORS:
        variants[f"floor {floor:g}"] = conv + bank.synthesize(amplitude * (amplitude >= floor))
    return variants


def spread(amplitude: torch.Tensor) -> list[float]:
    """Mean number of oscillators per frame within 20 / 40 / 60 dB of the frame's loudest, from
    the bank's ``amplitude [1, N, L]``."""
    relative = amplitude / amplitude.amax(dim=1, keepdim=True).clamp_min(1e-12)
    return [float((relative > 10 ** (-db / 20)).float().sum(dim=1).mean()) for db in (20, 40, 60)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codecs", nargs="+", help="codec runs, checkpoints or model folders")
    parser.add_argument("--clips", type=Path, required=True, help="folder of audio clips")
    parser.add_argument("--count", type=int, default=20, help="clips to use")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of each clip")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    clips = read_clips(args.clips, args.seconds, args.count)
    if not clips:
        raise SystemExit(f"{args.clips}: no audio clip of 1 s or more")

    print(f"{len(clips)} clips of up to {args.seconds:g} s from {args.clips}")
    print("| codec | decode | LSD dB | MFCC dist | oscillators within 20 / 40 / 60 dB |")
    print("|---|---|---|---|---|")
    for path in args.codecs:
        codec = load_codec(path).module.eval()
        scores: dict[str, list[tuple[float, float]]] = {}
        spreads = []
        for audio, rate in clips:
            with torch.no_grad():
                z = codec.encode(torch.from_numpy(audio)[None, None])
                amplitude = codec.decoder.oscillators.amplitudes(z) if codec.has_oscillators else None
                if amplitude is not None:
                    spreads.append(spread(amplitude))
                for name, output in decodes(codec, z, amplitude).items():
                    y = output.flatten().numpy()
                    n = min(y.size, audio.size)
                    pair = (lsd(y[:n], audio[:n], rate), mfcc_distance(y[:n], audio[:n], rate))
                    scores.setdefault(name, []).append(pair)
        mean_spread = " / ".join(f"{s:.0f}" for s in np.mean(spreads, axis=0)) if spreads else ""
        for name, rows in scores.items():
            values = np.mean(rows, axis=0)
            shown = mean_spread if name == "as is" else ""
            print(f"| {path} | {name} | {values[0]:.2f} | {values[1]:.4f} | {shown} |")


if __name__ == "__main__":
    main()
