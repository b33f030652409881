"""The streaming generation engine shared by the Python pipelines and the exported nn~ model.

One :class:`TransferEngine` holds private copies of the codec (one for the structure and output
path, one for the live timbre stream, so the two keep separate convolution states), the diffusion
model and the timbre map, plus the per-stream context that is not inside those modules:

* ``frame``: latent frames generated since the stream began; the noise of frame ``n`` is
  :func:`after.runtime.noise.positional_noise` at position ``n``, so chunking never changes it;
* the live timbre window: the last ``timbre_window`` latent frames of a timbre audio stream; the
  timbre vector is recomputed from the frames received so far (never from zero padding) as soon as
  ``timbre_every`` new frames have arrived since the last refresh, and held in between;
* the previous (pitch, velocity) of every voice, to find note onsets in nn~-style voice inputs.

A call chain per block of ``P`` latent frames (``P`` a multiple of the denoiser's chunk K)::

    s = structure_from_audio(audio [B,1,P*hop])   or   structure_from_voices(voices [B,2V,P])
    c = timbre_from_audio(audio [B,1,P*hop])       or   a given vector [B, ZT]
    z = diffuse(s, c)                               # [B, D, P], steps and guidance from attributes
    out = decode(z)                                 # [B, 1, P*hop]

Every method used by the export is TorchScript-compatible. When a call brings a new batch size the
engine's own context restarts, and every streaming layer re-initialises its state by itself.
Python callers start and stop streams with :meth:`TransferEngine.start` / :meth:`stop`.

Fast paths, shared by every host (pipelines, ``after transfer`` / ``live`` / ``export`` / ``bench``):

* :func:`quantize_engine`: int8 weights for the codec convolutions and the large linears, in place;
* :func:`script_engine` + :func:`copy_stream_state`: a ``torch.jit.script`` copy of a started engine
  (sharing its weights) and the way to give it the eager engine's fresh stream state;
* the two codecs share their weights (only their streaming states differ), and the denoiser's caches
  are sized by the steps in use: a saved file holds the weights once and no cache.
"""

import copy

import torch
from torch import nn

from after.nn.conv import remove_weight_norm
from after.nn.streaming import StreamingModule, init_state, reset_state
from after.runtime.noise import positional_noise
from after.runtime.timbre_map import TimbreMap

CONTEXT_BUFFERS = ("timbre_frames", "timbre_vector", "previous_pitch", "previous_velocity")
"""The engine's own per-stream buffers (not weights)."""


