"""Evaluation metrics for timbre/structure transfer (definitions in the project's metric notes).

Distances (lower is better):
- :func:`lsd`: log-spectral distance in dB between mel spectrograms at 16 kHz.
- :func:`mfcc_distance`: cosine distance between time-averaged MFCCs 1..12 at 16 kHz.
- :func:`fd_mfcc`: Fréchet distance between Gaussians fitted to the frame-wise MFCCs of two sets
  (a substitute for embedding-based Fréchet distances; never comparable to published FAD figures).
- :func:`pitch_jaccard`: frame-wise multi-pitch Jaccard distance (needs Essentia; optional).

Scores (higher is better): :func:`note_f1` and :func:`onset_f1` compare transcribed notes to the
structure MIDI with mir_eval (50 ms onset tolerance, offsets ignored).

:func:`bootstrap_ci` gives percentile-bootstrap confidence intervals of a mean.
Audio arguments are ``[T]`` or ``[C, T]`` float arrays at ``sample_rate`` Hz (channels averaged).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
import scipy.linalg

from after.data.midi import Note
from after.errors import AfterError, BadInputError
from after.eval.features import (
    EVAL_SAMPLE_RATE,
    mel_spectrogram,
    mfcc,
    power_to_db,
    rms_normalise,
    to_eval_rate,
)

ONSET_TOLERANCE_S = 0.05
"""Onset matching window (seconds) for :func:`note_f1` and :func:`onset_f1`."""

MFCC_COEFFICIENTS = 13
"""MFCCs computed for timbre metrics; c0 (loudness) is dropped, leaving 12."""

MFCC_HOP = 500  # samples at 16 kHz (31.25 ms)


def _common_length(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    length = min(a.size, b.size)
    return a[:length], b[:length]


def lsd(output: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Log-spectral distance in dB between two signals (0 for identical signals).

    Both are resampled to 16 kHz, cut to the shorter length and RMS-normalised; mel power
    spectrograms (n_fft 2048, hop 512, 128 mels) are taken in dB (80 dB range below each one's
    peak); the result is the mean over mel bins of the RMS over frames of the difference.
    """
    out, ref = _common_length(to_eval_rate(output, sample_rate), to_eval_rate(reference, sample_rate))
    out_db = power_to_db(mel_spectrogram(rms_normalise(out), EVAL_SAMPLE_RATE, 2048, 512, 128))
    ref_db = power_to_db(mel_spectrogram(rms_normalise(ref), EVAL_SAMPLE_RATE, 2048, 512, 128))
    return float(np.mean(np.sqrt(np.mean(np.square(out_db - ref_db), axis=1))))


