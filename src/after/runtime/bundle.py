"""A loaded model: codec + diffusion model + their configs (+ the 2-D timbre map).

:func:`load_bundle` accepts

* a **released model** folder (written by :func:`release_bundle`)::

      model.json               format name and version, name, mode, sample rate, hop, ZT, ZS, the
                               codec and diffusion configs, the sha256 of every weights file
      codec.safetensors        codec weights
      diffusion.safetensors    diffusion model weights (encoders + denoiser)
      timbre_map.safetensors   the 2-D timbre map (optional)

  Two models trained on the same codec can share one codec file: ``model.json``'s ``codec_file``
  (format version 2) then names it relative to the folder (``../default/codec.safetensors``), and its
  sha256 still pins the content. When that path is gone (the folder was copied elsewhere), the codec
  is looked up by sha256 among the packaged models. See :func:`share_codec`.

  Weights are read with safetensors only (loading a model never runs code from it). A weights file
  whose sha256 differs from the one in ``model.json`` (tampered or corrupted) and a config that does
  not match the weights are refused with a :class:`~after.errors.ModelFileError`;
* a diffusion **run folder** (through ``after.train.diffusion_run.load_diffusion_run``; the codec is
  the one its training config names);
* a **name**: ``src/after/models/<NAME>/`` inside the package (``None`` = :data:`DEFAULT_MODEL_NAME`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from after.codec.config import CodecConfig
from after.config import from_dict, to_dict
from after.diffusion.config import DiffusionConfig
from after.diffusion.model import AfterModel, build_model
from after.errors import AfterError, BadInputError, ModelFileError
from after.runtime.timbre_map import TimbreMap

log = logging.getLogger(__name__)

FORMAT_NAME = "after-model"
FORMAT_VERSION = 1
"""Version written for a self-contained folder (older readers load it)."""
SHARED_CODEC_FORMAT_VERSION = 2
"""Version written when the codec file is shared with another folder (``codec_file`` in model.json)."""
READABLE_FORMAT_VERSIONS = (FORMAT_VERSION, SHARED_CODEC_FORMAT_VERSION)
MODEL_FILE = "model.json"
CODEC_FILE = "codec.safetensors"
DIFFUSION_FILE = "diffusion.safetensors"
MAP_FILE = "timbre_map.safetensors"
DEFAULT_MODEL_NAME = "default"
"""Name of the embedded audio-to-audio model (``src/after/models/default/``)."""
DEFAULT_MIDI_MODEL_NAME = "default-midi"
"""Name of the embedded MIDI-to-audio model (``src/after/models/default-midi/``)."""


def default_model_name(mode: str) -> str:
    """Name of the embedded model for ``mode`` (``"audio"`` or ``"midi"``)."""
    return DEFAULT_MIDI_MODEL_NAME if mode == "midi" else DEFAULT_MODEL_NAME


"""Name of the model embedded in the package (``src/after/models/default/``)."""


def models_dir() -> Path:
    """Folder of the models shipped inside the package."""
    import after.models

    return Path(after.models.__file__).parent


@dataclass
class ModelBundle:
    """Everything needed to generate: the codec, the diffusion model, their configs, the timbre map.

    Attributes:
        codec: the streaming codec (:class:`after.codec.model.Codec`), eval mode.
        codec_config: its config.
        model: the diffusion model, eval mode.
        diffusion_config: its config (``latent_dim`` equals the codec's).
        timbre_map: the fitted 2-D map, or None.
        name: a short name (folder name).
        source: where it was loaded from (None when built in memory).
        codec_file: the codec weights file a released model was loaded from (its own
            ``codec.safetensors`` or the one it shares); None otherwise.
    """

    codec: nn.Module
    codec_config: CodecConfig
    model: AfterModel
    diffusion_config: DiffusionConfig
    timbre_map: TimbreMap | None = None
    name: str = "model"
    source: Path | None = None
    codec_file: Path | None = None

    @property
    def mode(self) -> str:
        """``"audio"`` or ``"midi"``: the kind of structure input."""
        return self.diffusion_config.mode

    @property
    def sample_rate(self) -> int:
        return int(self.codec_config.sample_rate)

    @property
    def hop(self) -> int:
        """Audio samples per latent frame."""
        return int(self.codec_config.hop)

    @property
    def latent_dim(self) -> int:
        return int(self.codec_config.latent_dim)

    @property
    def timbre_dim(self) -> int:
        return int(self.diffusion_config.timbre_dim)

    @property
    def structure_dim(self) -> int:
        return int(self.diffusion_config.structure_dim)

    @property
    def chunk_size(self) -> int:
        """The denoiser's chunk K: streaming blocks hold a multiple of K latent frames."""
        return int(self.diffusion_config.denoiser.chunk_size)


def random_bundle(
    codec_config: CodecConfig,
    diffusion_config: DiffusionConfig,
    seed: int = 0,
    name: str = "random",
    fill_zero_layers: bool = True,
) -> ModelBundle:
    """A bundle with freshly initialised (untrained) weights; ``latent_dim`` follows the codec.

    With ``fill_zero_layers`` the diffusion weights that start at exactly zero (the denoiser's
    zero-init output layer and modulation gates) get small random values, so that every part of
    the model acts on its output (useful for tests and demos of an untrained model).
    """
    from after.codec.model import Codec

    diffusion_config = dataclasses.replace(diffusion_config, latent_dim=codec_config.latent_dim)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        codec = Codec.from_config(codec_config).eval()
        model = build_model(diffusion_config).eval()
        if fill_zero_layers:
            with torch.no_grad():
                for parameter in model.parameters():
                    zero = parameter == 0
                    parameter[zero] = 0.1 * torch.randn(int(zero.sum()))
    return ModelBundle(codec, codec_config, model, diffusion_config, None, name)


# -- released format ---------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_weights(module: nn.Module, path: Path, fp16: bool = False) -> str:
    """Write ``module``'s state as safetensors (float32 tensors stored as float16 with ``fp16``)."""
    from safetensors.torch import save_file

    tensors = {}
    for key, value in module.state_dict().items():
        value = value.detach().cpu()
        if fp16 and value.dtype == torch.float32:
            value = value.half()
        tensors[key] = value.contiguous().clone()
    save_file(tensors, str(path))
    _readable_like_other_files(path)
    return _sha256(path)


def _readable_like_other_files(path: Path) -> None:
    """Give ``path`` the permissions of a newly created file under the current umask (the
    safetensors writer makes its files private to their owner, 0600)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def release_bundle(bundle: ModelBundle, out_dir: str | Path, fp16: bool = False) -> Path:
    """Write ``bundle`` as a released model folder (see the module docstring); returns the folder.

    With ``fp16`` the weights are stored as float16 (half the size); they load back into float32
    modules.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        CODEC_FILE: _save_weights(bundle.codec, out / CODEC_FILE, fp16),
        DIFFUSION_FILE: _save_weights(bundle.model, out / DIFFUSION_FILE, fp16),
    }
    if bundle.timbre_map is not None:
        files[MAP_FILE] = _save_weights(bundle.timbre_map, out / MAP_FILE, fp16)
    elif (out / MAP_FILE).exists():
        (out / MAP_FILE).unlink()
    description = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": bundle.name,
        "mode": bundle.mode,
        "sample_rate": bundle.sample_rate,
        "hop": bundle.hop,
        "latent_dim": bundle.latent_dim,
        "timbre_dim": bundle.timbre_dim,
        "structure_dim": bundle.structure_dim,
        "codec": to_dict(bundle.codec_config),
        "diffusion": to_dict(bundle.diffusion_config),
        "files": files,
        "weights_dtype": "float16" if fp16 else "float32",
    }
    _write_description(out, description)
    log.info("released model %r to %s", bundle.name, out)
    return out


