"""``after prepare``: a folder of audio (+ MIDI side-cars) -> an LMDB dataset of fixed-length chunks.

For every audio file under the input folder (nested folders too, any format libsndfile reads):

1. decode it and mix it down to mono; refuse a rate below the dataset's (that would upsample)
   unless ``allow_upsampling``; resample to the dataset rate;
2. peak-normalise it to :data:`TARGET_PEAK_DB` (gain capped at :data:`MAX_GAIN_DB`; recorded);
3. cut it into chunks of ``chunk_seconds``; a last partial chunk longer than half a chunk is
   zero-padded, a shorter one dropped; chunks whose RMS is below ``silence_db`` are skipped;
4. attach the notes of each chunk: from a side-car ``<stem>.mid``/``.midi`` next to the audio
   (``midi="sidecar"``), transcribed with basic-pitch (``"transcribe"``), or none (``"none"``);
   ``"auto"`` means sidecar when any side-car exists, else none;
5. attach what is known of the file: a ``manifest.jsonl`` in the input folder (as written by
   ``after synth``: program, family, soundfont, source, ...), else the side-car's MIDI program.

Files are decoded by a worker pool; the main process writes each file's chunks and its index
entry in one transaction. A file that cannot be used is skipped with its reason (logged, stored in
the index, listed by ``after info``). A re-run processes only files that are new or changed (size or
modification time), plus skipped files when the options that matter changed. Because chunk keys
derive from the file path and chunk position, an interrupted run completed by a second run gives the
same records as one uninterrupted run.

Test hook: the environment variable ``AFTER_PREPARE_COMMIT_DELAY_S`` (seconds) makes the writer
sleep after each committed file, so that a test can kill a run between two files.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from after.data import gm
from after.data.audio import AUDIO_EXTENSIONS, audio_info, is_silent, load_audio, resample
from after.data.midi import Note, load_notes, notes_to_array
from after.data.records import ChunkRecord, FileEntry, chunk_key, create_dataset, encode_record
from after.errors import AfterError, BadInputError

logger = logging.getLogger(__name__)

MIDI_EXTENSIONS = (".mid", ".midi")
MIDI_MODES = ("auto", "sidecar", "transcribe", "none")
MANIFEST_NAME = "manifest.jsonl"
MANIFEST_FIELDS = ("id", "program", "program_name", "family", "soundfont", "source", "seed")
TARGET_PEAK_DB = -1.0
MAX_GAIN_DB = 40.0
STREAMED_CHECK_S = 300.0  # longer files are first checked for silence block by block
COMMIT_DELAY_ENV = "AFTER_PREPARE_COMMIT_DELAY_S"


@dataclass(frozen=True)
class PrepareOptions:
    """Settings of ``after prepare``; ``workers=0`` means one per CPU core."""

    sample_rate: int = 44100
    chunk_seconds: float = 8.0
    midi: str = "auto"
    workers: int = 0
    allow_upsampling: bool = False
    silence_db: float = -60.0

    @property
    def chunk_samples(self) -> int:
        return round(self.chunk_seconds * self.sample_rate)


@dataclass(frozen=True)
class FileJob:
    """Everything a worker needs to turn one file into chunks (picklable)."""

    path: str
    relative: str
    size: int
    mtime_ns: int
    midi_path: str | None
    midi_mode: str  # "sidecar", "transcribe" or "none" (resolved)
    known: dict[str, Any]  # manifest fields of this file
    sample_rate: int
    chunk_samples: int
    allow_upsampling: bool
    silence_db: float

    @property
    def options(self) -> dict[str, Any]:
        """The options that decide whether a skipped file is worth another try."""
        return {"midi": self.midi_mode, "allow_upsampling": self.allow_upsampling}


@dataclass
class FileResult:
    """What a worker returns: encoded chunks, or the reason the file was skipped."""

    job: FileJob
    status: str  # "done", "skipped" (stored in the index) or "failed" (unexpected error; retried)
    reason: str = ""
    chunks: dict[str, bytes] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


@dataclass
class PrepareSummary:
    """Totals of one ``after prepare`` run."""

    files_added: int = 0
    files_unchanged: int = 0
    chunks_added: int = 0
    seconds_added: float = 0.0
    silent_chunks: int = 0
    dataset_chunks: int = 0  # chunks in the dataset after the run
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary, one line each."""
        lines = [
            f"added {self.files_added} files: {self.chunks_added} chunks, "
            f"{self.seconds_added:.1f} s of audio ({self.silent_chunks} silent chunks skipped); "
            f"{self.files_unchanged} files seen before left as they were; "
            f"the dataset holds {self.dataset_chunks} chunks",
        ]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} files:")
            lines += [f"  {path}: {reason}" for path, reason in self.skipped]
        if self.failed:
            lines.append(f"failed on {len(self.failed)} files (unexpected errors; retried next run):")
            lines += [f"  {path}: {reason}" for path, reason in self.failed]
        return lines


