"""Small but real streaming pipelines that the runtime tests drive through the live host.

They implement :class:`after.runtime.protocol.StreamingPipeline` exactly as the model pipelines
must: streaming state carried between blocks, parameters validated with ``check_parameter``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from after.errors import BadInputError
from after.runtime.protocol import check_parameter
from after.runtime.voices import VoiceFrames

TIMBRE_DIMS = 4


class _Parameters:
    """Parameter storage shared by the test pipelines."""

    def _init_parameters(self) -> None:
        self._values: dict[str, Any] = {
            "steps": 4,
            "guidance_timbre": 1.0,
            "guidance_structure": 1.0,
            "timbre_vector": (0.0,) * TIMBRE_DIMS,
            "map_xy": (0.0, 0.0),
            "timbre_file": None,
        }

    def set_parameter(self, name: str, value: Any) -> None:
        self._values[name] = check_parameter(name, value, timbre_dims=TIMBRE_DIMS)

    def parameters(self) -> dict[str, Any]:
        return dict(self._values)


class GainDelayPipeline(_Parameters):
    """Audio mode: ``out[n] = guidance_structure * in[n - delay]`` (a delay line across blocks)."""

    mode = "audio"
    input_channels = 1
    n_voices = 1

    def __init__(self, sample_rate: int = 44100, hop_length: int = 512, frames: int = 4, delay: int = 300):
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.block_size = hop_length * frames
        self.latency_samples = delay
        self.delay = delay
        self.samples_seen = 0
        self._init_parameters()
        self.reset()

    def reset(self) -> None:
        self._history = np.zeros((1, self.delay), dtype=np.float32)

    def process(self, block: np.ndarray, notes: VoiceFrames | None) -> np.ndarray:
        if block.shape != (1, self.block_size) or block.dtype != np.float32 or notes is not None:
            raise BadInputError(f"block {block.shape} {block.dtype}, notes {notes}: not what audio mode gets")
        self.samples_seen += block.shape[1]
        joined = np.concatenate([self._history, block], axis=1)  # [1, delay + block]
        self._history = joined[:, joined.shape[1] - self.delay :].copy()
        gain = np.float32(self._values["guidance_structure"])
        return gain * joined[:, : self.block_size]


class SineSynthPipeline(_Parameters):
    """MIDI mode: one sine per voice at its pitch, amplitude ``velocity / 127 * guidance_timbre``.

    Every ``VoiceFrames`` it receives is kept in ``received``.
    """

    mode = "midi"
    input_channels = 0
    latency_samples = 0

    def __init__(self, sample_rate: int = 44100, hop_length: int = 512, frames: int = 4, n_voices: int = 4):
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.frames = frames
        self.block_size = hop_length * frames
        self.n_voices = n_voices
        self.received: list[VoiceFrames] = []
        self._init_parameters()
        self.reset()

    def reset(self) -> None:
        self._phase = np.zeros(self.n_voices)

    def process(self, block: np.ndarray, notes: VoiceFrames | None) -> np.ndarray:
        if (
            block.shape != (0, self.block_size)
            or notes is None
            or notes.pitch.shape
            != (
                self.n_voices,
                self.frames,
            )
        ):
            raise BadInputError(f"block {block.shape}, notes {notes}: not what MIDI mode gets")
        self.received.append(notes)
        hz = 440.0 * 2.0 ** ((notes.pitch.astype(np.float64) - 69.0) / 12.0)  # [V, L]
        hz = np.repeat(hz, self.hop_length, axis=1)  # [V, L] -> [V, L * hop]
        amplitude = np.repeat(notes.velocity / 127.0, self.hop_length, axis=1)  # [V, L * hop]
        phase = self._phase[:, None] + np.cumsum(2 * np.pi * hz / self.sample_rate, axis=1)  # [V, T]
        self._phase = np.mod(phase[:, -1], 2 * np.pi)
        gain = self._values["guidance_timbre"]
        out = gain * (amplitude * np.sin(phase)).sum(axis=0, keepdims=True)  # [V, T] -> [1, T]
        return out.astype(np.float32)