def _read_description(folder: Path) -> dict[str, Any]:
    path = folder / MODEL_FILE
    try:
        description = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: unreadable model description ({error})") from error
    if not isinstance(description, dict) or description.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not an after model description (format {FORMAT_NAME!r} expected)")
    version = description.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
        raise ModelFileError(
            f"{path}: model format version {version!r}; this version of after reads versions {readable}"
        )
    missing = [
        k for k in ("codec", "diffusion", "files", "mode", "sample_rate", "hop") if k not in description
    ]
    if missing:
        raise ModelFileError(f"{path}: model description lacks {', '.join(missing)}")
    return description


def _load_weights(module: nn.Module, path: Path, expected_sha256: str | None, what: str) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelFileError(f"{path}: {what} weights file missing")
    if expected_sha256 is None:
        raise ModelFileError(f"{path}: model.json records no sha256 for this file")
    actual = _sha256(path)
    if actual != expected_sha256:
        raise ModelFileError(
            f"{path}: sha256 {actual[:16]}... does not match model.json ({expected_sha256[:16]}...): "
            "the file was modified or corrupted"
        )
    try:
        tensors = load_file(str(path))
    except Exception as error:
        raise ModelFileError(f"{path}: not a readable safetensors file ({error})") from error
    reference = module.state_dict()
    for key, value in tensors.items():  # float16 storage (released with fp16) -> the module's dtype
        if key in reference and value.dtype == torch.float16 and reference[key].dtype != torch.float16:
            tensors[key] = value.to(reference[key].dtype)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ModelFileError(
            f"{path}: {what} weights do not match the config in model.json ({detail})"
        ) from error


