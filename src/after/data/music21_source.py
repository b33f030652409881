"""Pieces of the music21 corpus (it ships with music21, offline) split into one stem per part.

Only cheap collections are used: Bach chorales, Renaissance polyphony (Palestrina, Monteverdi) and
folk tunes in abc (Essen, Ryan's Mammoth, O'Neill's, Aird's). String quartets and other large
scores take 5-20 s each to parse and are left out; files other than abc above
:data:`MAX_FILE_BYTES` are skipped too (a deterministic stand-in for a parse-time cap). An abc file
holds many tunes; each tune (its ``X:`` number) is a piece of its own and is parsed alone, which
takes milliseconds.

A piece is parsed only when a job needs it, inside the worker process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from after.data.midi import Note
from after.data.stems import SourceStem, clean_notes

logger = logging.getLogger(__name__)

COLLECTIONS: dict[str, float] = {
    "bach": 0.30,
    "palestrina": 0.15,
    "monteverdi": 0.10,
    "essenFolksong": 0.15,
    "ryansMammoth": 0.15,
    "oneills1850": 0.10,
    "airdsAirs": 0.05,
}
"""Collections of the corpus used, with the probability that a music21 job draws from each."""

SCORE_EXTENSIONS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")
MAX_FILE_BYTES = 60_000
"""Score files (other than abc, whose tunes are parsed one at a time) larger than this are skipped."""

# quarter notes per minute drawn when a score has no usable tempo mark; old notation moves faster
_TEMPO_RANGES: dict[str, tuple[float, float]] = {"palestrina": (110.0, 170.0), "monteverdi": (100.0, 150.0)}
_DEFAULT_TEMPO_RANGE = (70.0, 130.0)


@dataclass(frozen=True)
class PieceRef:
    """A piece: a score file relative to the corpus root, and its tune number inside an abc file."""

    path: str
    number: int | None = None

    @property
    def collection(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def id(self) -> str:
        """Stable name, e.g. ``bach/bwv66.6`` or ``essenFolksong/altdeu10#3``."""
        stem = self.path.rsplit(".", 1)[0]
        return stem if self.number is None else f"{stem}#{self.number}"


def corpus_root() -> Path:
    """Folder of the music21 corpus."""
    import music21

    return Path(music21.__file__).parent / "corpus"


def _abc_numbers(path: Path) -> list[int]:
    numbers = []
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            if line.startswith("X:"):
                try:
                    numbers.append(int(line[2:].split()[0]))
                except (ValueError, IndexError):
                    continue
    return sorted(set(numbers))


@cache
def list_pieces(collection: str) -> tuple[PieceRef, ...]:
    """Every usable piece of a corpus collection, in a fixed (sorted) order."""
    folder = corpus_root() / collection
    if not folder.is_dir():
        return ()
    pieces: list[PieceRef] = []
    seen: set[str] = set()
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        if suffix not in SCORE_EXTENSIONS or not path.is_file():
            continue
        relative = path.relative_to(corpus_root()).as_posix()
        if suffix == ".abc":
            pieces += [PieceRef(relative, n) for n in _abc_numbers(path)]
        elif path.stat().st_size <= MAX_FILE_BYTES and path.with_suffix("").name not in seen:
            seen.add(path.with_suffix("").name)  # one file per work when several formats exist
            pieces.append(PieceRef(relative))
    return tuple(pieces)


def parse_parts(piece: PieceRef) -> tuple[list[list[tuple[float, float, int]]], float | None]:
    """Parse a piece; returns per part the notes ``(offset, length, pitch)`` in quarter notes, and
    the first tempo mark in quarter notes per minute (None if there is none).

    Ties are merged, grace notes and chord symbols dropped, chords split into their pitches.
    Raises whatever music21 raises on a malformed file.
    """
    from music21 import converter, harmony, note, tempo

    kwargs = {"number": piece.number} if piece.number is not None else {}
    score = converter.parse(str(corpus_root() / piece.path), forceSource=True, **kwargs)
    if not hasattr(score, "parts"):  # an Opus: several scores
        score = score.scores[0]
    parts = list(score.parts) or [score]
    mark = score.recurse().getElementsByClass(tempo.MetronomeMark).first()
    bpm = mark.getQuarterBPM() if mark is not None else None
    result = []
    for part in parts:
        events = []
        for element in part.stripTies().flatten().notes:
            if isinstance(element, (harmony.Harmony, note.Unpitched)) or element.quarterLength <= 0:
                continue
            offset, length = float(element.offset), float(element.quarterLength)
            events += [(offset, length, int(p.midi)) for p in getattr(element, "pitches", ())]
        result.append(events)
    return result, bpm


