"""The triplet protocol for timbre transfer, rendered with FluidSynth from held-out MIDI.

A :class:`Triplet` holds three note lists cut from two different held-out source stems A and B:

- **content**: A played by program P1 with soundfont S1 (the structure input);
- **style**: B played by program P2 with soundfont S2 (the timbre reference);
- **target**: A played by P2 with S2, the ground truth of a perfect transfer.

Style and target share soundfont and program, so distances to the target measure timbre and not
the soundfont. Content and target share the very same notes (times, pitches, velocities): A is
moved by whole octaves into the pitch range both programs play. For MIDI-to-audio transfer the
structure input is ``content_notes`` itself and the target is the same target audio.

Target programs cycle through the instrument families (every pitched family by default, 14), so
a set of ``n >= 14`` triplets covers each family; P1 comes from another family. Everything is
drawn from ``numpy.random.default_rng(seed)``: the same sources and seed give the same triplets.
Sources must be held out from training (``split == "heldout"``); others are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from after.data.gm import family_of
from after.data.instruments import PITCHED_FAMILIES, eligible_programs, fold_into_range, program_range
from after.data.instruments import octave_shift_to_range as _octave_shift
from after.data.midi import Note
from after.data.stems import assign_program, clean_notes
from after.errors import BadInputError, DatasetError

logger = logging.getLogger(__name__)

SOUNDFONT_FOLDER = Path("/usr/share/sounds/sf2")
DEFAULT_SOUNDFONTS: tuple[str, ...] = (
    str(SOUNDFONT_FOLDER / "FluidR3_GM.sf2"),
    str(SOUNDFONT_FOLDER / "TimGM6mb.sf2"),
)
MIN_SHARED_RANGE = 12  # semitones both programs must play for a content/target pair
MIN_NOTES = 3


@dataclass(frozen=True)
class EvalSource:
    """One held-out stem: ``key`` names it (piece key + stem label), ``split`` is its corpus split."""

    key: str
    notes: tuple[Note, ...]
    split: str = "heldout"


@dataclass(frozen=True)
class Triplet:
    """Notes and instruments of one content/style/target triplet (see module doc); times in s."""

    index: int
    content_key: str
    style_key: str
    content_program: int
    target_program: int
    content_soundfont: str
    target_soundfont: str  # also the style's soundfont
    content_notes: tuple[Note, ...]  # A, program P1; also the MIDI structure input
    style_notes: tuple[Note, ...]  # B, program P2
    target_notes: tuple[Note, ...]  # A, program P2: same times/pitches/velocities as content
    duration_s: float  # every render of the triplet has exactly this length

    @property
    def family(self) -> str:
        """Family of the target (timbre) program, used to group results."""
        return family_of(self.target_program)


@dataclass(frozen=True)
class RenderedTriplet:
    """Audio ``[T]`` float32 of a triplet's three parts, all of length ``duration_s * sample_rate``."""

    triplet: Triplet
    content: np.ndarray
    style: np.ndarray
    target: np.ndarray
    sample_rate: int


def clip_notes(notes: Sequence[Note], clip_s: float, lead_s: float = 0.1) -> list[Note]:
    """Notes starting in the first ``clip_s`` seconds after the first onset, cut at ``clip_s`` and
    shifted so that the first onset is at ``lead_s``; drums dropped."""
    melodic = sorted((n for n in notes if not n.is_drum), key=lambda n: (n.start, n.pitch))
    if not melodic:
        return []
    first = melodic[0].start
    shift = lead_s - first
    return [
        replace(n, start=n.start + shift, end=min(n.end, first + clip_s) + shift)
        for n in melodic
        if n.start < first + clip_s
    ]


def _shared_range(program_a: int, program_b: int) -> tuple[int, int] | None:
    low_a, high_a = program_range(program_a)
    low_b, high_b = program_range(program_b)
    low, high = max(low_a, low_b), min(high_a, high_b)
    return (low, high) if high - low >= MIN_SHARED_RANGE else None


def _move_into(notes: Sequence[Note], low: int, high: int) -> list[Note]:
    shift = _octave_shift([n.pitch for n in notes], low, high)
    return clean_notes([replace(n, pitch=fold_into_range(n.pitch + shift, low, high)) for n in notes])


