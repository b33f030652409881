"""``after synth``: render a SLAKH-like corpus of single-instrument stems with paired MIDI.

How a corpus is made, for a seed:

1. **Plan.** An endless, seeded list of *jobs*. A job is one piece: a music21 corpus piece (split
   into one stem per part, see :mod:`after.data.music21_source`) or a procedural piece (1-4 stems,
   see :mod:`after.data.procedural`). The plan depends only on the seed, the split, the soundfonts
   and the instrument families, never on ``--minutes`` or the worker count, so a longer run extends
   a shorter one.
2. **Render.** Workers render jobs; each stem gets a General MIDI program (family first, then a
   program; never drums, percussive or sound effects), is moved into that program's pitch range,
   written as ``<id>.mid``, read back and played by FluidSynth from exactly those notes, trimmed
   after its release (never at the start: audio and MIDI share time 0), peak-normalised (the gain
   is recorded) and written as 16-bit mono ``<id>.flac``. Every random choice of a job comes from
   ``SeedSequence([seed, job, ...])`` and every stem from a fresh synthesiser, so files are
   identical bit for bit whatever the worker count.
3. **Stop.** Results are taken in plan order until the total duration reaches ``minutes``; the
   last stem may overshoot. Stems rendered ahead by busy workers are deleted.

**Held-out split.** A piece's key (``music21:<piece id>`` or ``procedural:<seed>-<job>-<try>``) is
held out when the first 8 hex digits of its SHA-256, read as an integer, are divisible by 10
(about 10 % of pieces). ``split="train"`` never renders held-out pieces, ``split="heldout"`` only
those; the rule does not depend on the seed for music21 pieces, so evaluation can rely on it.

**Resuming.** ``manifest.jsonl`` is rewritten (atomically) after every job; a rerun with the same
arguments reuses every stem already listed whose two files exist. ``synth.json`` holds the
arguments; a rerun in the same folder with different ones is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from after.config import to_dict
from after.data.instruments import choose_program, eligible_programs
from after.errors import BadInputError, DatasetError

logger = logging.getLogger(__name__)

SOUNDFONT_FOLDER = Path("/usr/share/sounds/sf2")
TRAINING_SOUNDFONTS: dict[str, str] = {
    "FluidR3_GM": "FluidR3_GM.sf2",  # Debian package fluid-soundfont-gm
    "TimGM6mb": "TimGM6mb.sf2",  # Debian package timgm6mb-soundfont
}
"""The only soundfonts used for training and tuning, by name; every other one is for held-out evaluation."""

SPLITS = ("train", "heldout")
HELDOUT_MODULUS = 10
MANIFEST = "manifest.jsonl"
SETTINGS = "synth.json"
MAX_EMPTY_JOBS = 200  # consecutive jobs without a stem before giving up


@dataclass(frozen=True)
class SynthConfig:
    """What decides the corpus (``minutes`` only decides where it stops)."""

    minutes: float
    seed: int = 0
    soundfonts: tuple[str, ...] = tuple(TRAINING_SOUNDFONTS)  # names or explicit paths
    sample_rate: int = 44100
    split: str = "train"
    families: tuple[str, ...] = ()  # instrument families to draw from; empty = every pitched family
    # probability that a job is a music21 piece (about 8 stems) rather than procedural (about 2.5):
    # 0.25 gives about as many stems of each
    music21_share: float = 0.25
    tail_s: float = 3.0  # release rendered after the last note-off before trimming, seconds
    peak_dbfs: float = -1.0


@dataclass(frozen=True)
class Soundfont:
    name: str
    path: str
    heldout_only: bool  # an explicit path other than the training soundfonts


@dataclass(frozen=True)
class Job:
    """One piece to render: ``entropy`` seeds all its random choices."""

    index: int
    key: str  # the piece key used by the held-out rule
    entropy: tuple[int, ...]
    piece: Any = None  # a music21_source.PieceRef, or None for a procedural piece


@dataclass
class JobResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    new_ids: set[str] = field(default_factory=set)  # stems written by this job (not reused)


def split_of(key: str) -> str:
    """``"heldout"`` for about 10 % of piece keys (SHA-256 rule, see module doc), else ``"train"``."""
    digest = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)
    return "heldout" if digest % HELDOUT_MODULUS == 0 else "train"


def resolve_soundfonts(specs: Sequence[str]) -> tuple[Soundfont, ...]:
    """Turn ``--soundfonts`` values into files: the names ``FluidR3_GM`` / ``TimGM6mb``, or explicit
    paths (marked held-out only, and logged). Any other name is refused."""
    if not specs:
        raise BadInputError("--soundfonts: expected at least one soundfont")
    resolved: list[Soundfont] = []
    training_paths = {os.path.realpath(SOUNDFONT_FOLDER / f): n for n, f in TRAINING_SOUNDFONTS.items()}
    for spec in specs:
        if spec in TRAINING_SOUNDFONTS:
            path = SOUNDFONT_FOLDER / TRAINING_SOUNDFONTS[spec]
            if not path.is_file():
                package = "fluid-soundfont-gm" if spec == "FluidR3_GM" else "timgm6mb-soundfont"
                raise BadInputError(
                    f"soundfont {spec}: {path} not found (install the Debian package {package})"
                )
            resolved.append(Soundfont(spec, str(path), heldout_only=False))
            continue
        if "/" not in spec and not spec.lower().endswith((".sf2", ".sf3")):
            raise BadInputError(
                f"soundfont {spec!r}: unknown name; only {' and '.join(TRAINING_SOUNDFONTS)} may be used for "
                "training (other soundfonts are reserved for held-out evaluation: pass an explicit file path)"
            )
        path = Path(spec).expanduser()
        if not path.is_file():
            raise BadInputError(f"soundfont {spec}: no such file (expected a .sf2 or .sf3 soundfont)")
        name = training_paths.get(os.path.realpath(path))
        if name is not None:
            resolved.append(Soundfont(name, str(path), heldout_only=False))
        else:
            logger.warning(
                "soundfont %s is an explicit path: its stems are for held-out evaluation only", path
            )
            resolved.append(Soundfont(path.stem, str(path), heldout_only=True))
    return tuple(resolved)


def check_config(config: SynthConfig) -> None:
    """Refuse bad values with a message naming them."""
    if not (isinstance(config.minutes, (int, float)) and np.isfinite(config.minutes) and config.minutes > 0):
        raise BadInputError(f"--minutes {config.minutes}: expected a positive number of minutes")
    if config.split not in SPLITS:
        raise BadInputError(f"--split {config.split!r}: expected one of {', '.join(SPLITS)}")
    if config.sample_rate < 8000 or config.sample_rate > 192000:
        raise BadInputError(f"--sample-rate {config.sample_rate}: expected 8000..192000 Hz")
    if not 0.0 <= config.music21_share <= 1.0:
        raise BadInputError(f"music21_share={config.music21_share}: expected a probability in [0, 1]")
    eligible_programs(config.families or None)


def plan_jobs(config: SynthConfig) -> Iterator[Job]:
    """The endless, deterministic list of jobs of a seed and split (see module doc)."""
    from after.data.music21_source import COLLECTIONS, list_pieces

    planner = np.random.default_rng(np.random.SeedSequence([config.seed, 0x504C414E]))
    queues: dict[str, list] = {}  # collection -> its pieces of this split, shuffled; filled at first use
    positions: dict[str, int] = {}
    for index in range(10**9):
        collections = [c for c in COLLECTIONS if queues.get(c, True)]
        if collections and planner.random() < config.music21_share:
            weights = np.array([COLLECTIONS[c] for c in collections])
            collection = collections[int(planner.choice(len(collections), p=weights / weights.sum()))]
            if collection not in queues:
                pieces = [p for p in list_pieces(collection) if split_of(f"music21:{p.id}") == config.split]
                order = np.random.default_rng(
                    np.random.SeedSequence(
                        [config.seed, int(hashlib.sha256(collection.encode()).hexdigest()[:8], 16)]
                    )
                ).permutation(len(pieces))
                queues[collection] = [pieces[i] for i in order]
                positions[collection] = 0
                if not pieces:
                    continue
            queue = queues[collection]
            piece = queue[positions[collection] % len(queue)]
            positions[collection] += 1
            yield Job(index, f"music21:{piece.id}", (config.seed, index), piece)
        else:
            attempt = 0
            while split_of(f"procedural:{config.seed}-{index}-{attempt}") != config.split:
                attempt += 1
            yield Job(index, f"procedural:{config.seed}-{index}-{attempt}", (config.seed, index, attempt))


_RENDERERS: dict[tuple, Any] = {}  # one FluidSynth renderer per process, made at first use


def _renderer(soundfonts: tuple[Soundfont, ...], sample_rate: int):
    from after.data.render import FluidRenderer

    key = (tuple(s.path for s in soundfonts), sample_rate)
    if key not in _RENDERERS:
        _RENDERERS[key] = FluidRenderer([s.path for s in soundfonts], sample_rate)
    return _RENDERERS[key]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text).strip("-")


def render_job(
    job: Job, config: SynthConfig, soundfonts: tuple[Soundfont, ...], out_dir: str, known: dict[str, dict]
) -> JobResult:
    """Render every stem of a job into ``out_dir``; stems in ``known`` whose files exist are reused."""
    from after.data.audio import save_audio
    from after.data.gm import family_of, program_name
    from after.data.midi import load_notes, save_notes
    from after.data.music21_source import piece_stems
    from after.data.procedural import generate_piece
    from after.data.render import peak_normalise, trim_release
    from after.data.stems import assign_program

    content_rng = np.random.default_rng(np.random.SeedSequence([*job.entropy, 1]))
    choice_rng = np.random.default_rng(np.random.SeedSequence([*job.entropy, 2]))
    stems = generate_piece(content_rng) if job.piece is None else piece_stems(job.piece, content_rng)
    programs = eligible_programs(config.families or None)
    result = JobResult()
    folder = Path(out_dir)
    for number, stem in enumerate(stems):
        program = choose_program(choice_rng, programs)
        soundfont = soundfonts[int(choice_rng.integers(len(soundfonts)))]
        notes = assign_program(stem.notes, program)
        prefix = job.key.split(":", 1)[1] if job.piece is not None else stem.label
        stem_id = f"{job.index:05d}-{number:02d}-{_slug(prefix)}" + (f"-{stem.label}" if job.piece else "")
        audio_path, midi_path = folder / f"{stem_id}.flac", folder / f"{stem_id}.mid"
        if stem_id in known and audio_path.is_file() and midi_path.is_file():
            result.records.append(known[stem_id])
            continue
        save_notes(midi_path, notes, tempo_bpm=stem.tempo_bpm)
        notes = load_notes(midi_path)  # render exactly what the side-car holds
        raw = _renderer(soundfonts, config.sample_rate).render(notes, soundfont.path, program, config.tail_s)
        last_off = round(max(n.end for n in notes) * config.sample_rate)
        audio, gain = peak_normalise(trim_release(raw, last_off, config.sample_rate), config.peak_dbfs)
        if not np.abs(audio).max() > 0:
            logger.warning("stem %s (program %d, %s) is silent: skipped", stem_id, program, soundfont.name)
            midi_path.unlink(missing_ok=True)
            continue
        save_audio(audio_path, audio, config.sample_rate, subtype="PCM_16")
        result.new_ids.add(stem_id)
        result.records.append(
            {
                "id": stem_id,
                "audio": audio_path.name,
                "midi": midi_path.name,
                "program": program,
                "program_name": program_name(program),
                "family": family_of(program),
                "soundfont": soundfont.name,
                "heldout_soundfont": soundfont.heldout_only,
                "source": stem.source,
                "piece": job.key,
                "job": job.index,
                "seed": config.seed,
                "offset_s": round(stem.offset_s, 6),
                "duration_s": round(audio.size / config.sample_rate, 6),
                "n_notes": len(notes),
                "gain": gain,
                "sample_rate": config.sample_rate,
                "split": config.split,
            }
        )
    return result


_KNOWN: dict[str, dict] = {}  # in a worker: the records of the manifest found at start


def _init_worker(known: dict[str, dict]) -> None:
    """Start of a rendering process: one OpenMP thread, since the processes already share the
    cores (FluidSynth's OpenMP threads otherwise fight the other workers for them)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    _KNOWN.update(known)


def _run_job(arguments: tuple) -> JobResult:
    return render_job(*arguments, known=_KNOWN)


def read_manifest(out_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``out_dir/manifest.jsonl`` (``[]`` when there is none)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _settings(config: SynthConfig, soundfonts: tuple[Soundfont, ...]) -> dict[str, Any]:
    return {"config": to_dict(config), "soundfonts": [to_dict(s) for s in soundfonts]}


def _check_folder(out_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse to mix corpora: an existing synth.json must hold the same arguments (but minutes)."""
    path = out_dir / SETTINGS
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
        before = {k: v for k, v in previous["config"].items() if k != "minutes"}
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise DatasetError(f"{path}: unreadable ({error}); remove it or use another folder") from error
    now = {k: v for k, v in settings["config"].items() if k != "minutes"}
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        detail = ", ".join(f"{k}={before.get(k)!r} (now {now.get(k)!r})" for k in changed)
        raise DatasetError(
            f"{out_dir} holds a corpus rendered with {detail}; use the same arguments or another folder"
        )


def synthesize(
    out_dir: str | Path, config: SynthConfig, workers: int | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Render the corpus of ``config`` into ``out_dir`` and return its manifest records.

    Args:
        out_dir: folder for ``<id>.flac``, ``<id>.mid``, ``manifest.jsonl`` and ``synth.json``.
        workers: processes (default ``os.cpu_count()``); never changes the output.
        progress: show a tqdm bar counting seconds of audio.

    Rendering runs in spawned worker processes, so a script calling this at top level needs the
    usual ``if __name__ == "__main__":`` guard.
    """
    from tqdm import tqdm

    from after.data.render import _import_fluidsynth

    check_config(config)
    workers = int(workers or os.cpu_count() or 1)
    if workers < 1:
        raise BadInputError(f"--workers {workers}: expected at least 1")
    soundfonts = resolve_soundfonts(config.soundfonts)
    _import_fluidsynth()  # fail now, with a clear message, rather than in a worker
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    settings = _settings(config, soundfonts)
    _check_folder(folder, settings)
    _write_atomically(folder / SETTINGS, json.dumps({**settings, "workers": workers}, indent=2) + "\n")
    known = {r["id"]: r for r in read_manifest(folder)}
    target_s = config.minutes * 60.0
    jobs = ((job, config, soundfonts, str(folder)) for job in plan_jobs(config))
    emitted: list[dict[str, Any]] = []
    total_s, empty_streak = 0.0, 0
    # Rendering always runs in worker processes: spawned, not forked (FluidSynth uses OpenMP, whose
    # threads do not survive a fork), and with settings that must not leak into the caller's process.
    pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (known,))
    pending: deque = deque()
    bar = tqdm(total=round(target_s, 1), unit="s", desc="synth", disable=not progress)
    try:
        for arguments in jobs:
            pending.append(pool.apply_async(_run_job, (arguments,)))
            if len(pending) < workers:
                continue
            result = pending.popleft().get()
            empty_streak = 0 if result.records else empty_streak + 1
            if empty_streak >= MAX_EMPTY_JOBS:
                raise DatasetError(
                    f"{MAX_EMPTY_JOBS} pieces in a row gave no stem; check the families and soundfonts"
                )
            total_s = _take(result, emitted, total_s, target_s, folder, bar)
            _write_atomically(folder / MANIFEST, "".join(json.dumps(r) + "\n" for r in emitted))
            if total_s >= target_s:
                break
        while pending:  # jobs rendered ahead of the cut: wait for them, then remove their new files
            _take(pending.popleft().get(), emitted, total_s, target_s, folder, bar)
    finally:
        bar.close()
        pool.terminate()
        pool.join()
    logger.info("%d stems, %.1f s of audio in %s", len(emitted), total_s, folder)
    return emitted


def _take(result: JobResult, emitted: list, total_s: float, target_s: float, folder: Path, bar) -> float:
    """Append a job's stems while the total is under target; delete new stems past it."""
    for record in result.records:
        if total_s < target_s:
            emitted.append(record)
            total_s += record["duration_s"]
            bar.update(round(min(record["duration_s"], max(target_s - bar.n, 0.0)), 1))
        elif record["id"] in result.new_ids:
            for name in (record["audio"], record["midi"]):
                (folder / name).unlink(missing_ok=True)
    return total_s
