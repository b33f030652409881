"""Load a codec from whatever the user points at, behind one small interface.

:func:`load_codec` accepts:

* one of our run folders (its latest checkpoint) or a checkpoint file (``*.ckpt``) — weights are read
  with ``torch.load(weights_only=True)``, never by running code from the file;
* a released model folder or the name of a packaged model (``default``): its codec, read from
  ``codec.safetensors`` (or the codec file it shares) after the checks of
  :func:`after.runtime.bundle.load_bundle` — so that a dataset can be encoded for fine-tuning a
  released model on other sounds;
* one of our exported TorchScript files (``after export-codec``);
* any TorchScript file with ``encode`` (audio ``[B,1,T]`` -> ``[B,D,L]``) and ``decode`` (back) methods,
  such as an exported RAVE model. Hop and latent size come from its ``encode_params`` buffer when it
  has one, else from probing ``encode`` on silence; the sample rate from ``get_sample_rate()``, an
  ``sr`` / ``sampling_rate`` attribute, or the ``sample_rate`` argument.

Anything else is refused with a :class:`ModelFileError` naming the file and what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from after.errors import ModelFileError

log = logging.getLogger(__name__)

PROBE_SAMPLES = 16384
"""Length of the silent probe used to measure the hop of a TorchScript codec without ``encode_params``."""


@dataclass
class CodecHandle:
    """A loaded codec: ``encode`` audio ``[B,1,T]`` -> z ``[B,D,T//hop]``, ``decode`` z -> ``[B,1,L*hop]``.

    Attributes:
        module: the eager :class:`~after.codec.model.Codec` or the TorchScript module.
        hop: audio samples per latent frame.
        latent_dim: latent channels D.
        sample_rate: audio rate in Hz.
        codec_id: short stable id (name + content hash) under which dataset latents are stored.
        source: the file or folder it was loaded from.
        kind: ``"run"`` (our checkpoint), ``"model"`` (a released model folder) or ``"torchscript"``.
        latency: algorithmic delay of encode+decode in samples (0 when unknown).
        config: the codec's :class:`~after.codec.config.CodecConfig` when it came with the handle (a
            released model's; ``None`` for runs, whose checkpoint holds it, and TorchScript files).
    """

    module: Any
    hop: int
    latent_dim: int
    sample_rate: int
    codec_id: str
    source: Path
    kind: str
    latency: int = 0
    config: Any = None

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``[B,1,T]`` -> latents ``[B,D,ceil(T/hop)]`` (the end is zero-padded to whole hops)."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"encode expects audio [B, 1, T], got {tuple(audio.shape)}")
        padding = (-audio.shape[-1]) % self.hop
        audio = torch.nn.functional.pad(audio, (0, padding))
        with torch.inference_mode():
            return self.module.encode(audio.float()).clone()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B,D,L]`` -> audio ``[B,1,L*hop]``."""
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise ValueError(f"decode expects latents [B, {self.latent_dim}, L], got {tuple(z.shape)}")
        with torch.inference_mode():
            return self.module.decode(z.float()).clone()

    def info(self) -> Any:
        """The dataset's description of this codec (:class:`after.data.records.CodecInfo`)."""
        from after.data.records import CodecInfo

        return CodecInfo(hop=self.hop, latent_dim=self.latent_dim, sample_rate=self.sample_rate)


def codec_from_run_config(config: dict[str, Any], where: str = "run config") -> nn.Module:
    """Build the (untrained) codec described by a run config's ``"codec"`` section."""
    from after.codec.config import CodecConfig
    from after.codec.model import Codec
    from after.config import from_dict

    if not isinstance(config, dict) or config.get("kind") != "codec" or "codec" not in config:
        kind = config.get("kind") if isinstance(config, dict) else type(config).__name__
        raise ModelFileError(
            f"{where}: not a codec run (kind {kind!r}, expected 'codec' with a 'codec' section)"
        )
    return Codec.from_config(from_dict(CodecConfig, config["codec"], where=f"{where}: codec"))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _codec_id(name: str, path: Path) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name).strip("-.") or "codec"
    return f"{clean}-{_file_digest(path)}"