def build_triplets(
    sources: Sequence[EvalSource],
    n: int,
    seed: int = 0,
    soundfonts: Sequence[str] = DEFAULT_SOUNDFONTS,
    families: Sequence[str] = PITCHED_FAMILIES,
    clip_s: float = 8.0,
    tail_s: float = 1.0,
) -> list[Triplet]:
    """Draw ``n`` triplets from held-out ``sources`` (deterministic for a ``seed``).

    Target families cycle through ``families`` in a seeded order; content and style stems are two
    different sources; each part is clipped to ``clip_s`` seconds and rendered ``tail_s`` longer.

    Raises:
        BadInputError: a source is not held out, or a family cannot be rendered.
        DatasetError: fewer than two usable sources.
    """
    training = [s.key for s in sources if s.split != "heldout"]
    if training:
        raise BadInputError(
            f"evaluation sources must be held out from training; {len(training)} are not, "
            f"e.g. {training[0]!r}"
        )
    usable = [(s.key, clip_notes(s.notes, clip_s)) for s in sources]
    usable = [(key, notes) for key, notes in usable if len(notes) >= MIN_NOTES]
    if len(usable) < 2:
        raise DatasetError(f"need at least 2 held-out sources with >= {MIN_NOTES} notes, got {len(usable)}")
    if not soundfonts:
        raise BadInputError("build_triplets: expected at least one soundfont")
    programs = eligible_programs(families)
    by_family = {f: [p for p in programs if family_of(p) == f] for f in families}
    rng = np.random.default_rng(seed)
    family_order = [families[i] for i in rng.permutation(len(families))]
    triplets: list[Triplet] = []
    for index in range(n):
        family = family_order[index % len(family_order)]
        members = by_family[family]
        target_program = members[int(rng.integers(len(members)))]
        others = [p for p in programs if family_of(p) != family and _shared_range(p, target_program)]
        if not others:
            raise BadInputError(
                f"no content program shares {MIN_SHARED_RANGE} semitones with {target_program}"
            )
        content_program = others[int(rng.integers(len(others)))]
        a, b = (int(i) for i in rng.choice(len(usable), size=2, replace=False))
        (content_key, a_notes), (style_key, b_notes) = usable[a], usable[b]
        low, high = _shared_range(content_program, target_program)  # type: ignore[misc]
        shared = _move_into(a_notes, low, high)
        style = assign_program(b_notes, target_program)
        content_soundfont = str(soundfonts[int(rng.integers(len(soundfonts)))])
        target_soundfont = str(soundfonts[int(rng.integers(len(soundfonts)))])
        triplets.append(
            Triplet(
                index=index,
                content_key=content_key,
                style_key=style_key,
                content_program=content_program,
                target_program=target_program,
                content_soundfont=content_soundfont,
                target_soundfont=target_soundfont,
                content_notes=tuple(replace(n, program=content_program) for n in shared),
                style_notes=tuple(style),
                target_notes=tuple(replace(n, program=target_program) for n in shared),
                duration_s=clip_s + 0.1 + tail_s,
            )
        )
    return triplets


def heldout_sources(n_pieces: int, seed: int = 0, music21_share: float = 0.0) -> list[EvalSource]:
    """Stems of the first ``n_pieces`` held-out pieces of ``after synth``'s plan for ``seed``.

    The held-out rule is the corpus renderer's (:func:`after.data.synth.split_of`), so none of
    these pieces is ever rendered for training. ``music21_share`` > 0 mixes in corpus pieces
    (slower: music21 parses them).
    """
    from after.data.music21_source import piece_stems
    from after.data.procedural import generate_piece
    from after.data.synth import SynthConfig, plan_jobs, split_of

    config = SynthConfig(minutes=1.0, seed=seed, split="heldout", music21_share=music21_share)
    sources: list[EvalSource] = []
    for job, _ in zip(plan_jobs(config), range(n_pieces)):
        rng = np.random.default_rng(np.random.SeedSequence([*job.entropy, 1]))
        stems = generate_piece(rng) if job.piece is None else piece_stems(job.piece, rng)
        for stem in stems:
            sources.append(EvalSource(f"{job.key}:{stem.label}", tuple(stem.notes), split_of(job.key)))
    return sources