def _shared_codec_name(description: dict[str, Any], where: str) -> str | None:
    """``codec_file`` of a description: None (the folder's own ``codec.safetensors``) or a relative
    path ending in ``.safetensors``; anything else is refused."""
    name = description.get("codec_file")
    if name is None:
        return None
    if (
        not isinstance(name, str)
        or not name.endswith(".safetensors")
        or Path(name).is_absolute()
        or "\\" in name
    ):
        raise ModelFileError(
            f"{where}: codec_file {name!r}: expected a relative path to a .safetensors file "
            "(such as ../default/codec.safetensors)"
        )
    if description.get("format_version") != SHARED_CODEC_FORMAT_VERSION:
        raise ModelFileError(
            f"{where}: codec_file needs format_version {SHARED_CODEC_FORMAT_VERSION}, "
            f"not {description.get('format_version')!r}"
        )
    return name


def _packaged_file_with_digest(digest: str, file_name: str) -> Path | None:
    """A packaged model's ``file_name`` whose sha256 is ``digest`` (None when there is none)."""
    root = models_dir()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        candidate = folder / file_name
        if candidate.is_file() and _sha256(candidate) == digest:
            return candidate
    return None


def _codec_weights_path(folder: Path, description: dict[str, Any]) -> Path:
    """The codec weights file of the released model ``folder`` (whose ``model.json`` reads
    ``description``): its own ``codec.safetensors``, or the shared one named by ``codec_file``; when
    that one is gone, the packaged model's codec with the same sha256. Raises
    :class:`ModelFileError` naming what is missing.
    """
    where = str(folder / MODEL_FILE)
    shared = _shared_codec_name(description, where)
    if shared is None:
        return folder / CODEC_FILE
    path = folder / shared
    if path.is_file():
        return path
    digest = description["files"].get(CODEC_FILE) if isinstance(description["files"], dict) else None
    found = _packaged_file_with_digest(digest, CODEC_FILE) if isinstance(digest, str) else None
    if found is not None:
        log.info("%s: shared codec %s not found; using the packaged %s (same sha256)", where, shared, found)
        return found
    raise ModelFileError(
        f"{where}: shares the codec file {shared}, which is missing (resolved to {path}) and no packaged "
        "model has a codec with the sha256 recorded in model.json; copy the model it shares the codec "
        "with beside this folder"
    )


def share_codec(folder: str | Path, owner: str | Path) -> Path:
    """Make the released model ``folder`` use the codec file of the released model ``owner``
    (both folders side by side in a package, for instance) instead of its own copy.

    The two codec files must be byte-identical (same sha256): ``folder``'s copy is then removed and
    its ``model.json`` names the owner's file by a relative path (format version 2). Returns the
    shared file. Raises :class:`BadInputError` when the codecs differ or ``owner`` itself shares.
    """
    import os

    folder, owner = Path(folder), Path(owner)
    if folder.resolve() == owner.resolve():
        raise BadInputError(f"{folder}: a model cannot share the codec with itself")
    description = _read_description(folder)
    owner_description = _read_description(owner)
    if owner_description.get("codec_file") is not None:
        raise BadInputError(f"{owner}: shares its codec itself; give the folder that holds the file")
    owner_file = owner / CODEC_FILE
    expected = description["files"].get(CODEC_FILE)
    actual = _sha256(owner_file) if owner_file.is_file() else None
    if actual is None or actual != expected or owner_description["files"].get(CODEC_FILE) != actual:
        raise BadInputError(
            f"{owner_file}: not the codec of {folder} (its sha256 differs from the one in "
            f"{folder / MODEL_FILE}); only models trained on the same codec can share it"
        )
    relative = Path(os.path.relpath(owner_file.resolve(), folder.resolve())).as_posix()
    description["codec_file"] = relative
    description["format_version"] = SHARED_CODEC_FORMAT_VERSION
    _write_description(folder, description)
    (folder / CODEC_FILE).unlink(missing_ok=True)  # folder and owner differ (checked above)
    log.info("%s now shares the codec %s", folder, relative)
    return owner_file