# ------------------------------------------------------------------------------------------------
# scanning


def _visible(relative: Path) -> bool:
    return not any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)


def scan_folder(in_dir: Path, exclude: Path | None = None) -> tuple[list[Path], dict[tuple[Path, str], Path]]:
    """Audio files under ``in_dir`` (sorted, relative) and side-cars: (folder, lower stem) -> MIDI path."""
    audio: list[Path] = []
    sidecars: dict[tuple[Path, str], Path] = {}
    exclude = exclude.resolve() if exclude is not None else None
    for path in sorted(in_dir.rglob("*")):
        relative = path.relative_to(in_dir)
        if not _visible(relative) or not path.is_file():
            continue
        if exclude is not None and (path.resolve() == exclude or exclude in path.resolve().parents):
            continue
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS:
            audio.append(relative)
        elif suffix in MIDI_EXTENSIONS:
            sidecars.setdefault((relative.parent, path.stem.lower()), path)
    return audio, sidecars


def read_manifest(in_dir: Path) -> dict[str, dict[str, Any]]:
    """Manifest fields by audio path relative to ``in_dir`` (empty when there is no manifest)."""
    manifest_path = in_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        return {}
    entries: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(manifest_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            audio = Path(item["audio"])
        except (ValueError, KeyError, TypeError) as error:
            logger.warning("%s line %d: ignored (%s)", manifest_path, number, error)
            continue
        relative = audio.relative_to(in_dir) if audio.is_absolute() and in_dir in audio.parents else audio
        entries[relative.as_posix()] = {key: item[key] for key in MANIFEST_FIELDS if key in item}
    return entries


# ------------------------------------------------------------------------------------------------
# one file (runs in a worker)


def _midi_program_info(notes: list[Note]) -> dict[str, Any]:
    """Program, its name and family from the most frequent instrument of the notes."""
    counts = Counter((note.program, note.is_drum) for note in notes)
    if not counts:
        return {}
    (program, is_drum), _ = max(counts.items(), key=lambda item: (item[1], -item[0][0]))
    if is_drum:
        return {"family": gm.DRUM_FAMILY}
    return {"program": program, "program_name": gm.program_name(program), "family": gm.family_of(program)}


def _file_notes(job: FileJob) -> list[Note] | None:
    """The file's notes, or None when the dataset has no MIDI. Raises AfterError when unusable."""
    if job.midi_mode == "none":
        return None
    if job.midi_mode == "transcribe":
        from after.data.transcription import transcribe_file

        notes = transcribe_file(job.path, program=int(job.known.get("program", 0)))
        if not notes:
            raise BadInputError("basic-pitch found no notes in it")
        return notes
    if job.midi_path is None:
        raise BadInputError("no MIDI side-car (expected a .mid or .midi file with the same name next to it)")
    notes = load_notes(job.midi_path)
    if not notes:
        raise BadInputError(f"MIDI side-car has no notes ({Path(job.midi_path).name})")
    return notes


def _chunk_notes(notes: list[Note] | None, start: float, end: float) -> np.ndarray:
    """Notes sounding in ``[start, end)`` as ``[N, 6]``, times relative to ``start`` and not
    clipped (see :class:`after.data.records.ChunkRecord`)."""
    if not notes:
        return notes_to_array([])
    inside = [n for n in notes if n.start < end and (n.end > start or n.start >= start)]
    array = notes_to_array(inside)  # [N, 6]
    array[:, 2:4] -= start
    return array


def _streamed_peak(path: str) -> float:
    """Peak of a file read block by block (never the whole file in memory); NaN if it has NaN."""
    import soundfile

    peak = 0.0
    try:
        for block in soundfile.blocks(path, blocksize=1 << 20, dtype="float32", always_2d=True):
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
    except (soundfile.SoundFileError, RuntimeError, OSError):
        return float("nan")  # let load_audio report what is wrong
    return peak


def _process(job: FileJob) -> FileResult:
    result = FileResult(job=job, status="done")
    header = audio_info(job.path)
    if header.sample_rate < job.sample_rate and not job.allow_upsampling:
        raise BadInputError(
            f"sample rate {header.sample_rate} Hz is below the dataset's {job.sample_rate} Hz (would "
            "upsample; pass --allow-upsampling to accept it)"
        )
    if header.channels > 2:
        result.notices.append(f"{header.channels} channels mixed down to mono")
    threshold = 10 ** (job.silence_db / 20)
    if header.duration_s > STREAMED_CHECK_S and _streamed_peak(job.path) <= threshold:
        raise BadInputError(f"silent: peak below {job.silence_db:g} dBFS over {header.duration_s:.0f} s")
    audio, rate = load_audio(job.path, sample_rate=None, mono=True)  # [1, T] at the file's rate
    peak = float(np.abs(audio).max())
    if peak <= threshold:
        level = f"{20 * np.log10(peak):.1f} dBFS" if peak > 0 else "digital silence"
        raise BadInputError(f"silent: peak {level} is below {job.silence_db:g} dBFS")
    signal = resample(audio[0], rate, job.sample_rate).astype(np.float32)  # [T]
    gain_db = min(TARGET_PEAK_DB - 20 * np.log10(peak), MAX_GAIN_DB)
    signal *= np.float32(10 ** (gain_db / 20))
    size = job.chunk_samples
    n_chunks, remainder = divmod(len(signal), size)
    if remainder > size // 2:
        n_chunks += 1
    if n_chunks == 0:
        raise BadInputError(
            f"too short: {len(signal) / job.sample_rate:.2f} s (chunks are {size / job.sample_rate:g} s; "
            "at least half a chunk is needed)"
        )
    notes = _file_notes(job)
    info = {"gain_db": float(gain_db), "original_sample_rate": rate, "channels": header.channels}
    info.update(_midi_program_info(notes) if notes else {})
    info.update(job.known)
    seconds = 0.0
    silent = 0
    for index in range(n_chunks):
        piece = signal[index * size : (index + 1) * size]
        if is_silent(piece, job.silence_db):
            silent += 1
            continue
        audio_seconds = len(piece) / job.sample_rate
        chunk = np.zeros(size, dtype=np.float32)
        chunk[: len(piece)] = piece
        start = index * size / job.sample_rate
        metadata = {
            "file": job.relative,
            "chunk_index": index,
            "offset_s": start,
            "audio_seconds": audio_seconds,
            "midi": job.midi_mode,
            **info,
        }
        record = ChunkRecord(
            audio=chunk, notes=_chunk_notes(notes, start, start + size / job.sample_rate), metadata=metadata
        )
        result.chunks[chunk_key(job.relative, index)] = encode_record(record)
        seconds += audio_seconds
    if not result.chunks:
        raise BadInputError(f"silent: all {n_chunks} chunks are below {job.silence_db:g} dBFS")
    result.info = {**info, "audio_seconds": seconds, "silent_chunks": silent, "n_chunks": len(result.chunks)}
    return result


def process_file(job: FileJob) -> FileResult:
    """Turn one file into encoded chunks; never raises (problems become a skip reason)."""
    try:
        return _process(job)
    except AfterError as error:
        reason = getattr(error, "reason", None) or str(error)
        return FileResult(job=job, status="skipped", reason=reason)
    except Exception as error:  # a bug or an odd file: report it, keep going, retry next run
        logger.exception("%s: unexpected error", job.relative)
        return FileResult(job=job, status="failed", reason=f"{type(error).__name__}: {error}")


# ------------------------------------------------------------------------------------------------
# the run


def _resolve_midi_mode(mode: str, sidecars: dict) -> str:
    if mode not in MIDI_MODES:
        raise BadInputError(f"--midi {mode!r}: expected one of {', '.join(MIDI_MODES)}")
    if mode == "auto":
        return "sidecar" if sidecars else "none"
    return mode


def plan_jobs(
    in_dir: Path, dataset_dir: Path, options: PrepareOptions, known: dict[str, FileEntry]
) -> tuple[list[FileJob], int]:
    """Jobs for the files that are new, changed, or skipped under other options; and the count of
    files left as they are."""
    audio_files, sidecars = scan_folder(in_dir, exclude=dataset_dir)
    if not audio_files:
        raise BadInputError(
            f"{in_dir}: no audio files found (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})"
        )
    midi_mode = _resolve_midi_mode(options.midi, sidecars)
    logger.info("%d audio files in %s; MIDI: %s", len(audio_files), in_dir, midi_mode)
    manifest = read_manifest(in_dir)
    jobs: list[FileJob] = []
    unchanged = 0
    for relative in audio_files:
        path = in_dir / relative
        stat = path.stat()
        midi_path = sidecars.get((relative.parent, path.stem.lower()))
        job = FileJob(
            path=str(path),
            relative=relative.as_posix(),
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            midi_path=str(midi_path) if midi_path else None,
            midi_mode=midi_mode,
            known=manifest.get(relative.as_posix(), {}),
            sample_rate=options.sample_rate,
            chunk_samples=options.chunk_samples,
            allow_upsampling=options.allow_upsampling,
            silence_db=options.silence_db,
        )
        entry = known.get(job.relative)
        same_file = entry is not None and (entry.size, entry.mtime_ns) == (job.size, job.mtime_ns)
        if same_file and (entry.status == "done" or dict(entry.options) == job.options):
            unchanged += 1
        else:
            jobs.append(job)
    return jobs, unchanged


def _results(jobs: list[FileJob], workers: int) -> Iterator[FileResult]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(process_file, jobs)
        return
    # fork where the platform has it: workers only decode audio, and fork does not re-import the
    # caller's main module (spawn would, which breaks scripts without a __main__ guard)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(processes=min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(process_file, jobs)


def prepare(
    in_dir: str | Path,
    dataset_dir: str | Path,
    options: PrepareOptions | None = None,
    progress: bool = True,
) -> PrepareSummary:
    """Add the audio files of ``in_dir`` to the dataset at ``dataset_dir`` (created if needed).

    ``progress``: a progress bar on a terminal (never when False).
    """
    from tqdm import tqdm

    options = options or PrepareOptions()
    in_dir, dataset_dir = Path(in_dir), Path(dataset_dir)
    if not in_dir.is_dir():
        raise BadInputError(f"{in_dir}: no such folder (expected a folder of audio files)")
    if in_dir.resolve() == dataset_dir.resolve():
        raise BadInputError(f"{dataset_dir}: the dataset folder must differ from the input folder")
    if options.chunk_samples <= 0 or options.sample_rate <= 0:
        raise BadInputError(
            f"--chunk-seconds {options.chunk_seconds} at --sample-rate {options.sample_rate}: "
            "expected positive values"
        )
    if options.midi not in MIDI_MODES:
        raise BadInputError(f"--midi {options.midi!r}: expected one of {', '.join(MIDI_MODES)}")
    if options.midi == "transcribe":  # fail before creating anything
        from after.data.transcription import require_transcription

        require_transcription()
    summary = PrepareSummary()
    delay = float(os.environ.get(COMMIT_DELAY_ENV, "0") or 0)
    with create_dataset(dataset_dir, options.sample_rate, options.chunk_samples) as store:
        jobs, summary.files_unchanged = plan_jobs(in_dir, dataset_dir, options, store.files())
        workers = options.workers or os.cpu_count() or 1
        bar = tqdm(total=len(jobs), unit="file", desc="prepare", disable=None if progress else True)
        for result in _results(jobs, workers):
            _record(store, result, summary)
            bar.update(1)
            if delay:
                time.sleep(delay)
        bar.close()
        summary.dataset_chunks = len(store.chunk_keys())
    for line in summary.lines():
        logger.info("%s", line)
    return summary


def _record(store: Any, result: FileResult, summary: PrepareSummary) -> None:
    """Commit one file's result (chunks + index entry in one transaction) and count it."""
    job = result.job
    for notice in result.notices:
        logger.info("%s: %s", job.relative, notice)
        summary.notices.append((job.relative, notice))
    if result.status == "failed":
        summary.failed.append((job.relative, result.reason))
        return
    entry = FileEntry(
        path=job.relative,
        size=job.size,
        mtime_ns=job.mtime_ns,
        status=result.status,
        reason=result.reason,
        chunk_keys=tuple(sorted(result.chunks)),
        options=job.options,
        info={**result.info, "notices": result.notices},
    )
    store.commit_file(entry, result.chunks)
    if result.status == "skipped":
        logger.warning("skipped %s: %s", job.relative, result.reason)
        summary.skipped.append((job.relative, result.reason))
        return
    summary.files_added += 1
    summary.chunks_added += len(result.chunks)
    summary.seconds_added += result.info["audio_seconds"]
    summary.silent_chunks += result.info["silent_chunks"]
