"""Structure twins: every chunk's notes played again by an instrument of another family, encoded.

An audio-to-audio model learns to take the notes from the structure input and the sound from the
timbre reference. When the structure input is the target itself, nothing stops the structure
encoder from passing the target's timbre on as well (only the adversarial classifier pushes back),
and the trained model then copies the structure's instrument whatever the reference. A synthetic
corpus has the notes of every chunk, so the same notes can be rendered by another instrument: a
*twin*, time-aligned with the chunk, that shares its structure but not its timbre. Training with
the twin as structure input (``after train --structure-twins P``) makes timbre in ``s`` useless for
the target, so the model has to read it from the reference.

A chunk's twin (``after encode DATA --codec C --twins``) is rendered by FluidSynth from the chunk's
notes (times clipped to the chunk), with one of the training soundfonts and a program drawn from
another family whose pitch range holds every note of the chunk; it is scaled to the chunk's RMS
level and encoded by the codec. Its latents are stored under ``latents/<codec_id>.twin``
(:func:`twin_id`). A chunk without notes (or whose notes no other family can play) gets its own
latents as twin, so every chunk has one and training needs no special case. All choices are seeded
by the chunk key and ``seed``: the same dataset always gets the same twins. The run is resumable
like ``after encode``: chunks that already hold twin latents are skipped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from after.codec.load import CodecHandle
from after.data.instruments import choose_program, eligible_programs, family_of, program_range
from after.data.midi import Note, notes_from_array
from after.errors import DatasetError

log = logging.getLogger(__name__)

TWIN_SUFFIX = ".twin"


def twin_id(codec_id: str) -> str:
    """Latent id under which the twins encoded by codec ``codec_id`` are stored."""
    return codec_id + TWIN_SUFFIX


def twin_program(key: str, notes: Sequence[Note], own_program: int, seed: int = 0) -> int | None:
    """A program of another family than ``own_program``'s whose range holds every pitch of ``notes``.

    Drawn with :func:`after.data.instruments.choose_program` (family first), seeded by ``key`` and
    ``seed``. ``None`` when ``notes`` is empty or no such program exists.
    """
    if not notes:
        return None
    low, high = min(n.pitch for n in notes), max(n.pitch for n in notes)
    own_family = family_of(own_program) if 0 <= own_program < 128 else None
    candidates = [
        p
        for p in eligible_programs()
        if family_of(p) != own_family and program_range(p)[0] <= low and high <= program_range(p)[1]
    ]
    if not candidates:
        return None
    return choose_program(_rng(key, seed, "program"), candidates)


def _rng(key: str, seed: int, salt: str) -> np.random.Generator:
    digest = int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, digest]))


def clip_to_chunk(notes: Sequence[Note], duration_s: float) -> list[Note]:
    """Pitched notes cut to ``[0, duration_s)``: a note held over the chunk start starts at 0, one
    held over its end stops there; drum notes and notes left with no duration are dropped."""
    clipped = []
    for note in notes:
        if note.is_drum:
            continue
        start, end = max(note.start, 0.0), min(note.end, duration_s)
        if end > start:
            clipped.append(Note(pitch=note.pitch, velocity=note.velocity, start=start, end=end))
    return clipped


def render_twin(
    renderer, notes: Sequence[Note], soundfont: str, program: int, reference: np.ndarray
) -> np.ndarray:
    """``notes`` played by ``program`` for exactly ``reference.size`` samples, at the RMS level of
    ``reference`` (float32 ``[T]``), peak kept below 0.99 (``renderer`` is a
    :class:`after.data.render.FluidRenderer` at the reference's sample rate)."""
    length = reference.size
    audio = renderer.render(list(notes), soundfont, program, tail_s=0.0)
    audio = np.pad(audio[:length], (0, max(0, length - audio.size))).astype(np.float32)
    level, own = float(np.sqrt(np.mean(reference**2))), float(np.sqrt(np.mean(audio**2)))
    if own > 0 and level > 0:
        audio *= level / own
    peak = float(np.max(np.abs(audio), initial=0.0))
    if peak > 0.99:
        audio *= 0.99 / peak
    return audio


def add_structure_twins(
    path: str | Path,
    codec: CodecHandle,
    soundfonts: Sequence[str] | None = None,
    batch_size: int = 16,
    dtype: str = "float16",
    seed: int = 0,
    progress: bool = True,
) -> int:
    """Render and encode the twin of every chunk of dataset ``path`` that has none yet (module doc).

    Args:
        path: dataset folder (``after prepare``); its chunks need their notes (a corpus with MIDI).
        codec: the codec whose latents the twins go with.
        soundfonts: soundfont files to draw from; default the training soundfonts.
        batch_size: chunks encoded per batch and per transaction.
        dtype: stored latent type, ``"float16"`` or ``"float32"``.
        seed: seed of the program and soundfont choices.
        progress: show a progress bar.

    Returns the number of chunks that got a twin in this call (rendered or, without notes, their own
    audio). Raises :class:`DatasetError` when none of the first 64 chunks holds notes (a dataset
    made without MIDI).
    """
    from after.data.encode import encode_dataset
    from after.data.records import ChunkRecord, open_dataset
    from after.data.render import FluidRenderer
    from after.data.synth import SOUNDFONT_FOLDER, TRAINING_SOUNDFONTS

    fonts = (
        [str(f) for f in soundfonts]
        if soundfonts
        else [str(SOUNDFONT_FOLDER / name) for name in TRAINING_SOUNDFONTS.values()]
    )
    for font in fonts:
        if not Path(font).is_file():
            raise DatasetError(f"soundfont {font} not found (expected a .sf2/.sf3 file)")
    with open_dataset(path) as store:
        program_of = {k: int(e.info.get("program", -1)) for e in store.files().values() for k in e.chunk_keys}
        keys = store.chunk_keys()
        if keys and not any(store.get(k).notes.size for k in keys[: min(len(keys), 64)]):
            raise DatasetError(
                f"{path}: the chunks hold no notes, so they cannot be played by another instrument; "
                "structure twins need a corpus with MIDI (`after synth`)"
            )
    renderer = FluidRenderer(fonts, codec.sample_rate)
    rendered = 0

    def twin_audio(key: str, record: ChunkRecord, audio: np.ndarray) -> np.ndarray:
        nonlocal rendered
        notes = clip_to_chunk(notes_from_array(record.notes), audio.size / codec.sample_rate)
        program = twin_program(key, notes, program_of.get(key, -1), seed)
        if program is None:
            return audio  # no notes another family can play: the chunk itself
        rendered += 1
        font = fonts[int(_rng(key, seed, "soundfont").integers(len(fonts)))]
        return render_twin(renderer, notes, font, program, audio)

    try:
        done = encode_dataset(
            path, codec, batch_size=batch_size, dtype=dtype, progress=progress,
            latent_id=twin_id(codec.codec_id), source=twin_audio,
        )  # fmt: skip
    finally:
        renderer.close()
    log.info(
        "%s: %d twin(s), %d played by another instrument, %d kept as is",
        path,
        done,
        rendered,
        done - rendered,
    )
    return done