def _write_description(folder: Path, description: dict[str, Any]) -> None:
    """Write ``model.json`` atomically (a temporary file, then a rename)."""
    tmp = folder / (MODEL_FILE + ".tmp")
    tmp.write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    tmp.replace(folder / MODEL_FILE)


def _load_released(folder: Path) -> ModelBundle:
    from after.codec.model import Codec

    description = _read_description(folder)
    where = str(folder / MODEL_FILE)
    try:
        codec_config = from_dict(CodecConfig, description["codec"], where=f"{where}: codec")
        diffusion_config = from_dict(DiffusionConfig, description["diffusion"], where=f"{where}: diffusion")
    except AfterError as error:
        raise ModelFileError(str(error)) from error
    declared = {
        "sample_rate": codec_config.sample_rate,
        "hop": codec_config.hop,
        "mode": diffusion_config.mode,
        "latent_dim": codec_config.latent_dim,
        "timbre_dim": diffusion_config.timbre_dim,
        "structure_dim": diffusion_config.structure_dim,
    }
    for key, value in declared.items():
        if key in description and description[key] != value:
            raise ModelFileError(f"{where}: {key} is {description[key]!r} but the configs give {value!r}")
    if diffusion_config.latent_dim != codec_config.latent_dim:
        raise ModelFileError(
            f"{where}: diffusion latent_dim {diffusion_config.latent_dim} != codec latent_dim "
            f"{codec_config.latent_dim}"
        )
    files = description["files"]
    codec = Codec.from_config(codec_config)
    codec_file = _codec_weights_path(folder, description)
    _load_weights(codec, codec_file, files.get(CODEC_FILE), "codec")
    model = build_model(diffusion_config)
    _load_weights(model, folder / DIFFUSION_FILE, files.get(DIFFUSION_FILE), "diffusion")
    timbre_map = None
    if MAP_FILE in files:
        timbre_map = TimbreMap(diffusion_config.timbre_dim)
        _load_weights(timbre_map, folder / MAP_FILE, files.get(MAP_FILE), "timbre map")
        timbre_map.eval()
    name = str(description.get("name") or folder.name)
    return ModelBundle(
        codec.eval(), codec_config, model.eval(), diffusion_config, timbre_map, name, folder, codec_file
    )


# -- run folders ----------------------------------------------------------------------------------


def _load_run(run_path: Path) -> ModelBundle:
    """A diffusion run folder (latest checkpoint, EMA weights) or one of its ``.ckpt`` files."""
    from after.codec.model import Codec
    from after.train.diffusion_run import load_diffusion_run, load_run_codec

    model, diffusion_config, _ = load_diffusion_run(run_path)
    run_dir = run_path if run_path.is_dir() else run_path.parent.parent
    handle = load_run_codec(run_dir)
    if handle.kind not in ("run", "model") or not isinstance(handle.module, Codec):
        raise ModelFileError(
            f"{handle.source}: streaming generation needs the codec's run folder, checkpoint or "
            f"released model, not a {handle.kind} codec"
        )
    codec_config = codec_config_of(handle)
    return ModelBundle(
        handle.module.eval(), codec_config, model.eval(), diffusion_config, None, run_dir.name, run_path
    )


def codec_config_of(handle: Any) -> CodecConfig:
    """The codec config stored in the checkpoint (or released model folder) ``handle`` was loaded from."""
    from after.train.run import CONFIG_KEY, load_checkpoint

    if handle.config is not None:  # a released model's, read with its weights
        return handle.config

    config = load_checkpoint(handle.source).get(CONFIG_KEY, {})
    section = config.get("codec") if isinstance(config, dict) else None
    if not isinstance(section, dict):
        raise ModelFileError(f"{handle.source}: checkpoint carries no codec config")
    try:
        return from_dict(CodecConfig, section, where=f"{handle.source}: codec")
    except AfterError as error:
        raise ModelFileError(str(error)) from error


