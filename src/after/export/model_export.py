"""Export a model (codec + diffusion + timbre map) as an nn~ TorchScript file, and check one.

Methods (``[in_channels, in_ratio, out_channels, out_ratio]``; ZT timbre dims, ZS structure dims, D
latent channels, V voices, ``hop`` the codec's samples per latent frame):

================  ===================  ===================  ===============================================
method            audio model          MIDI model           what it does
================  ===================  ===================  ===============================================
forward           2, 1 -> 1, 1         2V + 1, 1 -> 1, 1    structure (audio, or voices held at audio rate)
                                                            + live timbre audio on the last channel
forward_manual    1 + ZT, 1 -> 1, 1    2V + ZT, hop -> 1,1  structure + timbre values (mean over the buffer)
timbre            1, 1 -> ZT, hop      same                 live timbre of an audio stream (rolling window)
structure         1, 1 -> ZS, hop      2V, hop -> ZS, hop   structure features
diffuse           ZS + ZT, hop -> D    same                 latents from structure + timbre
decode            D, hop -> 1, 1       same                 latents -> audio
generate          ZS + ZT, hop -> 1,1  same                 diffuse + decode
latent2map        ZT, 1 -> 2, 1        same                 timbre vector -> point of the 2-D map
map2latent        2, 1 -> ZT, 1        same                 point of the 2-D map -> timbre vector
================  ===================  ===================  ===============================================

Voices come nn~ style: channel ``2v`` = MIDI pitch, ``2v + 1`` = velocity (0 = silent) of voice
``v``; at ratio ``hop`` nn~ keeps the last sample of every hop, and ``forward`` does the same itself.

Attributes: ``nb_steps`` (int from 1 to the model's ``max_steps``, 64 by default; ``set_nb_steps``
returns -1 above it), ``guidance_timbre`` and ``guidance_structure`` (floats >= 0); setters return 0,
or -1 (value refused, nothing changed).

File size: the file holds the weights once (the live-timbre codec shares the codec's weights) and no
stream state: the denoiser's per-step caches are saved empty and grow to ``nb_steps`` slots on the
first call (and after a batch change), so the file is within a few % of the weights' size. With
``int8=True`` the codec convolutions and large linears are stored as int8
(:func:`after.runtime.engine.quantize_engine`: 2-3x faster per block, a third of the size, output
audio within 2-3 % relative error of fp32).

Buffers: any host buffer that is a multiple of ``hop * chunk`` samples works, for batch sizes 1 and
up (every batch element is generated independently, with its own noise); a new batch size restarts
the stream. Changing ``nb_steps`` restarts the denoiser's context. Noise is addressed by the
stream position (:mod:`after.runtime.noise`), so the file's output equals the Python pipeline's for
the same inputs, settings and seed.
"""

# No ``from __future__ import annotations``: TorchScript must see the class annotations as types.
import logging
import math
from pathlib import Path

import torch

from after.export.nn_tilde import NnTildeModule
from after.runtime.engine import TransferEngine, quantize_engine

log = logging.getLogger(__name__)

DEFAULT_TEST_BUFFER = 4096


