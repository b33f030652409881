"""Offline and streaming generation: audio-to-audio and MIDI-to-audio pipelines.

Both pipelines implement :class:`after.runtime.protocol.StreamingPipeline` (``process(block)``
for hosts) and offer an offline call on whole signals. Both paths run the same modules of one
:class:`~after.runtime.engine.TransferEngine` with the same position-addressed noise
(:mod:`after.runtime.noise`), so streaming a signal block by block gives the offline result:

* offline: the codec encodes the whole (padded) structure, the diffusion model samples the whole
  latent sequence at once (:meth:`~after.diffusion.sampler.GuidedSampler.sample`, full chunk-causal
  mask), the codec decodes it; the structure is padded to whole blocks and the output cropped back;
* streaming: each block of ``chunk`` latent frames goes through the same layers in streaming mode
  (convolution states, per-step KV caches).

Settings: ``chunk`` (latent frames per block, a multiple of the model's K: latency against CPU
load, block size ``chunk * hop``), ``steps``, ``guidance_timbre``, ``guidance_structure``,
``seed`` (noise), and the timbre, from one of:

* a reference recording (``timbre_file`` or :meth:`set_timbre_audio`): encoded whole, once;
* a vector of ZT values (``timbre_vector``) or a point of the 2-D map (``map_xy``);
* a live stream (``live_timbre=True``, audio mode): the block's second input channel is a timbre
  signal; the vector is recomputed from its last ``timbre_window`` latent frames whenever
  ``timbre_every`` new frames have arrived (every ``ceil(timbre_every / chunk)`` blocks), and held
  in between. Before any timbre is given the vector is zero (the centre of the timbre space).

Speed options (both off by default; ``after live`` scripts by default): ``int8`` weights
(:func:`after.runtime.engine.quantize_engine`, 2-3x faster per block, output within 2-3 % relative
error of fp32), and ``scripted``: the streaming path (:meth:`TransferPipeline.process`) runs a
``torch.jit.script`` copy of the engine that shares its weights (:meth:`TransferPipeline.use_script`),
which removes the per-layer Python overhead (with int8 weights, 1-frame blocks then run in real
time on one core); its output equals the eager engine's (tested to 1e-5). The offline calls always
run the eager engine.

Latency (``latency_samples``, beyond the one block a block-based host waits for): the codec's
filter-bank delay (encoder + decoder in audio mode, decoder only in MIDI mode); the structure
encoder and the denoiser are causal at the block scale and add none.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from after.errors import BadInputError
from after.nn.streaming import StreamingModule
from after.runtime.bundle import ModelBundle
from after.runtime.engine import TransferEngine, copy_stream_state, quantize_engine, script_engine
from after.runtime.noise import positional_noise
from after.runtime.protocol import check_parameter
from after.runtime.voices import VoiceFrames

log = logging.getLogger(__name__)


@contextlib.contextmanager
def offline_mode(module: nn.Module) -> Iterator[None]:
    """Run ``module`` offline inside the block without touching its streaming state."""
    flags = [(m, m.streaming) for m in module.modules() if isinstance(m, StreamingModule)]
    for m, _ in flags:
        m.streaming = False
    try:
        yield
    finally:
        for m, flag in flags:
            m.streaming = flag


class TransferPipeline:
    """Common part of :class:`AudioToAudioPipeline` and :class:`MidiToAudioPipeline`.

    Args:
        bundle: the model.
        chunk: latent frames per block (default: the model's chunk K); a multiple of K.
        steps, guidance_timbre, guidance_structure: sampling settings (default: the model's).
        seed: noise seed.
        n_voices: MIDI polyphony.
        live_timbre: audio mode: read a live timbre signal on input channel 1.
        timbre_window, timbre_every: live timbre window and refresh period, in latent frames.
        int8: int8 weights (see the module docstring).
        scripted: run the streaming path through a scripted engine (see :meth:`use_script`).
    """

    mode: str

    def __init__(
        self,
        bundle: ModelBundle,
        chunk: int | None = None,
        steps: int | None = None,
        guidance_timbre: float | None = None,
        guidance_structure: float | None = None,
        seed: int = 0,
        n_voices: int = 8,
        live_timbre: bool = False,
        timbre_window: int = 64,
        timbre_every: int = 8,
        int8: bool = False,
        scripted: bool = False,
    ) -> None:
        if bundle.mode != self.mode:
            raise BadInputError(
                f"model {bundle.name!r} is a {bundle.mode} model; this is the {self.mode} pipeline"
            )
        chunk = bundle.chunk_size if chunk is None else int(chunk)
        if chunk < 1 or chunk % bundle.chunk_size:
            raise BadInputError(
                f"chunk={chunk}: expected a multiple of the model's chunk size {bundle.chunk_size}"
            )
        if n_voices < 1:
            raise BadInputError(f"voices={n_voices}: expected >= 1")
        self.bundle = bundle
        self.engine = TransferEngine(bundle, n_voices, seed, timbre_window, timbre_every)
        if int8:
            quantize_engine(self.engine)
        self.int8 = bool(int8)
        self._scripted: torch.jit.ScriptModule | None = None
        self.chunk = chunk
        self.seed = int(seed)
        self.sample_rate = bundle.sample_rate
        self.hop_length = bundle.hop
        self.block_size = chunk * bundle.hop
        self.n_voices = int(n_voices)
        self.live_timbre = bool(live_timbre) and self.mode == "audio"
        self.timbre = torch.zeros(1, bundle.timbre_dim)
        self._timbre_file: Path | None = None
        self._map_xy: tuple[float, float] | None = None
        for name, value in (
            ("steps", steps),
            ("guidance_timbre", guidance_timbre),
            ("guidance_structure", guidance_structure),
        ):
            if value is not None:
                self.set_parameter(name, value)
        if scripted:
            self.use_script()

    # -- scripted engine ----------------------------------------------------------------------------
    @property
    def scripted(self) -> bool:
        """Whether :meth:`process` runs the scripted engine."""
        return self._scripted is not None

    @property
    def runner(self) -> Any:
        """The engine :meth:`process` calls: the scripted copy when enabled, else :attr:`engine`."""
        return self._scripted if self._scripted is not None else self.engine

    def use_script(self, enabled: bool = True, warmup: int = 2) -> None:
        """Run the streaming path through ``torch.jit.script(engine)`` (or back through the eager
        engine with ``enabled=False``). Scripting takes a few seconds for large models; ``warmup``
        silent blocks are then processed (TorchScript optimises on its first calls) and the stream
        restarts, so the first real block is already fast. Settings are kept."""
        if not enabled:
            self._scripted = None
            return
        if self._scripted is not None:
            return
        with torch.no_grad():
            self.engine.start(1)
            self._scripted = script_engine(self.engine)
        self.reset()
        silent = np.zeros((self.input_channels, self.block_size), np.float32)
        for _ in range(warmup):
            self.process(silent)
        self.reset()

    # -- parameters ----------------------------------------------------------------------------------
    def set_parameter(self, name: str, value: Any) -> None:
        """Change a parameter (see :mod:`after.runtime.protocol`); refused values raise BadInputError."""
        value = check_parameter(name, value, self.bundle.timbre_dim)
        if name == "steps":
            limit = self.engine.model.denoiser.max_steps
            if value > limit:
                raise BadInputError(f"steps={value}: this model allows at most {limit} steps")
            for engine in self._engines():
                engine.set_steps(value)
        elif name == "guidance_timbre":
            for engine in self._engines():
                engine.guidance_timbre = float(value)
        elif name == "guidance_structure":
            for engine in self._engines():
                engine.guidance_structure = float(value)
        elif name == "timbre_vector":
            self.set_timbre_vector(value)
        elif name == "map_xy":
            self.set_map_xy(value)
        elif name == "timbre_file":
            self.set_timbre_file(value)

    def _engines(self) -> list[Any]:
        return [self.engine] if self._scripted is None else [self.engine, self._scripted]

    def parameters(self) -> dict[str, Any]:
        """Current values by name (``map_xy`` / ``timbre_file`` are None unless they set the timbre)."""
        return {
            "steps": self.engine.steps,
            "guidance_timbre": self.engine.guidance_timbre,
            "guidance_structure": self.engine.guidance_structure,
            "timbre_vector": tuple(float(v) for v in self.timbre[0]),
            "map_xy": self._map_xy,
            "timbre_file": str(self._timbre_file) if self._timbre_file else None,
        }

    def set_timbre_vector(self, values: Sequence[float]) -> None:
        """Timbre given by hand: ZT values."""
        vector = torch.tensor([float(v) for v in values], dtype=torch.float32)[None]  # [1, ZT]
        if vector.size(1) != self.bundle.timbre_dim:
            raise BadInputError(
                f"timbre vector of {vector.size(1)} values: this model expects {self.bundle.timbre_dim}"
            )
        self.timbre, self._map_xy, self._timbre_file = vector, None, None

    def set_map_xy(self, xy: Sequence[float]) -> None:
        """Timbre from a point ``(x, y)`` of the 2-D map."""
        if not self.engine.has_map:
            raise BadInputError(f"map_xy: model {self.bundle.name!r} has no 2-D timbre map")
        point = torch.tensor([[float(xy[0]), float(xy[1])]])  # [1, 2]
        with torch.no_grad():
            self.timbre = self.engine.map_to_timbre(point)
        self._map_xy, self._timbre_file = (float(xy[0]), float(xy[1])), None

    def set_timbre_file(self, path: str | Path) -> None:
        """Timbre of a reference recording (any format, rate, channels)."""
        from after.data.audio import load_audio

        audio, _ = load_audio(path, self.sample_rate)
        self.set_timbre_audio(audio)
        self._timbre_file = Path(path)

    def set_timbre_audio(self, audio: np.ndarray) -> None:
        """Timbre of reference audio ``[T]`` or ``[1, T]`` at the model's rate (encoded whole)."""
        self.timbre = self.reference_timbre(audio)
        self._map_xy, self._timbre_file = None, None

    def reference_timbre(self, audio: np.ndarray) -> torch.Tensor:
        """Timbre vector ``[1, ZT]`` of a whole reference recording ``[T]`` / ``[1, T]``."""
        flat = np.asarray(audio, dtype=np.float32).reshape(-1)
        if flat.size < self.hop_length:
            raise BadInputError(
                f"timbre reference of {flat.size} samples: "
                f"expected at least one frame ({self.hop_length} samples)"
            )
        padded = np.pad(flat, (0, (-flat.size) % self.hop_length))
        with torch.no_grad(), offline_mode(self.engine.timbre_codec):
            z = self.engine.timbre_codec.encode(torch.from_numpy(padded)[None, None])  # [1, D, L]
            return self.engine.timbre_of_reference(z)

    # -- streaming ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a fresh stream (states, caches, noise position); parameters are kept."""
        with torch.no_grad():
            self.engine.start(1)
            if self._scripted is not None:
                copy_stream_state(self.engine, self._scripted)

    def process(self, block: np.ndarray, notes: VoiceFrames | None = None) -> np.ndarray:
        """Next output block ``[1, block_size]`` from the next input block (see the protocol)."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.block_size or block.shape[0] < self.input_channels:
            raise BadInputError(
                f"block of shape {block.shape}: expected [{self.input_channels}, {self.block_size}]"
            )
        if not self.engine.is_streaming():
            self.reset()
        runner = self.runner
        with torch.no_grad():
            s = self._structure_block(block, notes)
            c = self.timbre
            if self.live_timbre:
                c = runner.timbre_from_audio(torch.from_numpy(block[1].copy())[None, None])
            out = runner.decode(runner.diffuse(s, c))  # [1, 1, block_size]
        return out[0].numpy().astype(np.float32, copy=True)

    def _structure_block(self, block: np.ndarray, notes: VoiceFrames | None) -> torch.Tensor:
        raise NotImplementedError

    def stream(
        self,
        blocks: Sequence[np.ndarray],
        notes: Sequence[VoiceFrames | None] | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Process blocks one after the other on a fresh stream; returns ``[1, n * block_size]``."""
        from tqdm import tqdm

        self.reset()
        notes = notes if notes is not None else [None] * len(blocks)
        outputs = [
            self.process(block, voice)
            for block, voice in tqdm(
                list(zip(blocks, notes)), desc="generating", unit="block", disable=not progress, leave=False
            )
        ]
        return np.concatenate(outputs, axis=1) if outputs else np.zeros((1, 0), np.float32)

    # -- offline ------------------------------------------------------------------------------------
    def _sample_offline(self, s: torch.Tensor) -> np.ndarray:
        """Whole-sequence sampling and decoding from ``s [1, ZS, L]``; returns ``[1, L * hop]``."""
        engine = self.engine
        noise = positional_noise(self.seed, 1, self.bundle.latent_dim, 0, s.size(-1))
        z = engine.model.sample(
            noise, self.timbre, s, engine.steps, engine.guidance_timbre, engine.guidance_structure
        )
        return engine.decode(z)[0].numpy().astype(np.float32, copy=True)

    def _padded_frames(self, frames: int) -> int:
        return max(1, math.ceil(frames / self.chunk)) * self.chunk


class AudioToAudioPipeline(TransferPipeline):
    """Structure from audio: ``process`` takes ``[1, block_size]`` (``[2, block_size]`` with a live
    timbre signal on channel 1); :meth:`transfer` works on a whole signal."""

    mode = "audio"

    @property
    def input_channels(self) -> int:
        return 2 if self.live_timbre else 1

    @property
    def latency_samples(self) -> int:
        codec = self.engine.codec
        structure = int(getattr(self.engine.model.structure_encoder, "latency", 0))
        return int(codec.encoder_latency + codec.decoder_latency + structure * self.hop_length)

    def _structure_block(self, block: np.ndarray, notes: VoiceFrames | None) -> torch.Tensor:
        return self.runner.structure_from_audio(torch.from_numpy(block[0].copy())[None, None])

    def blocks(self, structure: np.ndarray) -> list[np.ndarray]:
        """Cut a signal ``[T]`` / ``[C, T]`` into ``[C, block_size]`` blocks (zero-padded end)."""
        audio = np.atleast_2d(np.asarray(structure, dtype=np.float32))
        total = self._padded_frames(math.ceil(audio.shape[1] / self.hop_length)) * self.hop_length
        audio = np.pad(audio, ((0, 0), (0, total - audio.shape[1])))
        return [audio[:, i : i + self.block_size] for i in range(0, total, self.block_size)]

    def transfer(self, structure: np.ndarray) -> np.ndarray:
        """Offline: structure audio ``[T]`` / ``[1, T]`` (model rate) -> audio ``[1, T]``."""
        flat = np.asarray(structure, dtype=np.float32).reshape(-1)
        block = np.concatenate(self.blocks(flat), axis=1)  # [C, T padded to whole blocks]
        self.engine.stop()
        with torch.no_grad():
            z = self.engine.codec.encode(torch.from_numpy(block[0].copy())[None, None])  # [1, D, L]
            s = self.engine.model.encode_structure(z)
            out = self._sample_offline(s)
        return out[:, : flat.size]

    def transfer_stream(self, structure: np.ndarray, progress: bool = False) -> np.ndarray:
        """The same as :meth:`transfer`, block by block through :meth:`process` (with a progress bar)."""
        flat = np.asarray(structure, dtype=np.float32).reshape(-1)
        return self.stream(self.blocks(flat), progress=progress)[:, : flat.size]


class MidiToAudioPipeline(TransferPipeline):
    """Structure from MIDI: ``process`` takes an empty ``[0, block_size]`` block and the voices'
    frames; :meth:`transfer` works on a whole piano roll."""

    mode = "midi"
    input_channels = 0

    @property
    def latency_samples(self) -> int:
        return int(self.engine.codec.decoder_latency)

    def _structure_block(self, block: np.ndarray, notes: VoiceFrames | None) -> torch.Tensor:
        if notes is None:
            roll = np.zeros((2, 128, self.chunk), np.float32)
        else:
            if notes.n_frames != self.chunk:
                raise BadInputError(f"voices over {notes.n_frames} frames: expected {self.chunk} per block")
            roll = notes.piano_roll()
        return self.runner.structure_from_roll(torch.from_numpy(roll)[None])

    def roll_of_notes(self, notes: Sequence[Any], duration_s: float) -> np.ndarray:
        """Piano roll ``[2, 128, L]`` of notes (:class:`after.data.midi.Note`) over ``duration_s``
        seconds, L rounded up to whole blocks."""
        from after.data.midi import piano_roll

        frame_rate = self.sample_rate / self.hop_length
        frames = self._padded_frames(math.ceil(duration_s * frame_rate - 1e-9))
        return piano_roll(notes, frame_rate, frames)

    def transfer(self, roll: np.ndarray) -> np.ndarray:
        """Offline: piano roll ``[2, 128, L]`` (L a multiple of ``chunk``) -> audio ``[1, L * hop]``."""
        roll = np.asarray(roll, dtype=np.float32)
        if roll.ndim != 3 or roll.shape[:2] != (2, 128) or roll.shape[2] % self.chunk:
            raise BadInputError(
                f"piano roll of shape {roll.shape}: expected [2, 128, L], L a multiple of {self.chunk}"
            )
        self.engine.stop()
        with torch.no_grad():
            s = self.engine.model.encode_structure(torch.from_numpy(roll)[None])
            return self._sample_offline(s)

    def transfer_stream(self, roll: np.ndarray, progress: bool = False) -> np.ndarray:
        """:meth:`transfer` block by block: the roll's frames are fed as ready-made voices."""
        roll = np.asarray(roll, dtype=np.float32)
        rolls = [roll[:, :, i : i + self.chunk] for i in range(0, roll.shape[2], self.chunk)]
        self.reset()
        outputs = []
        runner = self.runner
        from tqdm import tqdm

        for part in tqdm(rolls, desc="generating", unit="block", disable=not progress, leave=False):
            with torch.no_grad():
                s = runner.structure_from_roll(torch.from_numpy(np.ascontiguousarray(part))[None])
                out = runner.decode(runner.diffuse(s, self.timbre))
            outputs.append(out[0].numpy())
        return np.concatenate(outputs, axis=1).astype(np.float32)


def build_pipeline(bundle: ModelBundle, **settings: Any) -> TransferPipeline:
    """The pipeline matching ``bundle.mode`` with ``settings`` (see :class:`TransferPipeline`)."""
    kind = AudioToAudioPipeline if bundle.mode == "audio" else MidiToAudioPipeline
    return kind(bundle, **settings)
