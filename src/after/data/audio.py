"""Audio file I/O and resampling (soundfile + soxr).

Every array here is float audio shaped ``[C, T]`` (channels, samples) or ``[T]`` for one channel,
with samples nominally in [-1, 1]. Sample rates are in Hz.

Problems caused by the file (missing, not audio, empty, NaN samples) raise
:class:`~after.errors.AudioFileError` naming the file and saying what was expected.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from after.errors import AudioFileError, BadInputError

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".caf",
        ".w64",
        ".rf64",
    }
)
"""File extensions (lower case, with the dot) that :func:`load_audio` is expected to read."""

# extension -> (libsndfile container, default subtype) used by save_audio
_WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"),
    ".wave": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".oga": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
    ".aif": ("AIFF", "PCM_16"),
    ".aiff": ("AIFF", "PCM_16"),
    ".au": ("AU", "PCM_16"),
    ".caf": ("CAF", "PCM_16"),
    ".w64": ("W64", "PCM_16"),
    ".rf64": ("RF64", "PCM_16"),
}

RESAMPLE_QUALITY = "HQ"
"""soxr quality preset used by :func:`resample`."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: ``frames`` samples per channel at ``sample_rate`` Hz."""

    frames: int
    sample_rate: int
    channels: int
    duration_s: float
    format: str  # libsndfile container name, e.g. "WAV", "FLAC", "OGG", "MP3"


def _open_reason(error: Exception) -> str:
    return f"not a readable audio file (libsndfile: {error})"


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioFileError(path, "no such file")
    if not path.is_file():
        raise AudioFileError(path, "not a regular file (expected an audio file)")
    if path.stat().st_size == 0:
        raise AudioFileError(path, "empty: 0 bytes (expected an audio file)")


def audio_info(path: str | Path) -> AudioInfo:
    """Read an audio file's header without decoding its samples.

    Raises AudioFileError for a missing, unreadable or zero-length file. NaN samples are only
    detected by :func:`load_audio`, which decodes the data.
    """
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError) as error:
        raise AudioFileError(path, _open_reason(error)) from error
    if info.frames <= 0:
        raise AudioFileError(path, "empty: 0 samples")
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioFileError(
            path, f"invalid header: {info.samplerate} Hz, {info.channels} channels (expected both > 0)"
        )
    return AudioInfo(
        frames=int(info.frames),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        duration_s=info.frames / info.samplerate,
        format=str(info.format),
    )