def _load_run(path: Path) -> CodecHandle:
    from after.train.run import CONFIG_KEY, RunFolder, load_checkpoint

    if path.is_dir():
        checkpoint_path = RunFolder(path).latest_checkpoint()
        if checkpoint_path is None:
            raise ModelFileError(f"{path}: folder holds no checkpoint (expected checkpoints/step*.ckpt)")
        name = path.name
    else:
        checkpoint_path, name = path, path.parent.parent.name or path.stem
    checkpoint = load_checkpoint(checkpoint_path)
    config = checkpoint.get(CONFIG_KEY)
    if config is None:
        raise ModelFileError(f"{checkpoint_path}: checkpoint carries no run config ({CONFIG_KEY!r})")
    codec = codec_from_run_config(config, where=str(checkpoint_path))
    weights = {k[len("codec.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("codec.")}
    try:
        codec.load_state_dict(weights)
    except RuntimeError as error:
        raise ModelFileError(f"{checkpoint_path}: codec weights do not match its config ({error})") from error
    codec.eval()
    return CodecHandle(
        module=codec,
        hop=int(codec.hop),
        latent_dim=int(codec.latent_dim),
        sample_rate=int(codec.sample_rate),
        codec_id=_codec_id(name, checkpoint_path),
        source=checkpoint_path,
        kind="run",
        latency=int(getattr(codec, "latency", 0)),
    )


def _script_sample_rate(module: Any) -> int | None:
    for getter in ("get_sample_rate",):
        if hasattr(module, getter):
            try:
                rate = int(getattr(module, getter)())
                if rate > 0:
                    return rate
            except Exception:
                pass
    for name in ("sr", "sample_rate", "sampling_rate"):
        value = getattr(module, name, None)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, int | float) and value > 0:
            return int(value)
    return None


def _probe_shapes(module: Any, path: Path) -> tuple[int, int]:
    """(hop, latent_dim) of a TorchScript codec, checked by an encode/decode round trip on silence."""
    params = getattr(module, "encode_params", None)
    if isinstance(params, torch.Tensor) and params.numel() == 4:
        in_channels, in_ratio, out_channels, out_ratio = (int(v) for v in params.tolist())
        if in_channels != 1:
            raise ModelFileError(
                f"{path}: encode takes {in_channels} audio channels; a codec here must take 1 (mono)"
            )
        if out_ratio % in_ratio:
            raise ModelFileError(f"{path}: encode_params ratios {in_ratio}/{out_ratio} give no whole hop")
        hop, latent_dim = out_ratio // in_ratio, out_channels
        samples = max(PROBE_SAMPLES // hop, 1) * hop
    else:
        hop, latent_dim, samples = 0, 0, PROBE_SAMPLES
    try:
        with torch.inference_mode():
            z = module.encode(torch.zeros(1, 1, samples))
            audio = module.decode(z)
    except Exception as error:
        message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ModelFileError(
            f"{path}: encode/decode fail on silent audio [1, 1, {samples}] ({message})"
        ) from error
    if not isinstance(z, torch.Tensor) or z.dim() != 3 or z.shape[0] != 1 or z.shape[-1] == 0:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ModelFileError(f"{path}: encode returned {got}, expected latents [1, D, L]")
    if hop == 0:
        if samples % z.shape[-1]:
            raise ModelFileError(
                f"{path}: encode maps {samples} samples to {z.shape[-1]} frames: no whole hop"
            )
        hop, latent_dim = samples // z.shape[-1], z.shape[1]
    if z.shape[1] != latent_dim or z.shape[-1] * hop != samples:
        raise ModelFileError(
            f"{path}: encode gave {tuple(z.shape)}, "
            f"but encode_params promise [1, {latent_dim}, {samples // hop}]"
        )
    if not isinstance(audio, torch.Tensor) or tuple(audio.shape) != (1, 1, samples):
        got = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise ModelFileError(f"{path}: decode returned {got}, expected audio [1, 1, {samples}]")
    return hop, latent_dim


def _load_script(path: Path, sample_rate: int | None) -> CodecHandle:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise ModelFileError(
            f"{path}: not a codec (neither a run folder, a checkpoint nor a TorchScript file: "
            f"{type(error).__name__})"
        ) from error
    missing = [name for name in ("encode", "decode") if not hasattr(module, name)]
    if missing:
        raise ModelFileError(
            f"{path}: TorchScript file is not a codec: it has no "
            f"{' and no '.join(m + '()' for m in missing)} method "
            "(a codec needs encode(audio [B,1,T]) -> [B,D,L] and decode back)"
        )
    module.eval()
    hop, latent_dim = _probe_shapes(module, path)
    rate = _script_sample_rate(module) or sample_rate
    if rate is None:
        raise ModelFileError(
            f"{path}: the codec does not say its sample rate (no get_sample_rate(), sr or sampling_rate); "
            "give it explicitly"
        )
    return CodecHandle(
        module=module,
        hop=hop,
        latent_dim=latent_dim,
        sample_rate=rate,
        codec_id=_codec_id(path.stem, path),
        source=path,
        kind="torchscript",
        latency=int(getattr(module, "latency", 0)) if isinstance(getattr(module, "latency", 0), int) else 0,
    )


def _load_model_folder(path_or_name: str | Path) -> CodecHandle:
    from after.runtime.bundle import load_bundle

    bundle = load_bundle(path_or_name)
    folder = Path(bundle.source)
    codec = bundle.codec.float().eval()
    return CodecHandle(
        module=codec,
        hop=int(bundle.hop),
        latent_dim=int(bundle.latent_dim),
        sample_rate=int(bundle.sample_rate),
        # named by content alone: models that ship the same codec (default, default-midi) share latents
        codec_id=_codec_id("codec", Path(bundle.codec_file)),
        source=folder,
        kind="model",
        latency=int(getattr(codec, "latency", 0)),
        config=bundle.codec_config,
    )


def load_codec(path: str | Path, sample_rate: int | None = None) -> CodecHandle:
    """Load a codec from a run folder, a checkpoint, a released model folder (or packaged model
    name) or a TorchScript file (see the module docstring).

    ``sample_rate`` is used only for a TorchScript codec that does not state its own rate.
    """
    from after.runtime.bundle import is_released_model

    if is_released_model(path):
        handle = _load_model_folder(path)
    else:
        path = Path(path)
        if not path.exists():
            raise ModelFileError(
                f"{path}: codec not found (expected a run folder, a checkpoint, a released model folder "
                "or a .ts file)"
            )
        is_run = path.is_dir() or path.suffix == ".ckpt"
        handle = _load_run(path) if is_run else _load_script(path, sample_rate)
    log.info(
        "codec %s: hop %d, %d latent channels, %d Hz (%s)",
        handle.codec_id,
        handle.hop,
        handle.latent_dim,
        handle.sample_rate,
        handle.kind,
    )
    return handle