def frame_mfccs(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Frame-wise MFCCs 1..12 ``[12, frames]`` at 16 kHz, hop 500 samples (c0 dropped)."""
    mono = rms_normalise(to_eval_rate(audio, sample_rate))
    return mfcc(mono, EVAL_SAMPLE_RATE, n_mfcc=MFCC_COEFFICIENTS, hop=MFCC_HOP)[1:]


def mfcc_distance(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Cosine distance (0..2) between the time-averaged MFCCs 1..12 of two signals."""
    mean_a = frame_mfccs(a, sample_rate).mean(axis=1)
    mean_b = frame_mfccs(b, sample_rate).mean(axis=1)
    norm = float(np.linalg.norm(mean_a) * np.linalg.norm(mean_b))
    if norm == 0.0:
        return 0.0 if np.allclose(mean_a, mean_b) else 1.0
    return float(max(0.0, 1.0 - np.dot(mean_a, mean_b) / norm))


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians ``N(mean_a, cov_a)`` and ``N(mean_b, cov_b)``:
    ``|mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2))``."""
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # near-singular product: regularise and retry
        eps = 1e-6 * np.eye(cov_a.shape[0])
        root = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = np.real(root)
    value = float(np.sum(np.square(mean_a - mean_b)) + np.trace(cov_a + cov_b - 2.0 * root))
    return max(value, 0.0)


def fd_mfcc(set_a: Sequence[np.ndarray], set_b: Sequence[np.ndarray], sample_rate: int) -> float:
    """Fréchet distance between Gaussians fitted to the pooled frame-wise MFCCs 1..12 of two sets
    of signals (all at ``sample_rate``). Needs at least 13 frames in each set."""
    stats = []
    for name, clips in (("set_a", set_a), ("set_b", set_b)):
        if len(clips) == 0:
            raise BadInputError(f"fd_mfcc: {name} is empty; expected at least one signal")
        frames = np.concatenate([frame_mfccs(clip, sample_rate) for clip in clips], axis=1).T  # [N, 12]
        if frames.shape[0] <= frames.shape[1]:
            raise BadInputError(
                f"fd_mfcc: {name} has {frames.shape[0]} MFCC frames; expected more than {frames.shape[1]}"
            )
        stats.append((frames.mean(axis=0), np.cov(frames, rowvar=False)))
    (mean_a, cov_a), (mean_b, cov_b) = stats
    return frechet_distance(mean_a, cov_a, mean_b, cov_b)


# ---------------------------------------------------------------------------------------------------------
# notes


def _require_mir_eval():
    try:
        import mir_eval
    except ImportError as error:
        from after.data.transcription import INSTALL_HINT

        raise AfterError(
            f"note metrics need the optional package mir_eval ({error}); {INSTALL_HINT}"
        ) from error
    return mir_eval


def _note_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
    """``(intervals [N, 2] in s, pitches [N] in Hz)`` of the melodic notes (drums left out)."""
    melodic = [n for n in notes if not n.is_drum]
    intervals = np.array([[n.start, max(n.end, n.start + 1e-3)] for n in melodic], dtype=np.float64)
    pitches = np.array([440.0 * 2.0 ** ((n.pitch - 69) / 12.0) for n in melodic], dtype=np.float64)
    return intervals.reshape(-1, 2), pitches


def _empty_scores(n_est: int, n_ref: int) -> dict[str, float] | None:
    if n_est and n_ref:
        return None
    both_empty = float(n_est == 0 and n_ref == 0)
    return {"precision": both_empty, "recall": both_empty, "f1": both_empty}


def note_f1(est_notes: Sequence[Note], ref_notes: Sequence[Note]) -> dict[str, float]:
    """Note precision/recall/F1: a note matches a reference note of the same pitch (within 50
    cents) whose onset is within 50 ms; offsets are ignored. Drum notes are left out. Two empty
    lists score 1, one empty list scores 0."""
    est_intervals, est_pitches = _note_arrays(est_notes)
    ref_intervals, ref_pitches = _note_arrays(ref_notes)
    empty = _empty_scores(len(est_pitches), len(ref_pitches))
    if empty is not None:
        return empty
    precision, recall, f1, _ = _require_mir_eval().transcription.precision_recall_f1_overlap(
        ref_intervals,
        ref_pitches,
        est_intervals,
        est_pitches,
        onset_tolerance=ONSET_TOLERANCE_S,
        offset_ratio=None,
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def onset_f1(est_notes: Sequence[Note], ref_notes: Sequence[Note]) -> dict[str, float]:
    """Onset precision/recall/F1 regardless of pitch (onsets within 50 ms match; onsets of
    simultaneous notes count once). Same empty-list rule as :func:`note_f1`."""
    est = np.unique(np.round([n.start for n in est_notes if not n.is_drum], 4))
    ref = np.unique(np.round([n.start for n in ref_notes if not n.is_drum], 4))
    empty = _empty_scores(est.size, ref.size)
    if empty is not None:
        return empty
    f1, precision, recall = _require_mir_eval().onset.f_measure(ref, est, window=ONSET_TOLERANCE_S)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


# ---------------------------------------------------------------------------------------------------------
# pitch Jaccard (optional, Essentia)


def essentia_available() -> bool:
    """True if Essentia can be imported (needed by :func:`pitch_jaccard`)."""
    return importlib.util.find_spec("essentia") is not None


def _frame_pitch_sets(audio: np.ndarray, sample_rate: int) -> list[set[int]]:
    import essentia.standard as es

    from after.data.audio import as_mono, resample

    signal = np.asarray(resample(as_mono(audio), int(sample_rate), 8000), dtype=np.float32)
    signal = es.EqualLoudness(sampleRate=8000)(signal)
    frames = es.MultiPitchMelodia(sampleRate=8000)(signal)
    return [{round(69 + 12 * np.log2(f / 440.0)) for f in frame if f > 0} for frame in frames]


def pitch_jaccard(output: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Mean over frames of ``1 - |A ∩ B| / |A ∪ B|`` for the MIDI pitch sets A, B found by
    Essentia's MultiPitchMelodia at 8 kHz (after EqualLoudness); frames silent in both count 0.

    Raises AfterError if Essentia is not installed.
    """
    if not essentia_available():
        raise AfterError("pitch_jaccard needs Essentia (pip install essentia), which is not installed")
    out_sets = _frame_pitch_sets(output, sample_rate)
    ref_sets = _frame_pitch_sets(reference, sample_rate)
    n = min(len(out_sets), len(ref_sets))
    if n == 0:
        raise BadInputError("pitch_jaccard: audio too short for one analysis frame")
    distances = [
        1.0 - len(a & b) / len(a | b) if (a | b) else 0.0 for a, b in zip(out_sets[:n], ref_sets[:n])
    ]
    return float(np.mean(distances))


# ---------------------------------------------------------------------------------------------------------
# statistics


def bootstrap_ci(
    values: Sequence[float], n: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its ``1 - alpha`` percentile-bootstrap
    interval from ``n`` resamples drawn with a generator seeded by ``seed``. NaNs are dropped."""
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise BadInputError("bootstrap_ci: no finite values")
    if n < 1 or not 0.0 < alpha < 1.0:
        raise BadInputError(f"bootstrap_ci: n={n}, alpha={alpha}: expected n >= 1 and 0 < alpha < 1")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n, data.size))].mean(axis=1)  # [n]
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    mean = float(data.mean())
    return mean, float(min(low, mean)), float(max(high, mean))