def _windows(
    total_s: float, rng: np.random.Generator, min_s: float, max_s: float, max_segments: int
) -> list[tuple[float, float]]:
    """Up to ``max_segments`` consecutive windows ``(start, end)`` in seconds over a piece of
    ``total_s`` seconds, each 15-35 s (a last remainder under ``min_s`` joins its neighbour while
    the window stays under ``max_s``), starting at a random point when the piece is long."""
    length = float(rng.uniform(15.0, 35.0))
    start = float(rng.uniform(0.0, max(0.0, total_s - max_segments * length)))
    windows = []
    while start < total_s and len(windows) < max_segments:
        end = start + length
        if total_s - end < min_s and total_s - start <= max_s:
            end = total_s
        windows.append((start, end))
        start = end
    return windows


def piece_stems(
    piece: PieceRef,
    rng: np.random.Generator,
    min_stem_s: float = 10.0,
    max_stem_s: float = 40.0,
    max_segments: int = 2,
) -> list[SourceStem]:
    """Stems of one piece: for each part and each window of the piece, the notes starting in it.

    The tempo is the score's own (varied by ±10 %) or a drawn one; the whole piece is transposed by
    -5..+6 semitones before each stem is fitted to its instrument. Each stem is shifted so that its
    first onset lies 0-0.25 s after time 0; notes sounding past the window's end stop there.
    Velocities are drawn: a level per part, a slow drift and jitter. Parts with fewer than 3 notes
    or shorter than 3 s in a window are left out. Returns ``[]`` when the piece cannot be parsed.
    """
    try:
        parts, bpm = parse_parts(piece)
    except Exception as error:  # music21 raises many kinds on malformed corpus files
        logger.warning("music21 piece %s skipped: %s: %s", piece.id, type(error).__name__, error)
        return []
    if bpm is not None and 40.0 <= bpm <= 220.0:
        bpm = float(bpm) * float(rng.uniform(0.9, 1.1))
    else:
        bpm = float(rng.uniform(*_TEMPO_RANGES.get(piece.collection, _DEFAULT_TEMPO_RANGE)))
    beat_s = 60.0 / bpm
    transpose = int(rng.integers(-5, 7))
    total_s = max((o + d for events in parts for o, d, _ in events), default=0.0) * beat_s
    stems = []
    for segment, (window_start, window_end) in enumerate(
        _windows(total_s, rng, min_stem_s, max_stem_s, max_segments)
    ):
        for index, events in enumerate(parts):
            chosen = [
                (o * beat_s, (o + d) * beat_s, p)
                for o, d, p in events
                if window_start <= o * beat_s < window_end
            ]
            if len(chosen) < 3:
                continue
            first = min(s for s, _, _ in chosen)
            span = min(max(e for _, e, _ in chosen), window_end) - first
            if span < 3.0:
                continue
            shift = float(rng.uniform(0.0, 0.25)) - first
            level, drift = rng.uniform(45.0, 110.0), rng.uniform(-20.0, 20.0)
            jitter = rng.normal(0.0, 5.0, size=len(chosen))
            notes = [
                Note(
                    pitch=min(max(p + transpose, 0), 127),
                    velocity=int(np.clip(round(level + drift * (s - first) / max(span, 1e-6) + j), 1, 127)),
                    start=s + shift,
                    end=min(e, window_end) + shift,
                )
                for (s, e, p), j in zip(chosen, jitter)
            ]
            stems.append(
                SourceStem(
                    label=f"part{index}-seg{segment}",
                    source=f"music21:{piece.id}:part{index}",
                    notes=tuple(clean_notes(notes)),
                    tempo_bpm=bpm,
                    offset_s=window_start,
                )
            )
    return stems