def is_released_model(path_or_name: str | Path) -> bool:
    """True when ``path_or_name`` is a released model folder or the name of a packaged model."""
    path = Path(path_or_name)
    if path.exists():
        return (path / MODEL_FILE).is_file()
    text = str(path_or_name)
    return "/" not in text and "\\" not in text and (models_dir() / text / MODEL_FILE).is_file()


def load_bundle(path_or_name: str | Path | None = None) -> ModelBundle:
    """Load a released model folder, a diffusion run folder or a packaged model by name.

    ``None`` loads the embedded default model (:data:`DEFAULT_MODEL_NAME`; the MIDI one is
    :data:`DEFAULT_MIDI_MODEL_NAME`).
    Raises :class:`ModelFileError` with a message naming the file and the problem.
    """
    name = str(path_or_name) if path_or_name else DEFAULT_MODEL_NAME
    if name in (DEFAULT_MODEL_NAME, DEFAULT_MIDI_MODEL_NAME):
        folder = models_dir() / name
        if not (folder / MODEL_FILE).is_file():
            raise ModelFileError(
                f"no default model is installed yet ({folder} has no {MODEL_FILE}); "
                "give a model with --model PATH (a released model folder or a diffusion run folder)"
            )
        return _load_released(folder)
    path = Path(path_or_name)
    if not path.exists():
        text = str(path_or_name)
        if "/" not in text and "\\" not in text and not path.suffix:
            folder = models_dir() / text
            if (folder / MODEL_FILE).is_file():
                return _load_released(folder)
            available = sorted(p.name for p in models_dir().iterdir() if (p / MODEL_FILE).is_file())
            raise ModelFileError(
                f"model {text!r}: no such file or folder, and no packaged model of that name "
                f"(packaged: {', '.join(available) or 'none'})"
            )
        raise ModelFileError(f"{path}: model not found (expected a released model folder or a run folder)")
    if path.is_file():
        if path.name == MODEL_FILE:
            return _load_released(path.parent)
        if path.suffix == ".ckpt":
            return _load_run(path)
        raise ModelFileError(
            f"{path}: is a file, not a model; expected a released model folder (with {MODEL_FILE}) "
            "or a diffusion run folder"
        )
    if (path / MODEL_FILE).is_file():
        return _load_released(path)
    if (path / "config.json").is_file():
        return _load_run(path)
    raise ModelFileError(
        f"{path}: not a model folder (no {MODEL_FILE} of a released model, no config.json of a run)"
    )


def release_run(
    run_dir: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    fp16: bool = False,
    dataset: str | Path | None = None,
    map_steps: int = 2000,
    steps: int | None = None,
    guidance_timbre: float | None = None,
    guidance_structure: float | None = None,
    decoder_from: str | Path | None = None,
    share_codec_with: str | Path | None = None,
) -> Path:
    """``after release``: load a diffusion run folder, fit its 2-D timbre map (on ``dataset``'s
    chunks when given, else on synthetic references) and write a released model folder.

    ``run_dir`` may also be a released model folder (to ship it with another decoder or other
    sampling settings, say); it then keeps its own timbre map unless ``dataset`` is given.

    ``decoder_from`` (a codec run folder or checkpoint, or a released model) replaces the codec's
    decoder with that codec's, which must share the run codec's config and every encoder weight
    (``after train-codec --decoder-only``): see :func:`replace_decoder`.

    ``share_codec_with`` (a released model folder whose codec file is byte-identical to this
    release's) makes the new folder use that file instead of a copy: see :func:`share_codec`.

    ``steps``, ``guidance_timbre`` and ``guidance_structure`` (``None``: the run's) become the
    released model's default sampling settings, the ones every host starts with. Raises
    :class:`BadInputError` naming a value out of range (steps 1..``max_steps``, guidance >= 0).
    """
    from after.config import require_non_negative
    from after.runtime.timbre_map import collect_timbre_vectors, fit_timbre_map

    require_non_negative("guidance_timbre", guidance_timbre)
    require_non_negative("guidance_structure", guidance_structure)
    if share_codec_with is not None and not (Path(share_codec_with) / MODEL_FILE).is_file():
        raise BadInputError(
            f"--share-codec-with {share_codec_with}: not a released model folder (no {MODEL_FILE})"
        )
    bundle = load_bundle(Path(run_dir))
    if decoder_from is not None:
        replace_decoder(bundle, decoder_from)
    if steps is not None and not 1 <= steps <= bundle.diffusion_config.denoiser.max_steps:
        raise BadInputError(
            f"steps {steps}: expected 1..{bundle.diffusion_config.denoiser.max_steps} (the model's max_steps)"
        )
    settings = dict(n_steps=steps, guidance_timbre=guidance_timbre, guidance_structure=guidance_structure)
    bundle.diffusion_config = dataclasses.replace(
        bundle.diffusion_config, **{k: v for k, v in settings.items() if v is not None}
    )
    bundle.name = name or Path(out_dir).name
    if dataset is None and bundle.timbre_map is not None:
        # a released model given as the run: its map was fitted on its dataset, which a refit on
        # synthetic references would lose
        log.info("kept the timbre map of %s (give --dataset to fit a new one)", run_dir)
    else:
        vectors, labels = collect_timbre_vectors(bundle, dataset)
        bundle.timbre_map = fit_timbre_map(vectors, labels, steps=map_steps)
    folder = release_bundle(bundle, out_dir, fp16=fp16)
    if share_codec_with is not None:
        share_codec(folder, share_codec_with)
    return folder