class TransferEngine(nn.Module):
    """Streaming generation from structure + timbre (see the module docstring).

    Args:
        bundle: a :class:`after.runtime.bundle.ModelBundle` (its modules are copied, not shared).
        n_voices: voices read by :meth:`structure_from_voices` (MIDI models).
        seed: noise seed.
        timbre_window: live timbre context in latent frames.
        timbre_every: refresh period of the live timbre vector, in latent frames.
    """

    hop: int
    latent_dim: int
    timbre_dim: int
    structure_dim: int
    chunk_size: int
    mode: str
    n_voices: int
    has_map: bool
    seed: int
    steps: int
    guidance_timbre: float
    guidance_structure: float
    timbre_window: int
    timbre_every: int
    batch: int
    frame: int
    timbre_filled: int
    timbre_since: int

    def __init__(
        self,
        bundle: "ModelBundle",  # noqa: F821
        n_voices: int = 8,
        seed: int = 0,
        timbre_window: int = 64,
        timbre_every: int = 8,
    ) -> None:
        super().__init__()
        if n_voices < 1 or timbre_window < 1 or timbre_every < 1:
            raise ValueError("n_voices, timbre_window and timbre_every must be >= 1")
        self.codec = self.plain_codec(bundle)
        self.timbre_codec = weight_sharing_copy(self.codec)
        self.model = copy.deepcopy(bundle.model).eval()
        self.has_map = bundle.timbre_map is not None
        self.timbre_map = (
            copy.deepcopy(bundle.timbre_map)
            if bundle.timbre_map is not None
            else TimbreMap(bundle.timbre_dim)
        ).eval()
        self.hop = int(bundle.hop)
        self.latent_dim = int(bundle.latent_dim)
        self.timbre_dim = int(bundle.timbre_dim)
        self.structure_dim = int(bundle.structure_dim)
        self.chunk_size = int(bundle.chunk_size)
        self.mode = str(bundle.mode)
        self.n_voices = int(n_voices)
        self.seed = int(seed)
        config = bundle.diffusion_config
        self.steps = int(config.n_steps)
        self.guidance_timbre = float(config.guidance_timbre)
        self.guidance_structure = float(config.guidance_structure)
        self.timbre_window = int(timbre_window)
        self.timbre_every = int(timbre_every)
        self.batch = 0
        self.frame = 0
        self.timbre_filled = 0
        self.timbre_since = 0
        self.register_buffer("timbre_frames", torch.zeros(0), persistent=False)
        self.register_buffer("timbre_vector", torch.zeros(0), persistent=False)
        self.register_buffer("previous_pitch", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("previous_velocity", torch.zeros(0), persistent=False)
        self.restart(1)
        self.requires_grad_(False)

    @staticmethod
    @torch.jit.unused
    def plain_codec(bundle: "ModelBundle") -> nn.Module:  # noqa: F821
        """A private copy of the bundle's codec with weight norm baked in (rebuilt from its config:
        deep copies of weight-normed modules are not reliable)."""
        from after.codec.model import Codec

        codec = Codec.from_config(bundle.codec_config)
        codec.load_state_dict(bundle.codec.state_dict())
        return remove_weight_norm(codec).eval()

    # -- stream context ---------------------------------------------------------------------------
    @torch.jit.export
    def restart(self, batch: int) -> None:
        """Empty the engine's own context for ``batch`` streams (and the denoiser's KV caches)."""
        self.batch = batch
        self.frame = 0
        self.timbre_frames = torch.zeros(batch, self.latent_dim, self.timbre_window)
        self.timbre_vector = torch.zeros(batch, self.timbre_dim)
        self.timbre_filled = 0
        self.timbre_since = self.timbre_every
        self.previous_pitch = torch.zeros(batch, self.n_voices, dtype=torch.long)
        self.previous_velocity = torch.zeros(batch, self.n_voices)
        self.model.denoiser.clear_caches()

    @torch.jit.export
    def follow_batch(self, batch: int) -> None:
        """Restart the engine's context when a call brings a new batch size."""
        if batch != self.batch:
            self.restart(batch)

    @torch.jit.unused
    def start(self, batch: int = 1) -> None:
        """Python: start a fresh stream (every layer's state emptied) for ``batch`` streams."""
        init_state(self.codec, batch)
        init_state(self.timbre_codec, batch)
        self.model.start_stream(batch)
        self.restart(batch)

    @torch.jit.unused
    def stop(self) -> None:
        """Python: leave streaming mode everywhere (the modules then work offline)."""
        reset_state(self)

    @torch.jit.unused
    def is_streaming(self) -> bool:
        return any(m.streaming for m in self.modules() if isinstance(m, StreamingModule))

    # -- structure ---------------------------------------------------------------------------------
    @torch.jit.export
    def structure_from_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Structure audio ``[B, 1, P * hop] -> s [B, ZS, P]`` (codec encoder + structure encoder)."""
        return self.model.encode_structure(self.codec.encode(audio))

    @torch.jit.export
    def structure_from_roll(self, roll: torch.Tensor) -> torch.Tensor:
        """Piano roll ``[B, 2, 128, P] -> s [B, ZS, P]``."""
        return self.model.encode_structure(roll)

    @torch.jit.export
    def voices_to_roll(self, voices: torch.Tensor) -> torch.Tensor:
        """nn~ voices ``[B, 2V, P]`` (channel ``2v`` pitch, ``2v + 1`` velocity 0..127, 0 = silent)
        -> roll ``[B, 2, 128, P]`` as in training (``velocity / 127`` on sounding pitches; onset
        channel on the first frame of a note: velocity rising from 0, or a new pitch).

        Voices beyond ``2V`` channels are ignored; missing voices are silent. The last frame's
        pitch and velocity of every voice are kept for the next call.
        """
        batch, frames = voices.size(0), voices.size(2)
        n = min(self.n_voices, voices.size(1) // 2)
        pitch = torch.zeros(batch, self.n_voices, frames, dtype=torch.long)
        velocity = torch.zeros(batch, self.n_voices, frames)
        if n > 0:
            pitch[:, :n] = voices[:, 0 : 2 * n : 2].round().clamp(0, 127).long()  # [B, n, P]
            velocity[:, :n] = voices[:, 1 : 2 * n : 2].round().clamp(0, 127)  # [B, n, P]
        before_pitch = torch.cat([self.previous_pitch.unsqueeze(-1), pitch[:, :, :-1]], dim=-1)  # [B, V, P]
        before_velocity = torch.cat([self.previous_velocity.unsqueeze(-1), velocity[:, :, :-1]], dim=-1)
        if frames > 0:
            self.previous_pitch = pitch[:, :, -1].clone()
            self.previous_velocity = velocity[:, :, -1].clone()
        sounding = velocity > 0
        onset = sounding & ((before_velocity <= 0) | (before_pitch != pitch))
        level = velocity / 127.0  # [B, V, P], 0 where silent
        roll = torch.zeros(batch, 2, 128, frames)
        sustain = roll[:, 0].scatter_reduce(1, pitch, level, reduce="amax")  # [B, 128, P]
        attack = roll[:, 1].scatter_reduce(1, pitch, level * onset.float(), reduce="amax")  # [B, 128, P]
        return torch.stack([sustain, attack], dim=1)  # [B, 2, 128, P]

    @torch.jit.export
    def structure_from_voices(self, voices: torch.Tensor) -> torch.Tensor:
        """nn~ voices ``[B, 2V, P] -> s [B, ZS, P]`` (see :meth:`voices_to_roll`)."""
        return self.structure_from_roll(self.voices_to_roll(voices))

    # -- timbre ------------------------------------------------------------------------------------
    @torch.jit.export
    def timbre_from_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Live timbre: audio ``[B, 1, P * hop]`` joins the rolling window; returns ``c [B, ZT]``
        (recomputed every ``timbre_every`` frames from the frames received, held in between)."""
        z = self.timbre_codec.encode(audio)  # [B, D, P]
        window = self.timbre_window
        frames = torch.cat([self.timbre_frames, z], dim=-1)  # [B, D, W + P]
        self.timbre_frames = frames[:, :, frames.size(-1) - window :].contiguous()  # [B, D, W]
        self.timbre_filled = min(self.timbre_filled + z.size(-1), window)
        self.timbre_since += z.size(-1)
        if self.timbre_since >= self.timbre_every and self.timbre_filled > 0:
            recent = self.timbre_frames[:, :, window - self.timbre_filled :]  # [B, D, filled]
            self.timbre_vector = self.model.encode_timbre(recent)
            self.timbre_since = 0
        return self.timbre_vector

    @torch.jit.export
    def timbre_of_reference(self, z_ref: torch.Tensor) -> torch.Tensor:
        """Timbre vector ``[B, ZT]`` of reference latents ``[B, D, L]``."""
        return self.model.encode_timbre(z_ref)

    @torch.jit.export
    def map_to_timbre(self, xy: torch.Tensor) -> torch.Tensor:
        """Points ``[B, 2]`` of the 2-D map -> timbre vectors ``[B, ZT]``."""
        return self.timbre_map.from_map(xy)

    @torch.jit.export
    def timbre_to_map(self, c: torch.Tensor) -> torch.Tensor:
        """Timbre vectors ``[B, ZT]`` -> points ``[B, 2]`` of the 2-D map."""
        return self.timbre_map.to_map(c)

    # -- generation --------------------------------------------------------------------------------
    @torch.jit.export
    def diffuse(self, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Next latents ``[B, D, P]`` from structure ``s [B, ZS, P]`` and timbre ``c [B, ZT]``
        (streaming; ``P`` a multiple of the chunk K; noise from the stream position)."""
        frames = s.size(-1)
        if frames % self.chunk_size != 0:
            raise ValueError("the number of latent frames per call must be a multiple of the model's chunk")
        noise = positional_noise(self.seed, s.size(0), self.latent_dim, self.frame, frames)
        z = self.model.generate_chunk(noise, c, s, self.steps, self.guidance_timbre, self.guidance_structure)
        self.frame += frames
        return z

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, D, P] -> audio [B, 1, P * hop]``."""
        return self.codec.decode(z)

    @torch.jit.export
    def set_steps(self, steps: int) -> None:
        """Change the number of sampling steps; the denoiser's per-step caches restart."""
        if steps != self.steps:
            self.steps = steps
            self.model.denoiser.clear_caches()

    @torch.jit.unused
    def weight_bytes(self) -> int:
        """Bytes of the weights this engine holds, each shared tensor counted once (int8 layers:
        their int8 weights, scales, zero points and fp32 biases); streaming state not included."""
        return weight_bytes(self)


def _state_names(module: nn.Module) -> set[str]:
    if isinstance(module, StreamingModule):
        return set(module._state_names)
    return set(CONTEXT_BUFFERS) if isinstance(module, TransferEngine) else set()


def _is_int8_linear(module: nn.Module) -> bool:
    from torch.ao.nn.quantized import dynamic as qdynamic

    return isinstance(module, qdynamic.Linear)


def weight_sharing_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` that shares every parameter, every non-state buffer and every int8
    linear layer with ``module`` (so the weights exist once, in memory and in a saved TorchScript file)
    but owns its streaming state and modes."""
    memo: dict[int, object] = {}
    for sub in module.modules():
        if _is_int8_linear(sub):
            memo[id(sub)] = sub
            continue
        states = _state_names(sub)
        for name, tensor in [*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False)]:
            if name not in states:
                memo[id(tensor)] = tensor
    return copy.deepcopy(module, memo)


def weight_bytes(module: nn.Module) -> int:
    """Bytes of the weights under ``module`` (see :meth:`TransferEngine.weight_bytes`)."""
    seen: set[int] = set()
    total = 0
    for sub in module.modules():
        if _is_int8_linear(sub):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            weight, bias = sub._weight_bias()
            # int8 weights, one f64 scale and one i64 zero point per output channel
            total += weight.numel() + 16 * weight.q_per_channel_scales().numel()
            total += 0 if bias is None else bias.numel() * bias.element_size()
            continue
        states = _state_names(sub)
        for name, tensor in [*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False)]:
            storage = tensor.untyped_storage()
            if name in states or storage.data_ptr() in seen or storage.nbytes() == 0:
                continue
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def quantize_engine(engine: TransferEngine) -> TransferEngine:
    """Give an engine int8 weights, in place, and return it: the codec's convolutions and the diffusion
    model's large linears become dynamic int8 layers (:func:`after.nn.quantize.quantize_dynamic_int8`;
    the timbre codec shares the int8 codec's weights). The one function behind every ``--int8`` option.

    Quality (relative L2 error against fp32 on the same inputs, base preset, random weights,
    ``after bench --int8``): one velocity prediction 0.6-0.9 %, latents after 8 steps 0.5-0.9 %, codec
    encode about 3 %, decode 0.6 %, output audio 2-3 %. A running stream restarts (fresh state).
    Works on a pipeline's engine and on an :class:`~after.export.model_export.ExportedAfter`'s engine
    before its export.
    """
    from after.nn.quantize import quantize_dynamic_int8

    streaming = engine.is_streaming()
    engine.codec = quantize_dynamic_int8(engine.codec)
    engine.timbre_codec = weight_sharing_copy(engine.codec)
    engine.model = quantize_dynamic_int8(engine.model)
    if streaming:
        engine.start(max(1, engine.batch))
    return engine


def script_engine(engine: TransferEngine) -> torch.jit.ScriptModule:
    """``torch.jit.script(engine)``: a compiled copy that shares the engine's weights (not its
    stream state: give it one with :func:`copy_stream_state`). It computes what the eager engine
    computes (tested to 1e-5) without the per-layer Python overhead."""
    return torch.jit.script(engine)


def copy_stream_state(source: TransferEngine, target: torch.jit.ScriptModule) -> None:
    """Copy the stream of ``source`` (streaming modes, cloned state of every streaming layer, and the
    engine's own context and settings) into its scripted copy ``target``; typically right after
    ``source.start(batch)``, so that the scripted engine starts a fresh stream too."""
    scripted = dict(target.named_modules())
    for name, module in source.named_modules():
        if isinstance(module, StreamingModule):
            twin = scripted[name]
            twin.streaming = module.streaming
            for state in module._state_names:
                setattr(twin, state, getattr(module, state).clone())
    for name in ("batch", "frame", "timbre_filled", "timbre_since", "steps"):
        setattr(target, name, int(getattr(source, name)))
    for name in ("guidance_timbre", "guidance_structure"):
        setattr(target, name, float(getattr(source, name)))
    for name in CONTEXT_BUFFERS:
        setattr(target, name, getattr(source, name).clone())
