"""The contract between a streaming pipeline and the hosts that drive it.

A *streaming pipeline* turns a stream of input blocks (audio, or MIDI voices) into a stream of
output audio blocks, one call per block, keeping whatever context it needs between calls. The
live host (:mod:`after.runtime.live`) drives it from a sound card, a MIDI port and OSC; the same
pipeline runs file to file. The host never looks inside a pipeline: it only uses what is below.

Block layout. One call consumes and produces ``block_size`` samples at ``sample_rate`` Hz.
``block_size = frames_per_block * hop_length``, where ``hop_length`` is the number of samples per
latent frame of the codec and ``frames_per_block`` the number of latent frames generated per call
(the chunk size). Audio is float32 ``[channels, samples]``, nominally in [-1, 1].

Call sequence from the host::

    pipeline.reset()                                  # once before streaming, and on /after/reset
    for each block:
        for name, value in pending updates:           # between calls only, never during one
            pipeline.set_parameter(name, value)       # BadInputError -> the host logs and goes on
        out = pipeline.process(block, notes)          # [1, block_size] float32

``process`` is called from one worker thread, never concurrently with itself, ``set_parameter``
or ``reset`` (the host serialises them), and never from the audio callback.

Parameters (names, types and ranges; :func:`check_parameter` validates them all):

==========================  ================================  ============================================
name                        value                             meaning
==========================  ================================  ============================================
``steps``                   int >= 1                          sampling (Euler) steps per block
``guidance_timbre``         float >= 0                        timbre guidance scale
``guidance_structure``      float >= 0                        structure guidance scale
``timbre_vector``           sequence of ZT floats in [-1, 1]  timbre given by hand (the sliders)
``map_xy``                  (x, y), both in [-1, 1]           position on the 2-D timbre map
``timbre_file``             path of an existing audio file    timbre taken from a reference recording
==========================  ================================  ============================================

A pipeline may refuse a value that is valid here (e.g. a timbre vector of the wrong length ZT,
a map it does not have) by raising :class:`~after.errors.BadInputError` with a message naming the
parameter, the value and what was expected. It must never leave itself half-updated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from after.errors import BadInputError
from after.runtime.voices import VoiceFrames

PipelineMode = Literal["audio", "midi"]

PARAMETER_NAMES: tuple[str, ...] = (
    "steps",
    "guidance_timbre",
    "guidance_structure",
    "timbre_vector",
    "map_xy",
    "timbre_file",
)
"""Every parameter name a host may set (see the module docstring)."""


@runtime_checkable
class StreamingPipeline(Protocol):
    """What the live host drives; implemented by the audio-to-audio and MIDI-to-audio pipelines.

    Attributes:
        sample_rate: Hz of the input and output audio.
        block_size: samples per call, ``frames_per_block * hop_length``.
        hop_length: samples per latent frame (the codec's compression ratio).
        latency_samples: algorithmic latency: how many samples later than its cause an output
            sample appears, from the pipeline alone (codec + encoders + chunking), not counting
            any host buffering. An input impulse at sample ``n`` shows in the output at sample
            ``n + latency_samples``.
        input_channels: audio channels ``process`` expects: 1 in audio mode (the structure
            signal), 0 in MIDI mode (the block is then an empty ``[0, block_size]`` array).
        mode: ``"audio"`` (structure from audio) or ``"midi"`` (structure from MIDI voices).
        n_voices: polyphony the pipeline reads in MIDI mode (any value >= 1; ignored in audio mode).
    """

    sample_rate: int
    block_size: int
    hop_length: int
    latency_samples: int
    input_channels: int
    mode: PipelineMode
    n_voices: int

    def process(self, block: np.ndarray, notes: VoiceFrames | None) -> np.ndarray:
        """Generate the next block of audio.

        Args:
            block: float32 ``[input_channels, block_size]``, the next input samples (structure
                audio in audio mode; ``[0, block_size]`` in MIDI mode).
            notes: MIDI mode: the voices over the block's ``frames_per_block`` latent frames
                (:class:`~after.runtime.voices.VoiceFrames` with ``[n_voices, frames_per_block]``
                arrays; its :meth:`~after.runtime.voices.VoiceFrames.piano_roll` gives the roll
                seen in training). Audio mode: None.

        Returns:
            float32 ``[1, block_size]``, the next output samples. Must not keep a reference to
            ``block`` (the host reuses its memory).
        """
        ...

    def set_parameter(self, name: str, value: Any) -> None:
        """Change one parameter (see the table in the module docstring) before the next block.

        Raises:
            BadInputError: unknown name or unusable value; the pipeline is left unchanged.
        """
        ...

    def parameters(self) -> dict[str, Any]:
        """Current value of every parameter the pipeline supports, by name."""
        ...

    def reset(self) -> None:
        """Forget all streaming context (caches, noise position, voices); parameters are kept."""
        ...


def frames_per_block(pipeline: StreamingPipeline) -> int:
    """Latent frames per call: ``block_size // hop_length`` (checks that it divides exactly)."""
    if pipeline.hop_length <= 0 or pipeline.block_size % pipeline.hop_length:
        raise BadInputError(
            f"pipeline block_size={pipeline.block_size}, hop_length={pipeline.hop_length}: "
            "expected a block size that is a positive multiple of the hop length"
        )
    return pipeline.block_size // pipeline.hop_length


def _finite_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{name}={value!r}: expected a number") from None
    if isinstance(value, (bool, str)) or not math.isfinite(number):
        raise BadInputError(f"{name}={value!r}: expected a finite number")
    return number


def _unit_floats(name: str, value: Any, expected_length: int | None) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise BadInputError(f"{name}={value!r}: expected a sequence of numbers in [-1, 1]")
    numbers = tuple(_finite_float(name, item) for item in value)
    if expected_length is not None and len(numbers) != expected_length:
        raise BadInputError(f"{name}: got {len(numbers)} values, expected {expected_length}")
    if not numbers or any(abs(number) > 1.0 for number in numbers):
        raise BadInputError(f"{name}={list(numbers)}: expected values in [-1, 1]")
    return numbers


def check_parameter(name: str, value: Any, timbre_dims: int | None = None) -> Any:
    """Validate and normalise one parameter value; raises BadInputError naming it if unusable.

    Returns ``int`` for steps, ``float`` for the guidance scales, a tuple of floats for
    ``timbre_vector`` (of length ``timbre_dims`` when given) and ``map_xy``, and a
    :class:`~pathlib.Path` to an existing file for ``timbre_file``.
    """
    if name == "steps":
        number = _finite_float(name, value)
        if number != int(number) or number < 1:
            raise BadInputError(f"steps={value!r}: expected an integer >= 1")
        return int(number)
    if name in ("guidance_timbre", "guidance_structure"):
        number = _finite_float(name, value)
        if number < 0:
            raise BadInputError(f"{name}={value!r}: expected a number >= 0")
        return number
    if name == "timbre_vector":
        return _unit_floats(name, value, timbre_dims)
    if name == "map_xy":
        return _unit_floats(name, value, 2)
    if name == "timbre_file":
        if not isinstance(value, (str, Path)) or not str(value):
            raise BadInputError(f"timbre_file={value!r}: expected the path of an audio file")
        path = Path(value)
        if not path.is_file():
            raise BadInputError(f"timbre_file {path}: no such file (expected an audio file)")
        return path
    raise BadInputError(f"unknown parameter {name!r}; expected one of {', '.join(PARAMETER_NAMES)}")
