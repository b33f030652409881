"""Spectral features for evaluation: STFT power, mel spectrogram, dB and MFCC, in numpy.

No librosa: the STFT is framed with numpy, the mel filter bank is the Slaney-style one (mel scale
linear below 1 kHz and logarithmic above; each triangle normalised to unit area), MFCCs are the
orthonormal DCT-II of the mel spectrogram in dB. Audio is mono float ``[T]`` (a ``[1, T]`` array
is accepted); spectrograms are ``[bins, frames]``; frequencies in Hz, levels in dB.

Frames are centred: frame ``k`` is centred on sample ``k * hop`` of the signal, which is
reflect-padded by ``n_fft // 2`` on both sides (zero-padded when it is too short to reflect).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from after.data.audio import as_mono, resample
from after.nn.mel import mel_filterbank

EVAL_SAMPLE_RATE = 16_000
"""Rate (Hz) at which every spectral metric is computed."""

TOP_DB = 80.0
"""Dynamic range kept by :func:`power_to_db`: levels more than this below the peak are raised to it."""

_AMIN = 1e-10  # power floor before the log


def to_eval_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float64 ``[T']`` at :data:`EVAL_SAMPLE_RATE` (soxr HQ resampling)."""
    mono = as_mono(audio)
    return np.asarray(resample(mono, int(sample_rate), EVAL_SAMPLE_RATE), dtype=np.float64)


def rms_normalise(audio: np.ndarray, target_rms: float = 0.1) -> np.ndarray:
    """Scale ``[T]`` audio to RMS ``target_rms``; silence is returned unchanged."""
    rms = float(np.sqrt(np.mean(np.square(audio))))
    return audio if rms <= 0.0 else audio * (target_rms / rms)


def power_spectrogram(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred Hann-window STFT power ``|X|^2`` of mono ``[T]`` audio: ``[n_fft // 2 + 1, frames]``.

    ``frames = 1 + T // hop``.
    """
    audio = as_mono(audio)
    pad = n_fft // 2
    mode = "reflect" if audio.size > pad else "constant"
    padded = np.pad(audio, pad, mode=mode)
    n_frames = 1 + audio.size // hop
    needed = (n_frames - 1) * hop + n_fft
    if padded.size < needed:
        padded = np.pad(padded, (0, needed - padded.size))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]  # [frames, n_fft]
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    spectrum = scipy.fft.rfft(frames * window, axis=1)  # [frames, bins]
    return (np.abs(spectrum) ** 2).T  # [frames, bins] -> [bins, frames]


def mel_spectrogram(
    audio: np.ndarray, sample_rate: int, n_fft: int = 2048, hop: int = 512, n_mels: int = 128
) -> np.ndarray:
    """Mel power spectrogram of mono ``[T]`` audio already at ``sample_rate``: ``[n_mels, frames]``."""
    return mel_filterbank(int(sample_rate), n_fft, n_mels) @ power_spectrogram(audio, n_fft, hop)


def power_to_db(power: np.ndarray, top_db: float | None = TOP_DB) -> np.ndarray:
    """``10 log10(max(power, 1e-10))``, then floored at ``max - top_db`` (no floor if None)."""
    db = 10.0 * np.log10(np.maximum(power, _AMIN))
    if top_db is not None and db.size:
        db = np.maximum(db, db.max() - top_db)
    return db


def mfcc(
    audio: np.ndarray,
    sample_rate: int,
    n_mfcc: int = 13,
    n_fft: int = 2048,
    hop: int = 500,
    n_mels: int = 128,
) -> np.ndarray:
    """MFCCs ``[n_mfcc, frames]`` of mono ``[T]`` audio at ``sample_rate`` (c0 included, row 0).

    Orthonormal DCT-II over the mel axis of the mel power spectrogram in dB (80 dB range).
    """
    log_mel = power_to_db(mel_spectrogram(audio, sample_rate, n_fft, hop, n_mels))
    return scipy.fft.dct(log_mel, type=2, axis=0, norm="ortho")[:n_mfcc]
