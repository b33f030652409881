"""Check an exported TorchScript file the way nn~ loads it, and list every problem found.

:func:`check_export` reads ``get_methods()`` / ``get_attributes()``, each method's ``<m>_params``
buffer and label lists, calls each method on zeros ``[B, C, N / ratio]`` for B = 1 and 4 (and on
real audio when given), checks that outputs are float32, finite and of the advertised shape, and
gets then sets every attribute back to its value (the setter must return 0). It never raises for a
bad file: it returns the problems as readable sentences (an empty list means the file passes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

DEFAULT_BUFFER_SIZE = 4096
"""nn~'s default internal buffer (samples); raised to the largest ratio of the model if needed."""


def _power_ceil(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def _method_params(model: Any, name: str, problems: list[str]) -> tuple[int, int, int, int] | None:
    params = getattr(model, f"{name}_params", None)
    if not isinstance(params, torch.Tensor):
        problems.append(
            f"method {name!r}: no {name}_params buffer [in_channels, in_ratio, out_channels, out_ratio]"
        )
        return None
    if params.numel() != 4 or params.dtype.is_floating_point:
        problems.append(f"method {name!r}: {name}_params must hold 4 integers, got {params.tolist()}")
        return None
    values = tuple(int(v) for v in params.tolist())
    if min(values) < 1:
        problems.append(f"method {name!r}: {name}_params {list(values)} must all be >= 1")
        return None
    return values  # type: ignore[return-value]


def _check_labels(model: Any, name: str, in_channels: int, out_channels: int, problems: list[str]) -> None:
    for side, count in (("input", in_channels), ("output", out_channels)):
        labels = getattr(model, f"{name}_{side}_labels", None)
        if not isinstance(labels, list | tuple) or not all(isinstance(item, str) for item in labels):
            problems.append(f"method {name!r}: no {name}_{side}_labels list of strings")
        elif len(labels) != count:
            problems.append(f"method {name!r}: {len(labels)} {side} labels for {count} channels")


def _check_call(
    model: Any, name: str, x: torch.Tensor, expected: tuple[int, ...], problems: list[str]
) -> None:
    try:
        with torch.inference_mode():
            out = getattr(model, name)(x)
    except Exception as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        problems.append(f"method {name!r}: fails on input {tuple(x.shape)}: {first_line}")
        return
    if not isinstance(out, torch.Tensor):
        problems.append(f"method {name!r}: returned {type(out).__name__}, expected a tensor")
        return
    if tuple(out.shape) != expected:
        problems.append(
            f"method {name!r}: input {tuple(x.shape)} gave output {tuple(out.shape)}, expected {expected}"
        )
    if out.dtype != torch.float32:
        problems.append(f"method {name!r}: output dtype {out.dtype}, expected torch.float32")
    elif not torch.isfinite(out).all():
        problems.append(f"method {name!r}: output on input {tuple(x.shape)} holds NaN or inf")


def _check_attribute(model: Any, name: str, problems: list[str]) -> None:
    getter, setter = getattr(model, f"get_{name}", None), getattr(model, f"set_{name}", None)
    if getter is None or setter is None:
        missing = [f"{kind}_{name}()" for kind, f in (("get", getter), ("set", setter)) if f is None]
        problems.append(f"attribute {name!r}: missing {' and '.join(missing)}")
        return
    if not isinstance(getattr(model, f"{name}_params", None), torch.Tensor):
        problems.append(f"attribute {name!r}: no {name}_params buffer of type codes")
    try:
        value = getter()
        values = list(value) if isinstance(value, list | tuple) else [value]
        status = setter(*values)
    except Exception as error:
        problems.append(f"attribute {name!r}: get/set failed: {str(error).strip().splitlines()[-1]}")
        return
    if status != 0:
        problems.append(
            f"attribute {name!r}: set_{name}({values}) with its own value returned {status}, expected 0"
        )


def check_export(
    model_or_path: str | Path | torch.jit.ScriptModule,
    audio: torch.Tensor | None = None,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    batch_sizes: tuple[int, ...] = (1, 4),
) -> list[str]:
    """Problems that would stop nn~ from using the model; an empty list means none were found.

    Args:
        model_or_path: a ``.ts`` file or an already loaded TorchScript module.
        audio: optional real audio ``[T]`` or ``[1, T]``, fed (cropped to whole buffers) to every
            method whose input is one audio channel at ratio 1.
        buffer_size: host buffer in samples; raised to a power of two >= the largest ratio, as nn~ does.
        batch_sizes: batch sizes to try (nn~ uses 1; mc.nn~ several).
    """
    problems: list[str] = []
    if isinstance(model_or_path, str | Path):
        path = Path(model_or_path)
        if not path.is_file():
            return [f"{path}: file not found"]
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            return [f"{path}: not a TorchScript file ({type(error).__name__})"]
    else:
        model = model_or_path

    try:
        methods = list(model.get_methods())
    except Exception:
        return ["no get_methods() method: nn~ cannot list the model's methods"]
    if not methods:
        problems.append("get_methods() returned no method")
    try:
        attributes = list(model.get_attributes())
    except Exception:
        problems.append("no get_attributes() method")
        attributes = []
    try:
        rate = int(model.get_sample_rate())
        if rate <= 0:
            problems.append(f"get_sample_rate() returned {rate}, expected a positive rate in Hz")
    except Exception:
        problems.append("no get_sample_rate() method")

    params = {name: _method_params(model, name, problems) for name in methods}
    ratios = [r for p in params.values() if p is not None for r in (p[1], p[3])]
    size = _power_ceil(max([buffer_size, *ratios]))
    for name, p in params.items():
        if p is None:
            continue
        if not hasattr(model, name):
            problems.append(f"method {name!r}: listed by get_methods() but not in the file")
            continue
        in_channels, in_ratio, out_channels, out_ratio = p
        _check_labels(model, name, in_channels, out_channels, problems)
        if size % in_ratio or size % out_ratio:
            problems.append(
                f"method {name!r}: ratios {in_ratio}/{out_ratio} do not divide a {size}-sample buffer"
            )
            continue
        for batch in batch_sizes:
            x = torch.zeros(batch, in_channels, size // in_ratio)
            _check_call(model, name, x, (batch, out_channels, size // out_ratio), problems)
        if audio is not None and in_channels == 1 and in_ratio == 1:
            flat = audio.reshape(-1).float()
            usable = (flat.numel() // size) * size
            if usable:
                x = flat[:usable].reshape(1, 1, usable)  # [1, 1, T] whole buffers
                _check_call(model, name, x, (1, out_channels, usable // out_ratio), problems)
    for name in attributes:
        _check_attribute(model, name, problems)
    for problem in problems:
        log.debug("export check: %s", problem)
    return problems