def render_notes(
    renderer, notes: Sequence[Note], soundfont: str, program: int, duration_s: float
) -> np.ndarray:
    """Render notes with ``renderer`` (an :class:`after.data.render.FluidRenderer`) to exactly
    ``duration_s`` seconds, peak-normalised to -1 dBFS: float32 ``[T]``."""
    from after.data.render import peak_normalise

    length = round(duration_s * renderer.sample_rate)
    last_end = max((n.end for n in notes), default=0.0)
    audio = renderer.render(list(notes), soundfont, program, max(duration_s - last_end, 0.0) + 0.05)
    audio = np.pad(audio[:length], (0, max(0, length - audio.size)))
    return peak_normalise(audio.astype(np.float32))[0]


def make_renderer(soundfonts: Sequence[str], sample_rate: int):
    """A FluidSynth renderer holding ``soundfonts`` at ``sample_rate`` Hz."""
    from after.data.render import FluidRenderer

    return FluidRenderer(list(soundfonts), sample_rate)


def render_triplet(triplet: Triplet, renderer) -> RenderedTriplet:
    """Render the three parts of ``triplet`` with ``renderer`` (see :func:`make_renderer`)."""
    content = render_notes(
        renderer,
        triplet.content_notes,
        triplet.content_soundfont,
        triplet.content_program,
        triplet.duration_s,
    )
    style = render_notes(
        renderer, triplet.style_notes, triplet.target_soundfont, triplet.target_program, triplet.duration_s
    )
    target = render_notes(
        renderer, triplet.target_notes, triplet.target_soundfont, triplet.target_program, triplet.duration_s
    )
    return RenderedTriplet(triplet, content, style, target, renderer.sample_rate)


def timbre_training_notes(
    sources: Sequence[EvalSource],
    programs: Sequence[int],
    soundfonts: Sequence[str] = DEFAULT_SOUNDFONTS,
    per_program: int = 6,
    clip_s: float = 8.0,
    seed: int = 0,
) -> list[tuple[tuple[Note, ...], str, int]]:
    """``(notes, soundfont, program)`` of every timbre-ID training render (see
    :func:`timbre_training_set`), program by program, ``per_program`` each."""
    rng = np.random.default_rng(seed)
    usable = [clip_notes(s.notes, clip_s) for s in sources]
    usable = [notes for notes in usable if len(notes) >= MIN_NOTES]
    if not usable:
        raise DatasetError(f"no source with >= {MIN_NOTES} notes for timbre-ID training")
    if not soundfonts:
        raise BadInputError("timbre_training_notes: expected at least one soundfont")
    candidates = eligible_programs()
    renders = []
    for program in programs:
        partners = [p for p in candidates if family_of(p) != family_of(program) and _shared_range(p, program)]
        if not partners:
            raise BadInputError(f"no program shares {MIN_SHARED_RANGE} semitones with {program}")
        for k in range(per_program):
            notes = usable[int(rng.integers(len(usable)))]
            low, high = _shared_range(partners[int(rng.integers(len(partners)))], program)  # type: ignore[misc]
            moved = tuple(replace(n, program=int(program)) for n in _move_into(notes, low, high))
            renders.append((moved, str(soundfonts[k % len(soundfonts)]), int(program)))
    return renders


def timbre_training_set(
    sources: Sequence[EvalSource],
    programs: Sequence[int],
    renderer,
    soundfonts: Sequence[str] = DEFAULT_SOUNDFONTS,
    per_program: int = 6,
    clip_s: float = 8.0,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[int]]:
    """Clips and program labels for training a timbre-ID classifier: ``per_program`` renders of
    each program, ``clip_s + 0.5`` seconds long, of sources drawn at random (pass sources not used
    by the triplets), cycling through the soundfonts.

    Each render plays its notes in the register where :func:`build_triplets` plays the program:
    moved into the range it shares with a random program of another family (as a target shares
    its range with the content's program), so the classifier learns each program where it is
    heard in the protocol.
    """
    renders = timbre_training_notes(sources, programs, soundfonts, per_program, clip_s, seed)
    clips = [render_notes(renderer, notes, sf, program, clip_s + 0.5) for notes, sf, program in renders]
    return clips, [program for _, _, program in renders]
