"""File-to-file transfer: a timbre reference and a structure file (audio or MIDI) -> an audio file.

:func:`transfer_files` checks every argument first (one clear :class:`~after.errors.AfterError`
per problem), loads the model, then runs the streaming pipeline block by block with a progress bar
(the result equals the offline call, see :mod:`after.runtime.pipeline`). The output has the model's
sample rate; its format follows the extension (.wav or .flac). An audio structure of any format,
rate and channel count is resampled / mixed down (with a notice) and the output has its length; a
MIDI structure gives its duration plus ``tail_s`` seconds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from after.errors import BadInputError, MidiFileError
from after.runtime.protocol import check_parameter

log = logging.getLogger(__name__)

MIDI_EXTENSIONS = (".mid", ".midi")
OUTPUT_EXTENSIONS = (".wav", ".flac")


def parse_numbers(name: str, text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0.1,-0.2,0.3"`` (or a sequence) -> floats; a value that is not a number is refused."""
    if isinstance(text, str):
        parts = [part.strip() for part in text.split(",")]
        try:
            return tuple(float(part) for part in parts)
        except ValueError:
            raise BadInputError(f"{name}={text!r}: expected numbers separated by commas") from None
    return tuple(float(value) for value in text)


def _load_structure_audio(path: Path, sample_rate: int) -> np.ndarray:
    from after.data.audio import audio_info, load_audio

    info = audio_info(path)
    if info.sample_rate != sample_rate:
        log.info("%s: resampling from %d Hz to the model's %d Hz", path, info.sample_rate, sample_rate)
    if info.channels > 1:
        log.info("%s: mixing %d channels down to mono", path, info.channels)
    audio, _ = load_audio(path, sample_rate, mono=True)
    return audio[0]


def transfer_files(
    structure: str | Path,
    out: str | Path,
    timbre: str | Path | None = None,
    model: str | Path | None = None,
    steps: int | None = None,
    guidance_timbre: float | None = None,
    guidance_structure: float | None = None,
    timbre_vector: str | Sequence[float] | None = None,
    map_xy: str | Sequence[float] | None = None,
    chunk: int | None = None,
    seed: int = 0,
    tail_s: float = 1.0,
    progress: bool = True,
    int8: bool = False,
    scripted: bool = False,
) -> Path:
    """Generate ``out`` from ``structure`` with the timbre of ``timbre`` (or a vector / map point).

    ``int8``: int8 weights (2-3x faster per block, output within 2-3 % relative error of fp32);
    ``scripted``: run the blocks through the TorchScript engine (same output, less Python overhead;
    scripting costs a few seconds up front, so it pays off on long files and small chunks).
    Returns the written path. Raises :class:`~after.errors.AfterError` subclasses for bad input.
    """
    from after.data.audio import save_audio
    from after.runtime.bundle import default_model_name, load_bundle
    from after.runtime.pipeline import build_pipeline

    structure, out = Path(structure), Path(out)
    if out.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise BadInputError(f"{out}: output must be a .wav or .flac file")
    if steps is not None:
        check_parameter("steps", steps)
    for name, value in (("guidance_timbre", guidance_timbre), ("guidance_structure", guidance_structure)):
        if value is not None:
            check_parameter(name, value)
    if not structure.is_file():
        raise BadInputError(f"{structure}: structure file not found")
    vector = parse_numbers("timbre vector", timbre_vector) if timbre_vector is not None else None
    point = parse_numbers("map position", map_xy) if map_xy is not None else None
    if vector is None and point is None:
        if timbre is None:
            raise BadInputError("no timbre: give a reference file (--timbre), --timbre-vector or --map-xy")
        if not Path(timbre).is_file():
            raise BadInputError(f"{timbre}: timbre reference file not found")
    if tail_s < 0 or not math.isfinite(tail_s):
        raise BadInputError(f"tail={tail_s}: expected seconds >= 0")

    is_midi = structure.suffix.lower() in MIDI_EXTENSIONS
    bundle = load_bundle(default_model_name("midi" if is_midi else "audio") if model is None else model)
    if is_midi and bundle.mode != "midi":
        raise BadInputError(
            f"{structure}: model {bundle.name!r} takes its structure from audio, not from a MIDI file"
        )
    if not is_midi and bundle.mode == "midi":
        raise BadInputError(
            f"{structure}: model {bundle.name!r} is a MIDI model: give a .mid file as structure, not audio"
        )
    pipeline = build_pipeline(
        bundle,
        chunk=chunk,
        steps=steps,
        guidance_timbre=guidance_timbre,
        guidance_structure=guidance_structure,
        seed=seed,
        int8=int8,
        scripted=scripted,
    )
    if vector is not None:
        pipeline.set_parameter("timbre_vector", vector)
    elif point is not None:
        pipeline.set_parameter("map_xy", point)
    else:
        pipeline.set_timbre_file(timbre)

    rate = bundle.sample_rate
    if is_midi:
        from after.data.midi import load_notes

        notes = load_notes(structure)
        if not notes:
            raise MidiFileError(structure, "holds no notes")
        duration = max(note.end for note in notes) + tail_s
        roll = pipeline.roll_of_notes(notes, duration)
        audio = pipeline.transfer_stream(roll, progress=progress)[:, : round(duration * rate)]
    else:
        signal = _load_structure_audio(structure, rate)
        audio = pipeline.transfer_stream(signal, progress=progress)
    save_audio(out, audio, rate)
    log.info("wrote %s: %.2f s at %d Hz (model %s)", out, audio.shape[1] / rate, rate, bundle.name)
    return out
