"""Do a codec's reconstructions keep the pitch of steady notes? Harmonic test tones in, spectra out.

For each codec (run folder, checkpoint, `.ts` file or released model folder) and each test note
(MIDI 28 = E1, 41 Hz, up to 81 = A5, 880 Hz), a 2-s tone of five harmonics (amplitudes 1/k, 50 ms
fades) is encoded and decoded offline, and the steady middle second of input and output is compared
on a 1-Hz grid (Hann window):

* ``partials dB``: mean over the five harmonics of output minus input level, each read as the peak
  within 2 Hz of the harmonic (0 = kept; -20 = lost);
* ``on pitch``: share of the output's energy between 25 Hz and 6 kHz that lies within 3 Hz of a
  harmonic (the input's is about 0.99): energy elsewhere is what a transcriber reads as wrong or
  extra notes;
* ``sidebands dB``: level at harmonic +- half the latent frame rate minus level at the harmonic; a
  decoder whose phase jumps at every latent frame moves the energy of each partial into these
  sidebands (positive values), a smear of +-2 semitones at 90 Hz.

    .venv/bin/python benchmarks/bench_codec_tones.py CODEC [CODEC ...] [--notes 28 33 40 45 ...]
"""

import argparse
import logging

import numpy as np
import torch

from after.codec.load import load_codec
from after.runtime.bundle import is_released_model, load_bundle
from after.runtime.pipeline import offline_mode

log = logging.getLogger("bench_codec_tones")
HARMONICS = 5


def test_tone(f0: float, sample_rate: int, seconds: float = 2.0) -> np.ndarray:
    """Five harmonics of ``f0`` Hz (amplitude 0.3 / k), 50 ms linear fades: ``[T]`` float32."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = sum(0.3 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, HARMONICS + 1))
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    return (tone * fade).astype(np.float32)


def spectrum(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Magnitude of the middle second on a 1-Hz grid: ``[sample_rate // 2 + 1]``."""
    start = (audio.size - sample_rate) // 2
    segment = audio[start : start + sample_rate]
    return np.abs(np.fft.rfft(segment * np.hanning(segment.size), sample_rate))


def level_db(magnitude: np.ndarray, hz: float, width: int = 2) -> float:
    """Peak level in dB within ``width`` Hz of ``hz``."""
    centre = round(hz)
    return float(20 * np.log10(magnitude[max(0, centre - width) : centre + width + 1].max() + 1e-9))


def open_codec(path: str) -> tuple[torch.nn.Module, int, int]:
    """(codec module in eval mode, sample rate, hop) of a run, checkpoint, `.ts` file or model folder."""
    if is_released_model(path):
        bundle = load_bundle(path)
        return bundle.codec.eval(), bundle.sample_rate, bundle.hop
    handle = load_codec(path)
    return handle.module.eval(), handle.sample_rate, handle.hop


def tone_scores(codec: torch.nn.Module, hop: int, f0: float, sample_rate: int) -> dict[str, float]:
    """Scores of one test note (see the module docstring)."""
    tone = test_tone(f0, sample_rate)
    frame_rate = sample_rate / hop
    padded = np.pad(tone, (0, (-tone.size) % hop))
    with torch.no_grad(), offline_mode(codec):
        z = codec.encode(torch.from_numpy(padded)[None, None])  # [1, D, L]
        out = codec.decode(z)[0, 0].numpy()[: tone.size]  # [1, 1, T] -> [T]
    heard, played = spectrum(out, sample_rate), spectrum(tone, sample_rate)
    partials = [f0 * k for k in range(1, HARMONICS + 1)]
    power = heard**2
    band = np.zeros_like(power, dtype=bool)
    band[25 : min(6000, band.size)] = True
    near = np.zeros_like(band)
    for hz in partials:
        near[max(0, int(hz) - 3) : int(hz) + 4] = True
    sidebands = [
        max(level_db(heard, hz - frame_rate / 2), level_db(heard, hz + frame_rate / 2)) - level_db(heard, hz)
        for hz in partials
    ]
    return {
        "partials_db": float(np.mean([level_db(heard, hz) - level_db(played, hz) for hz in partials])),
        "on_pitch": float(power[band & near].sum() / max(power[band].sum(), 1e-12)),
        "sidebands_db": float(np.mean(sidebands)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codecs", nargs="+", help="codec runs, checkpoints, .ts files or model folders")
    parser.add_argument("--notes", type=int, nargs="+", default=[28, 33, 40, 45, 52, 57, 64, 69, 76, 81])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    print("| codec | note | f0 Hz | partials dB | on pitch | sidebands dB |")
    print("|---|---|---|---|---|---|")
    for path in args.codecs:
        codec, sample_rate, hop = open_codec(path)
        rows = []
        for note in args.notes:
            f0 = 440.0 * 2 ** ((note - 69) / 12)
            row = tone_scores(codec, hop, f0, sample_rate)
            rows.append(row)
            print(f"| {path} | {note} | {f0:.0f} | {row['partials_db']:.1f} | {row['on_pitch']:.2f} | "
                  f"{row['sidebands_db']:+.1f} |")  # fmt: skip
        mean = {key: np.mean([row[key] for row in rows]) for key in rows[0]}
        print(f"| {path} | mean | | {mean['partials_db']:.1f} | {mean['on_pitch']:.2f} | "
              f"{mean['sidebands_db']:+.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
