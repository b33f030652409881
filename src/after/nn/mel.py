"""Frequency scales for spectral features and losses (numpy): Slaney-style mel conversions and
filterbank (eval features) and a log-frequency filterbank, 12 filters per octave (the codec's
log-frequency loss)."""

from __future__ import annotations

import functools

import numpy as np


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Frequencies in Hz -> Slaney mels (linear below 1 kHz, logarithmic above)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Slaney mels -> frequencies in Hz (inverse of :func:`hz_to_mel`)."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3.0)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-style triangular mel filters from 0 Hz to Nyquist: ``[n_mels, n_fft // 2 + 1]``."""
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_mels + 2))
    widths = np.diff(edges_hz)  # [n_mels + 1]
    slopes = edges_hz[:, None] - fft_hz[None, :]  # [n_mels + 2, bins]
    rising = -slopes[:-2] / widths[:-1, None]
    falling = slopes[2:] / widths[1:, None]
    bank = np.maximum(0.0, np.minimum(rising, falling))  # [n_mels, bins]
    bank *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # unit area per triangle
    bank.setflags(write=False)
    return bank


@functools.lru_cache(maxsize=16)
def log_frequency_filterbank(
    sample_rate: int, n_fft: int, f_min: float, bins_per_octave: int = 12
) -> np.ndarray:
    """Triangular filters with centres ``f_min * 2**(k / bins_per_octave)`` up to Nyquist:
    ``[filters, n_fft // 2 + 1]``, each summing to 1 (a weighted mean of the bins it covers).

    A filter reaches from its lower to its upper neighbour's centre, and at least one FFT bin
    (``sample_rate / n_fft`` Hz) to either side, so that none is empty where the semitone spacing
    falls below the bin spacing. Every octave gets the same number of filters (constant Q), as a
    pitch tracker sees them.
    """
    if f_min <= 0 or f_min >= sample_rate / 2 or bins_per_octave < 1:
        raise ValueError(f"need 0 < f_min < Nyquist and bins_per_octave >= 1, got {f_min}, {bins_per_octave}")
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    spacing = sample_rate / n_fft  # Hz per bin
    count = int(np.floor(bins_per_octave * np.log2((sample_rate / 2.0) / f_min)))
    centres = f_min * 2.0 ** (np.arange(-1, count + 1) / bins_per_octave)  # with both outer neighbours
    lower = np.minimum(centres[:-2], centres[1:-1] - spacing)  # [filters]
    upper = np.maximum(centres[2:], centres[1:-1] + spacing)
    middle = centres[1:-1]
    rising = (fft_hz[None, :] - lower[:, None]) / (middle - lower)[:, None]
    falling = (upper[:, None] - fft_hz[None, :]) / (upper - middle)[:, None]
    bank = np.maximum(0.0, np.minimum(rising, falling))  # [filters, bins]
    bank /= bank.sum(axis=1, keepdims=True)
    bank.setflags(write=False)
    return bank