class ExportedAfter(NnTildeModule):
    """nn~ wrapper of a :class:`~after.runtime.engine.TransferEngine` (see the module docstring).

    Args:
        bundle: the model (:class:`after.runtime.bundle.ModelBundle`, with a timbre map ideally).
        chunk: latent frames of the smallest buffer (a multiple of the model's K); default K.
        n_voices: MIDI polyphony.
        seed: noise seed.
        timbre_window, timbre_every: live timbre window and refresh period (latent frames).
        int8: int8 weights (:func:`after.runtime.engine.quantize_engine`).
    """

    hop: int
    chunk: int
    mode: str
    latent_dim: int
    timbre_dim: int
    structure_dim: int
    n_voices: int
    max_steps: int

    def __init__(
        self,
        bundle: "ModelBundle",  # noqa: F821
        chunk: int | None = None,
        n_voices: int = 8,
        seed: int = 0,
        timbre_window: int = 64,
        timbre_every: int = 8,
        int8: bool = False,
    ) -> None:
        super().__init__(bundle.sample_rate)
        chunk = bundle.chunk_size if chunk is None else int(chunk)
        if chunk < 1 or chunk % bundle.chunk_size:
            raise ValueError(
                f"chunk={chunk}: expected a multiple of the model's chunk size {bundle.chunk_size}"
            )
        self.engine = TransferEngine(bundle, n_voices, seed, timbre_window, timbre_every)
        if int8:
            quantize_engine(self.engine)
        self.hop = bundle.hop
        self.chunk = chunk
        self.mode = bundle.mode
        self.latent_dim = bundle.latent_dim
        self.timbre_dim = bundle.timbre_dim
        self.structure_dim = bundle.structure_dim
        self.n_voices = n_voices
        self.max_steps = int(self.engine.model.denoiser.max_steps)
        self.register_attribute("nb_steps", int(self.engine.steps))
        self.register_attribute("guidance_timbre", float(self.engine.guidance_timbre))
        self.register_attribute("guidance_structure", float(self.engine.guidance_structure))
        self.engine.start(1)  # streaming mode (state re-sized by each call's batch)
        self._register_methods(self.test_buffer_size())
        self.engine.start(1)  # forget what the test calls left behind

    @torch.jit.unused
    def export(self, path: str | Path) -> torch.jit.ScriptModule:
        """Script and save to ``path`` from a fresh stream (batch 1, every cache empty: the file
        carries the weights and no state)."""
        self.engine.start(1)
        return super().export(path)

    @torch.jit.unused
    def test_buffer_size(self) -> int:
        """A power-of-two buffer near 4096 samples that holds whole blocks of ``hop * chunk``."""
        block = self.hop * self.chunk
        size = block * max(1, DEFAULT_TEST_BUFFER // block)
        return size

    @torch.jit.unused
    def _register_methods(self, size: int) -> None:
        zt, zs, d, hop = self.timbre_dim, self.structure_dim, self.latent_dim, self.hop
        timbre_labels = [f"(signal) timbre {i}" for i in range(zt)]
        structure_labels = [f"(signal) structure {i}" for i in range(zs)]
        latent_labels = [f"(signal) latent {i}" for i in range(d)]
        audio_out = ["(signal) audio out"]
        voice_labels = [
            f"(signal) voice {v} {kind}" for v in range(self.n_voices) for kind in ("pitch", "velocity")
        ]
        if self.mode == "audio":
            self.register_method(
                "forward", 2, 1, 1, 1, ["(signal) structure audio", "(signal) timbre audio"], audio_out, size
            )
            self.register_method(
                "forward_manual",
                1 + zt,
                1,
                1,
                1,
                ["(signal) structure audio", *timbre_labels],
                audio_out,
                size,
            )
            self.register_method(
                "structure", 1, 1, zs, hop, ["(signal) structure audio"], structure_labels, size
            )
        else:
            v2 = 2 * self.n_voices
            self.register_method(
                "forward", v2 + 1, 1, 1, 1, [*voice_labels, "(signal) timbre audio"], audio_out, size
            )
            self.register_method(
                "forward_manual", v2 + zt, hop, 1, 1, [*voice_labels, *timbre_labels], audio_out, size
            )
            self.register_method("structure", v2, hop, zs, hop, voice_labels, structure_labels, size)
        self.register_method("timbre", 1, 1, zt, hop, ["(signal) timbre audio"], timbre_labels, size)
        self.register_method(
            "diffuse", zs + zt, hop, d, hop, [*structure_labels, *timbre_labels], latent_labels, size
        )
        self.register_method("decode", d, hop, 1, 1, latent_labels, audio_out, size)
        self.register_method(
            "generate", zs + zt, hop, 1, 1, [*structure_labels, *timbre_labels], audio_out, size
        )
        self.register_method(
            "latent2map", zt, 1, 2, 1, timbre_labels, ["(signal) map x", "(signal) map y"], size
        )
        self.register_method(
            "map2latent", 2, 1, zt, 1, ["(signal) map x", "(signal) map y"], timbre_labels, size
        )

    # -- helpers --------------------------------------------------------------------------------
    def _check_length(self, samples: int) -> None:
        if samples % (self.hop * self.chunk) != 0:
            raise ValueError("the buffer size must be a multiple of hop * chunk samples")

    def _structure(self, x: torch.Tensor) -> torch.Tensor:
        """Structure ``[B, ZS, L]`` from audio ``[B, 1, T]`` or voices ``[B, 2V, L]``."""
        if self.mode == "audio":
            return self.engine.structure_from_audio(x)
        return self.engine.structure_from_voices(x)

    def _generate(self, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.engine.decode(self.engine.diffuse(s, c))

    # -- methods ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Structure + live timbre audio (last channel), all at audio rate -> audio ``[B, 1, T]``."""
        self._check_length(x.size(-1))
        self.engine.follow_batch(x.size(0))
        c = self.engine.timbre_from_audio(x[:, x.size(1) - 1 :])
        if self.mode == "audio":
            s = self.engine.structure_from_audio(x[:, :1])
        else:
            voices = x[:, : 2 * self.n_voices, self.hop - 1 :: self.hop]  # [B, 2V, T / hop]
            s = self.engine.structure_from_voices(voices)
        return self._generate(s, c)

    @torch.jit.export
    def forward_manual(self, x: torch.Tensor) -> torch.Tensor:
        """Structure + ZT timbre values (their mean over the buffer) -> audio."""
        self.engine.follow_batch(x.size(0))
        if self.mode == "audio":
            self._check_length(x.size(-1))
            s = self.engine.structure_from_audio(x[:, :1])
            c = x[:, 1:].mean(-1)  # [B, ZT]
        else:
            self._check_length(x.size(-1) * self.hop)
            split = 2 * self.n_voices
            s = self.engine.structure_from_voices(x[:, :split])
            c = x[:, split:].mean(-1)  # [B, ZT]
        return self._generate(s, c)

    @torch.jit.export
    def timbre(self, x: torch.Tensor) -> torch.Tensor:
        """Live timbre audio ``[B, 1, T]`` -> timbre vector held over the frames ``[B, ZT, T / hop]``."""
        self._check_length(x.size(-1))
        self.engine.follow_batch(x.size(0))
        c = self.engine.timbre_from_audio(x)
        return c.unsqueeze(-1).expand(-1, -1, x.size(-1) // self.hop).contiguous()

    @torch.jit.export
    def structure(self, x: torch.Tensor) -> torch.Tensor:
        """Structure features ``[B, ZS, L]`` of audio ``[B, 1, L * hop]`` or voices ``[B, 2V, L]``."""
        self._check_length(x.size(-1) * (1 if self.mode == "audio" else self.hop))
        self.engine.follow_batch(x.size(0))
        return self._structure(x)

    @torch.jit.export
    def diffuse(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, ZS + ZT, L]`` (structure, then timbre averaged over the buffer) -> latents ``[B, D, L]``."""
        self._check_length(x.size(-1) * self.hop)
        self.engine.follow_batch(x.size(0))
        return self.engine.diffuse(x[:, : self.structure_dim], x[:, self.structure_dim :].mean(-1))

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, D, L]`` -> audio ``[B, 1, L * hop]``."""
        self._check_length(z.size(-1) * self.hop)
        self.engine.follow_batch(z.size(0))
        return self.engine.decode(z)

    @torch.jit.export
    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, ZS + ZT, L]`` -> audio ``[B, 1, L * hop]`` (diffuse + decode)."""
        self._check_length(x.size(-1) * self.hop)
        self.engine.follow_batch(x.size(0))
        return self._generate(x[:, : self.structure_dim], x[:, self.structure_dim :].mean(-1))

    @torch.jit.export
    def latent2map(self, x: torch.Tensor) -> torch.Tensor:
        """Timbre values ``[B, ZT, T]`` (mean over the buffer) -> map point held ``[B, 2, T]``."""
        xy = self.engine.timbre_to_map(x.mean(-1))  # [B, 2]
        return xy.unsqueeze(-1).expand(-1, -1, x.size(-1)).contiguous()

    @torch.jit.export
    def map2latent(self, x: torch.Tensor) -> torch.Tensor:
        """Map point ``[B, 2, T]`` (mean over the buffer) -> timbre values held ``[B, ZT, T]``."""
        c = self.engine.map_to_timbre(x.mean(-1))  # [B, ZT]
        return c.unsqueeze(-1).expand(-1, -1, x.size(-1)).contiguous()

    # -- attributes --------------------------------------------------------------------------------
    @torch.jit.export
    def get_nb_steps(self) -> int:
        return self.engine.steps

    @torch.jit.export
    def set_nb_steps(self, value: int) -> int:
        """Sampling steps from 1 to ``max_steps`` (the model's limit); -1 (refused) otherwise."""
        if value < 1 or value > self.max_steps:
            return -1
        self.engine.set_steps(value)
        return 0

    @torch.jit.export
    def get_guidance_timbre(self) -> float:
        return self.engine.guidance_timbre

    @torch.jit.export
    def set_guidance_timbre(self, value: float) -> int:
        if not math.isfinite(value) or value < 0.0:
            return -1
        self.engine.guidance_timbre = value
        return 0

    @torch.jit.export
    def get_guidance_structure(self) -> float:
        return self.engine.guidance_structure

    @torch.jit.export
    def set_guidance_structure(self, value: float) -> int:
        if not math.isfinite(value) or value < 0.0:
            return -1
        self.engine.guidance_structure = value
        return 0


def export_model(
    bundle: "ModelBundle",  # noqa: F821
    out: str | Path,
    chunk: int | None = None,
    n_voices: int = 8,
    seed: int = 0,
    int8: bool = False,
) -> Path:
    """Script ``bundle`` into the nn~ file ``out`` and check it; problems raise ModelFileError."""
    from after.errors import ModelFileError

    out = Path(out)
    module = ExportedAfter(bundle, chunk=chunk, n_voices=n_voices, seed=seed, int8=int8)
    module.export(out)
    problems = check_model_file(out)[0]
    if problems:
        raise ModelFileError(f"{out}: exported file fails the nn~ check: " + "; ".join(problems))
    return out


def _valid_buffer(model: torch.jit.ScriptModule, wanted: int) -> tuple[int, str | None]:
    """nn~ buffer to test with: ``wanted`` if it holds whole ``hop * chunk`` blocks, else the
    smallest power of two that does (with a note saying so)."""
    hop, chunk = getattr(model, "hop", None), getattr(model, "chunk", None)
    if not isinstance(hop, int) or not isinstance(chunk, int) or hop < 1 or chunk < 1:
        return wanted, None
    block = hop * chunk
    if wanted % block == 0:
        return wanted, None
    size = 1 << max(0, (block - 1).bit_length())
    while size % block:
        size *= 2
        if size > 1 << 24:
            return block, f"hop * chunk = {block} samples divides no power-of-two nn~ buffer"
    return size, f"a {wanted}-sample buffer is not a multiple of hop * chunk = {block}: testing with {size}"


_ATTRIBUTE_BAD_VALUES = {"nb_steps": (0, -1), "guidance_timbre": (-1.0,), "guidance_structure": (-0.5,)}


def _check_refusals(model: torch.jit.ScriptModule, problems: list[str]) -> None:
    attributes = list(model.get_attributes()) if hasattr(model, "get_attributes") else []
    for name, bad_values in _ATTRIBUTE_BAD_VALUES.items():
        if name not in attributes:
            problems.append(f"attribute {name!r} is missing (every after model has it)")
            continue
        try:
            before = getattr(model, f"get_{name}")()
            for bad in bad_values:
                status = getattr(model, f"set_{name}")(bad)
                after = getattr(model, f"get_{name}")()
                if status != -1 or after != before:
                    problems.append(
                        f"attribute {name!r}: set_{name}({bad}) returned {status} (expected -1, refused) "
                        f"and the value went from {before} to {after}"
                    )
        except Exception as error:
            problems.append(f"attribute {name!r}: get/set failed: {str(error).strip().splitlines()[-1]}")


def _check_noise_inputs(model: torch.jit.ScriptModule, size: int, problems: list[str]) -> None:
    """Every method on random inputs (audio-like noise) at batch 1 and 4: shape and finiteness."""
    generator = torch.Generator().manual_seed(0)
    for name in model.get_methods():
        params = getattr(model, f"{name}_params", None)
        if not isinstance(params, torch.Tensor) or params.numel() != 4:
            continue  # check_export reports it
        in_channels, in_ratio, out_channels, out_ratio = (int(v) for v in params.tolist())
        for batch in (1, 4):
            x = 0.1 * torch.randn(batch, in_channels, size // in_ratio, generator=generator)
            try:
                with torch.inference_mode():
                    out = getattr(model, name)(x)
            except Exception as error:
                problems.append(
                    f"method {name!r}: fails on noise {tuple(x.shape)}: {str(error).strip().splitlines()[-1]}"
                )
                continue
            expected = (batch, out_channels, size // out_ratio)
            if tuple(out.shape) != expected or not torch.isfinite(out).all():
                problems.append(
                    f"method {name!r}: noise input {tuple(x.shape)} gave {tuple(out.shape)} "
                    f"(expected {expected}, finite)"
                )


def check_model_file(path: str | Path, buffer_size: int = DEFAULT_TEST_BUFFER) -> tuple[list[str], list[str]]:
    """Check an exported after model as nn~ would use it: ``(problems, notes)``.

    Runs :func:`after.export.check.check_export` (params buffers, labels, zeros at batch 1 and 4,
    real audio, attribute get/set) on a buffer holding whole ``hop * chunk`` blocks, then calls every
    method on noise at batch 1 and 4 and tries a refused value on every after attribute.
    """
    from after.export.check import check_export

    path = Path(path)
    notes: list[str] = []
    problems = check_export(path, buffer_size=buffer_size) if not path.is_file() else []
    if problems:
        return problems, notes
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        return [f"{path}: not a TorchScript file ({type(error).__name__})"], notes
    size, note = _valid_buffer(model, buffer_size)
    if note:
        notes.append(note)
    audio = 0.1 * torch.randn(2 * size, generator=torch.Generator().manual_seed(1))
    problems = check_export(model, audio=audio, buffer_size=size)
    if any("get_methods" in p for p in problems):
        return problems, notes
    _check_noise_inputs(model, size, problems)
    _check_refusals(model, problems)
    return problems, notes


def export_files(
    source: str | Path | None,
    out: str | Path,
    midi: bool = False,
    n_voices: int = 8,
    chunk: int | None = None,
    dataset: str | Path | None = None,
    map_steps: int = 2000,
    seed: int = 0,
    int8: bool = False,
) -> tuple[Path, Path]:
    """``after export``: load a model (``None`` = the embedded default), fit its 2-D timbre map when
    it has none or a dataset is given, write ``out`` (.ts, int8 weights with ``int8``) and the map
    picture next to it (.png)."""
    from after.errors import BadInputError
    from after.runtime.bundle import default_model_name, load_bundle
    from after.runtime.timbre_map import collect_timbre_vectors, draw_timbre_map, fit_timbre_map

    out = Path(out)
    if out.suffix != ".ts":
        raise BadInputError(f"{out}: the exported file must end in .ts (nn~ looks for NAME.ts)")
    if n_voices < 1:
        raise BadInputError(f"voices={n_voices}: expected >= 1")
    bundle = load_bundle(default_model_name("midi" if midi else "audio") if source is None else source)
    if midi and bundle.mode != "midi":
        raise BadInputError(f"--midi: model {bundle.name!r} is an audio model (its structure is audio)")
    if chunk is not None and (chunk < 1 or chunk % bundle.chunk_size):
        raise BadInputError(
            f"chunk={chunk}: expected a multiple of the model's chunk size {bundle.chunk_size}"
        )
    vectors, labels = collect_timbre_vectors(bundle, dataset)
    if bundle.timbre_map is None or dataset is not None:
        bundle.timbre_map = fit_timbre_map(vectors, labels, steps=map_steps, seed=seed)
    export_model(bundle, out, chunk=chunk, n_voices=n_voices, seed=seed, int8=int8)
    picture = draw_timbre_map(bundle.timbre_map, vectors, labels, out.with_suffix(".png"))
    log.info(
        "exported %s (%s model, hop %d, %s weights, %.1f MB) and %s",
        out, bundle.mode, bundle.hop, "int8" if int8 else "fp32", out.stat().st_size / 1e6, picture,
    )  # fmt: skip
    return out, picture