def load_audio(path: str | Path, sample_rate: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode an audio file to float32 ``[C, T]``.

    Args:
        path: any format libsndfile reads (see :data:`AUDIO_EXTENSIONS`).
        sample_rate: if given and different from the file's rate, resample to it with soxr (HQ).
        mono: if True, average the channels, giving ``C = 1``.

    Returns:
        ``(audio, rate)``: audio float32 ``[C, T]`` and its sample rate in Hz (the requested one if
        resampled, else the file's).

    Raises:
        AudioFileError: missing file, not audio / corrupt, zero samples, NaN or infinite samples.
    """
    path = Path(path)
    _check_exists(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            file_rate = int(handle.samplerate)
            frames_tc = handle.read(dtype="float32", always_2d=True)  # [T, C]
    except (sf.SoundFileError, RuntimeError, OSError) as error:
        raise AudioFileError(path, _open_reason(error)) from error
    if frames_tc.shape[0] == 0 or frames_tc.shape[1] == 0:
        raise AudioFileError(path, "empty: 0 samples")
    if not np.isfinite(frames_tc).all():
        raise AudioFileError(path, "contains NaN or infinite samples (expected finite audio)")
    audio = np.ascontiguousarray(frames_tc.T)  # [T, C] -> [C, T]
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True, dtype=np.float32)  # [C, T] -> [1, T]
    rate = file_rate
    if sample_rate is not None:
        _check_rate(sample_rate, "sample_rate")
        if sample_rate != file_rate:
            audio = resample(audio, file_rate, sample_rate)
            rate = int(sample_rate)
    return audio.astype(np.float32, copy=False), rate


def _check_rate(rate: int, name: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise BadInputError(f"{name}={rate!r}: expected a positive integer sample rate in Hz")


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``[C, T]`` or ``[T]`` audio from ``from_rate`` to ``to_rate`` Hz (soxr, HQ).

    The output keeps the input's layout and float dtype (float32 stays float32); its length is
    about ``T * to_rate / from_rate``. Equal rates return the input unchanged.
    """
    _check_rate(from_rate, "from_rate")
    _check_rate(to_rate, "to_rate")
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise BadInputError(f"audio of shape {audio.shape}: expected [C, T] or [T]")
    if from_rate == to_rate:
        return audio
    dtype = audio.dtype if audio.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    if audio.ndim == 1:
        return soxr.resample(audio.astype(dtype, copy=False), from_rate, to_rate, quality=RESAMPLE_QUALITY)
    frames_tc = np.ascontiguousarray(audio.T, dtype=dtype)  # [C, T] -> [T, C]
    out_tc = soxr.resample(frames_tc, from_rate, to_rate, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(out_tc.T)  # [T', C] -> [C, T']


def save_audio(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write ``[C, T]`` or ``[T]`` float audio to ``path``, atomically.

    The container comes from the extension (.wav, .flac, .ogg, .opus, .mp3, .aif/.aiff, ...); the
    default subtype is 16-bit PCM for PCM containers (pass e.g. ``"FLOAT"`` for .wav or
    ``"PCM_24"`` for .flac). Samples outside [-1, 1] are clipped and a warning is logged. Parent
    folders are created. The data goes to a hidden temporary file in the same folder that then
    replaces ``path`` in one step, so an interrupted write never leaves a partial target.
    """
    path = Path(path)
    _check_rate(sample_rate, "sample_rate")
    suffix = path.suffix.lower()
    if suffix not in _WRITE_FORMATS:
        raise BadInputError(
            f"{path}: unknown audio extension {suffix!r}; expected one of {', '.join(sorted(_WRITE_FORMATS))}"
        )
    container, default_subtype = _WRITE_FORMATS[suffix]
    subtype = subtype or default_subtype
    if not sf.check_format(container, subtype):
        raise BadInputError(f"{path}: subtype {subtype!r} cannot be written in a {container} file")
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None, :]  # [T] -> [1, T]
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise BadInputError(f"{path}: audio of shape {audio.shape}: expected non-empty [C, T] or [T]")
    if not np.issubdtype(audio.dtype, np.floating):
        raise BadInputError(f"{path}: audio of dtype {audio.dtype}: expected float samples in [-1, 1]")
    if not np.isfinite(audio).all():
        raise BadInputError(f"{path}: audio contains NaN or infinite samples")
    peak = float(np.abs(audio).max())
    if peak > 1.0:
        n_clipped = int((np.abs(audio) > 1.0).sum())
        logger.warning("%s: clipping %d samples (peak %.3f) to [-1, 1]", path, n_clipped, peak)
        audio = np.clip(audio, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        sf.write(
            str(temporary),
            np.ascontiguousarray(audio.T),  # [C, T] -> [T, C]
            int(sample_rate),
            subtype=subtype,
            format=container,
        )
        os.replace(temporary, path)
    except sf.LibsndfileError as error:  # e.g. Opus at a rate it does not support
        temporary.unlink(missing_ok=True)
        raise BadInputError(
            f"{path}: cannot write {container}/{subtype} audio at {sample_rate} Hz (libsndfile: {error})"
        ) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def rms_db(audio: np.ndarray) -> float:
    """Root-mean-square level of all samples in dBFS (``20 log10 rms``; a full-scale square wave
    is 0 dB, a full-scale sine about -3 dB). Returns ``-inf`` for silence or empty input."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(audio))))
    return 20.0 * np.log10(rms) if rms > 0.0 else float("-inf")


def is_silent(audio: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True if the RMS level of ``audio`` (any shape) is below ``threshold_db`` dBFS (see :func:`rms_db`)."""
    return rms_db(audio) < threshold_db


def as_mono(audio: np.ndarray) -> np.ndarray:
    """Return float64 mono ``[T]`` from ``[T]`` or ``[C, T]`` audio (channels averaged)."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)  # [C, T] -> [T]
    if audio.ndim != 1:
        raise BadInputError(f"audio of shape {audio.shape}: expected [T] or [C, T]")
    if audio.size == 0:
        raise BadInputError("audio is empty: expected at least one sample")
    if not np.isfinite(audio).all():
        raise BadInputError("audio contains NaN or infinite samples")
    return audio
