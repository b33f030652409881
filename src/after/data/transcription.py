"""Note transcription of audio with basic-pitch's ONNX model, run directly with onnxruntime.

basic-pitch (Spotify, Apache-2.0) ships a small network ``nmp.onnx`` (230 KB) in its wheel. Its
Python inference code imports librosa and resampy (which pulls numba and llvmlite), and its
package declares tensorflow; we need none of that. We only locate the ONNX file inside the
installed package (without importing it), run it with onnxruntime on our own 22.05 kHz windows
(soxr resampling), and turn its posteriorgrams into notes with our own decoder below. Install:

    pip install onnxruntime mir_eval
    pip install --no-deps basic-pitch==0.4.0

The network maps 43,844 samples at 22,050 Hz to 172 frames (hop 256 samples, ~86 frames/s) of
88-key note and onset probabilities (MIDI 21..108). We window the signal with a hop that is a
whole number of frames (141 frames = 36,096 samples), zero-pad 15 frames' worth in front and keep
frames 15..155 of every window, so frame ``k`` of the joined output is time ``k * 256 / 22050`` s
on a uniform grid.

Decoding: an onset is a local maximum in time of the onset probability above ``onset_threshold``;
the note then lasts while the note probability stays above ``frame_threshold`` (gaps shorter than
``gap_frames`` are bridged) and ends early where the next onset of the same key begins; notes
shorter than ``min_note_s`` are dropped. Velocity is 127 times the mean note probability.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from after.data.audio import as_mono, load_audio, resample
from after.data.midi import Note
from after.errors import AfterError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install onnxruntime mir_eval && pip install --no-deps basic-pitch==0.4.0"
"""Command that installs the optional transcription extra (basic-pitch must be installed --no-deps)."""

MODEL_SAMPLE_RATE = 22_050
WINDOW_SAMPLES = 43_844  # network input length
FRAME_HOP = 256  # samples per output frame
FRAMES_PER_WINDOW = 172  # network output length
EDGE_FRAMES = 15  # frames dropped at the start of every window (context)
KEPT_FRAMES = 141  # frames kept per window; the window hop is KEPT_FRAMES * FRAME_HOP samples
LOWEST_MIDI = 21  # key 0 of the 88 outputs
FRAME_RATE = MODEL_SAMPLE_RATE / FRAME_HOP  # output frames per second (~86.13)
_OUTPUT_NOTE = "StatefulPartitionedCall:1"
_OUTPUT_ONSET = "StatefulPartitionedCall:2"


class TranscriptionUnavailableError(AfterError):
    """The optional transcription extra (onnxruntime + basic-pitch's model file) is missing."""


def model_path() -> Path:
    """Path of basic-pitch's ``nmp.onnx`` inside the installed package (the package is not imported).

    Raises TranscriptionUnavailableError with the install command when it is missing.
    """
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise TranscriptionUnavailableError(
            f"note transcription needs the optional package basic-pitch; install it with: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "saved_models" / "icassp_2022" / "nmp.onnx"
    if not path.is_file():
        raise TranscriptionUnavailableError(
            f"{path}: basic-pitch's ONNX model is missing (expected basic-pitch 0.4.0); "
            f"reinstall it with: {INSTALL_HINT}"
        )
    return path


@functools.lru_cache(maxsize=1)
def _session() -> Any:
    path = model_path()
    try:
        import onnxruntime
    except ImportError as error:
        raise TranscriptionUnavailableError(
            f"note transcription needs onnxruntime ({error}); install it with: {INSTALL_HINT}"
        ) from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def transcription_available() -> bool:
    """True if :func:`transcribe` can run (onnxruntime and basic-pitch's model file are installed)."""
    try:
        model_path()
    except TranscriptionUnavailableError:
        return False
    return importlib.util.find_spec("onnxruntime") is not None


def posteriorgrams(audio: np.ndarray, sample_rate: int, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Note and onset probabilities ``([frames, 88], [frames, 88])`` at :data:`FRAME_RATE` frames/s.

    ``audio`` is ``[T]`` or ``[C, T]`` at ``sample_rate`` Hz; ``frames = ceil(T' / 256)`` with ``T'``
    the length at 22,050 Hz. Column ``i`` is MIDI pitch ``21 + i``.
    """
    session = _session()
    mono = np.asarray(resample(as_mono(audio), int(sample_rate), MODEL_SAMPLE_RATE), dtype=np.float32)
    n_frames = -(-mono.size // FRAME_HOP)
    hop = KEPT_FRAMES * FRAME_HOP
    n_windows = -(-n_frames // KEPT_FRAMES)
    front = EDGE_FRAMES * FRAME_HOP
    total = (n_windows - 1) * hop + WINDOW_SAMPLES
    padded = np.zeros(total, dtype=np.float32)
    padded[front : front + mono.size] = mono
    windows = np.lib.stride_tricks.sliding_window_view(padded, WINDOW_SAMPLES)[::hop][:n_windows]
    notes, onsets = [], []
    for first in range(0, n_windows, batch_size):
        batch = np.ascontiguousarray(windows[first : first + batch_size])[..., None]  # [B, 43844, 1]
        note, onset = session.run([_OUTPUT_NOTE, _OUTPUT_ONSET], {session.get_inputs()[0].name: batch})
        notes.append(note[:, EDGE_FRAMES : EDGE_FRAMES + KEPT_FRAMES])  # [B, 141, 88]
        onsets.append(onset[:, EDGE_FRAMES : EDGE_FRAMES + KEPT_FRAMES])
    note_grid = np.concatenate(notes).reshape(-1, 88)[:n_frames]  # [W, 141, 88] -> [frames, 88]
    onset_grid = np.concatenate(onsets).reshape(-1, 88)[:n_frames]  # [W, 141, 88] -> [frames, 88]
    return note_grid, onset_grid


def decode_notes(
    note_probs: np.ndarray,
    onset_probs: np.ndarray,
    onset_threshold: float = 0.5,
    frame_threshold: float = 0.3,
    min_note_s: float = 0.058,
    gap_frames: int = 3,
    program: int = 0,
) -> list[Note]:
    """Turn ``[frames, 88]`` note/onset probabilities into notes sorted by (start, pitch).

    See the module docstring for the rule. Times are frame positions ``k / FRAME_RATE`` seconds.
    """
    n_frames = note_probs.shape[0]
    min_frames = max(1, round(min_note_s * FRAME_RATE))
    previous = np.concatenate([np.zeros((1, 88)), onset_probs[:-1]])
    following = np.concatenate([onset_probs[1:], np.zeros((1, 88))])
    peaks = (onset_probs >= onset_threshold) & (onset_probs >= previous) & (onset_probs > following)
    result: list[Note] = []
    for key in np.flatnonzero(peaks.any(axis=0)):
        starts = np.flatnonzero(peaks[:, key])
        for index, start in enumerate(starts):
            limit = starts[index + 1] if index + 1 < len(starts) else n_frames
            end, gap = start + 1, 0
            while end < limit and gap < gap_frames:
                gap = 0 if note_probs[end, key] >= frame_threshold else gap + 1
                end += 1
            end -= gap
            if end - start < min_frames:
                continue
            level = float(note_probs[start:end, key].mean())
            velocity = int(min(max(round(127 * level), 1), 127))
            result.append(
                Note(int(key) + LOWEST_MIDI, velocity, start / FRAME_RATE, end / FRAME_RATE, program)
            )
    result.sort(key=lambda n: (n.start, n.pitch))
    return result


def transcribe(audio: np.ndarray, sample_rate: int, program: int = 0, **decode_options: float) -> list[Note]:
    """Notes heard in ``audio`` (``[T]`` or ``[C, T]`` at ``sample_rate`` Hz), times in seconds.

    Raises TranscriptionUnavailableError (an AfterError, with the install command) when the
    optional extra is missing. ``decode_options`` go to :func:`decode_notes`.
    """
    note_probs, onset_probs = posteriorgrams(audio, sample_rate)
    notes = decode_notes(note_probs, onset_probs, program=program, **decode_options)
    logger.debug("transcribed %d notes from %.2f s of audio", len(notes), note_probs.shape[0] / FRAME_RATE)
    return notes


def transcribe_file(path: str | Path, program: int = 0) -> list[Note]:
    """Notes heard in an audio file (times in seconds from its start), all given ``program``.

    Raises AudioFileError if the file cannot be read and TranscriptionUnavailableError (with the
    install command) when the optional extra is missing.
    """
    audio, sample_rate = load_audio(path, mono=True)
    return transcribe(audio, sample_rate, program=program)


def require_transcription() -> None:
    """Raise TranscriptionUnavailableError, with the install command, unless :func:`transcribe` can run."""
    model_path()
    _session()