def trainable_codec_weights(source: str | Path, option: str) -> tuple[CodecConfig, dict[str, torch.Tensor]]:
    """Config and float weights of the codec in ``source``: a codec run folder or checkpoint, a
    released model folder or a packaged model's name. ``option`` (``--init-from``, ...) starts every
    :class:`BadInputError` message: ``source`` missing or unreadable, or a TorchScript codec.
    """
    from after.codec.load import load_codec

    try:
        handle = load_codec(source)
    except ModelFileError as error:
        raise BadInputError(f"{option}: {error}") from error
    if handle.kind not in ("run", "model"):
        raise BadInputError(
            f"{option} {source}: a TorchScript codec holds no trainable weights; give its run folder "
            "or checkpoint"
        )
    try:
        return codec_config_of(handle), handle.module.state_dict()
    except ModelFileError as error:
        raise BadInputError(f"{option}: {error}") from error


def replace_decoder(bundle: ModelBundle, source: str | Path) -> None:
    """Give ``bundle``'s codec the decoder of the codec in ``source`` (run folder, checkpoint,
    released model folder or packaged model name).

    The latents the diffusion model learnt stay valid only when the encoder is the same, so the
    source must have the same codec config (but for the decoder's oscillator bank,
    :data:`~after.codec.config.DECODER_ONLY_FIELDS`, which it brings along) and bit-identical weights
    outside ``decoder.*`` (a codec fine-tuned with ``after train-codec --decoder-only`` from this one). Raises
    :class:`BadInputError` naming ``source`` and the first difference otherwise.
    """
    from after.codec.config import encoder_config_differences
    from after.codec.model import Codec

    other_config, weights = trainable_codec_weights(source, "--decoder-from")
    details = encoder_config_differences(to_dict(bundle.codec_config), to_dict(other_config))
    if details:
        raise BadInputError(f"--decoder-from {source}: codec config differs from the run's ({details})")
    own = bundle.codec.state_dict()
    if other_config != bundle.codec_config:
        # the source's decoder has another oscillator bank: the codec takes the source's config
        bundle.codec = Codec.from_config(other_config).eval()
        bundle.codec_config = other_config
    for key, value in own.items():
        if key.startswith("decoder."):
            continue
        theirs = weights.get(key)
        if theirs is None or not torch.equal(value.float(), theirs.float()):
            raise BadInputError(
                f"--decoder-from {source}: its encoder differs from the run's codec ({key}); the "
                "diffusion model's latents would not match. Fine-tune with `after train-codec "
                "--decoder-only --init-from` the run's codec"
            )
    merged = {key: value for key, value in own.items() if not key.startswith("decoder.")}
    merged.update({key: value for key, value in weights.items() if key.startswith("decoder.")})
    bundle.codec.load_state_dict({key: value.float() for key, value in merged.items()})
    log.info("codec decoder replaced by the one of %s (encoder unchanged)", source)
