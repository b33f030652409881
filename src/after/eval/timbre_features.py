"""Fixed timbre descriptors of a clip, summarised over short windows (the timbre-ID features).

Every frame (16 kHz, 1024-point Hann STFT, hop 256 = 16 ms) gets :data:`N_DESCRIPTORS` numbers:

- 40 log-mel band levels (dB relative to the clip's loudest frame, floored 80 dB below the
  loudest band);
- 19 first differences over time of MFCCs 1..19 (spectral change from frame to frame);
- log spectral centroid, bandwidth, flatness and 85 % roll-off;
- spectral contrast in 6 octave bands (dB between the loudest and the quietest fifth of the bins);
- envelope: frame level relative to the clip's loudest frame (dB), its first difference, and the
  rising and falling parts of that difference.

:func:`window_features` cuts the frames into windows (0.5 s, hop 0.25 s by default), keeps the
frames within ``gate_db`` of the clip's loudest frame (so silence between and after notes does not
count) and returns, for each window with enough such frames, the mean and standard deviation of
every descriptor plus the active fraction: ``[windows, 2 * N_DESCRIPTORS + 1]``. Levels are
relative to the clip's loudest frame, so the features depend neither on the clip's gain nor on how
much silence it holds.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.fft

from after.errors import BadInputError
from after.eval.features import (
    EVAL_SAMPLE_RATE,
    mel_filterbank,
    power_spectrogram,
    to_eval_rate,
)

N_FFT = 1024
HOP = 256  # 16 ms at 16 kHz
N_MELS = 40
N_MFCC = 20  # c0..c19 computed, c0 dropped
CONTRAST_EDGES_HZ = (0.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, EVAL_SAMPLE_RATE / 2 + 1)
CONTRAST_SHARE = 0.2  # loudest / quietest share of a band's bins
ROLLOFF = 0.85
N_DESCRIPTORS = N_MELS + (N_MFCC - 1) + 4 + (len(CONTRAST_EDGES_HZ) - 1) + 4
"""Descriptors per frame (73)."""

_FLOOR = 1e-10  # power floor before logs


def frame_descriptors(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors ``[N_DESCRIPTORS, frames]`` of mono 16 kHz ``[T]`` audio (see the module doc)
    and the level of every frame in dB ``[frames]``. The power is scaled so that the loudest frame
    holds a total of 1 before any floor or log, so nothing depends on the gain of the audio."""
    power = power_spectrogram(audio, N_FFT, HOP)  # [bins, frames]
    power = power / max(float(power.sum(axis=0).max()), 1e-30)  # loudest frame: total power 1
    mel = mel_filterbank(EVAL_SAMPLE_RATE, N_FFT, N_MELS) @ power  # [N_MELS, frames]
    frame_db = 10.0 * np.log10(np.maximum(mel.sum(axis=0), _FLOOR))  # [frames]
    mel_db = 10.0 * np.log10(np.maximum(mel, _FLOOR))
    mel_db = np.maximum(mel_db, mel_db.max() - 80.0) - frame_db.max()  # relative to the loudest frame
    cepstrum = scipy.fft.dct(mel_db, type=2, axis=0, norm="ortho")[1:N_MFCC]  # [19, frames]
    delta = np.diff(cepstrum, axis=1, prepend=cepstrum[:, :1])

    hz = np.linspace(0.0, EVAL_SAMPLE_RATE / 2, power.shape[0])  # [bins]
    floored = power + _FLOOR
    total = floored.sum(axis=0)  # [frames]
    centroid = (hz[:, None] * floored).sum(axis=0) / total
    bandwidth = np.sqrt(((hz[:, None] - centroid) ** 2 * floored).sum(axis=0) / total)
    flatness = np.exp(np.log(floored).mean(axis=0)) / floored.mean(axis=0)
    rolloff = hz[np.argmax(np.cumsum(floored, axis=0) >= ROLLOFF * total, axis=0)]
    spectral = np.stack([np.log1p(centroid), np.log1p(bandwidth), np.log(flatness), np.log1p(rolloff)])

    contrast = []
    for low, high in itertools.pairwise(CONTRAST_EDGES_HZ):
        band = np.sort(floored[(hz >= low) & (hz < high)], axis=0)  # [bins in band, frames]
        share = max(1, int(CONTRAST_SHARE * band.shape[0]))
        contrast.append(10.0 * np.log10(band[-share:].mean(axis=0) / band[:share].mean(axis=0)))

    level = frame_db - frame_db.max()
    change = np.diff(level, prepend=level[:1])
    envelope = np.stack([level, change, np.maximum(change, 0.0), np.minimum(change, 0.0)])
    descriptors = np.concatenate([mel_db, delta, spectral, np.stack(contrast), envelope])
    return descriptors, frame_db


def _window_sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sums of ``values [..., frames]`` over frames ``starts[i]:ends[i]``: ``[..., windows]``."""
    cumulative = np.concatenate([np.zeros((*values.shape[:-1], 1)), np.cumsum(values, axis=-1)], axis=-1)
    return cumulative[..., ends] - cumulative[..., starts]


def window_features(
    audio: np.ndarray,
    sample_rate: int,
    window_s: float = 0.5,
    hop_s: float = 0.25,
    gate_db: float = 40.0,
    min_active: float = 0.25,
) -> np.ndarray:
    """Timbre features ``[windows, 2 * N_DESCRIPTORS + 1]`` of one clip ``[T]`` at ``sample_rate``.

    Windows of ``window_s`` seconds every ``hop_s`` seconds; a frame is active when its level is
    within ``gate_db`` dB of the clip's loudest frame; windows with less than ``min_active`` of
    their frames active are skipped (if every window is, the whole clip is one window). Each row
    holds the mean and the standard deviation over the window's active frames of every descriptor
    of :func:`frame_descriptors`, then the active fraction.
    """
    signal = np.asarray(audio, dtype=np.float64)
    if signal.size == 0:
        raise BadInputError("timbre features of an empty clip")
    if not np.isfinite(signal).all():
        raise BadInputError("timbre features: the clip contains NaN or infinite samples")
    if not (window_s > 0 and hop_s > 0):
        raise BadInputError(f"window_s={window_s}, hop_s={hop_s}: expected positive seconds")
    descriptors, frame_db = frame_descriptors(to_eval_rate(signal, sample_rate))
    active = (frame_db > frame_db.max() - gate_db).astype(np.float64)  # [frames]
    n_frames = active.size
    width = max(1, round(window_s * EVAL_SAMPLE_RATE / HOP))
    step = max(1, round(hop_s * EVAL_SAMPLE_RATE / HOP))
    starts = np.arange(0, max(1, n_frames - width + 1), step)
    ends = np.minimum(starts + width, n_frames)
    counts = _window_sums(active, starts, ends)  # [windows]
    keep = counts >= min_active * (ends - starts)
    if not keep.any():
        starts, ends, counts = np.array([0]), np.array([n_frames]), np.array([active.sum()])
    else:
        starts, ends, counts = starts[keep], ends[keep], counts[keep]
    counts = np.maximum(counts, 1.0)
    mean = _window_sums(descriptors * active, starts, ends) / counts  # [N_DESCRIPTORS, windows]
    square = _window_sums(descriptors**2 * active, starts, ends) / counts
    std = np.sqrt(np.maximum(square - mean**2, 0.0))
    fraction = (counts / (ends - starts))[None]  # [1, windows]
    return np.concatenate([mean, std, fraction]).T  # [2 * N_DESCRIPTORS + 1, windows] -> [windows, F]
