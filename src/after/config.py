"""Typed, frozen configurations and their JSON form.

Each part of the system (codec, diffusion model, training) defines its own frozen dataclass next to
its code and registers named presets here. A config is saved as JSON next to every run and inside
every checkpoint, so that a checkpoint carries what rebuilds its model. Modules never import this
file: :mod:`after.build` turns configs into modules with plain arguments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from after.errors import BadInputError

C = TypeVar("C")


def to_dict(config: Any) -> dict[str, Any]:
    """Return a JSON-ready dict of a (nested) dataclass config; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _coerce(kind: Any, value: Any, where: str) -> Any:
    """Turn a JSON value back into the type annotated on a config field."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        return _coerce(inner[0], value, where) if len(inner) == 1 else value
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], item, where) for item in value)
        return tuple(_coerce(arg, item, where) for arg, item in zip(args, value))
    if origin is list:
        (arg,) = typing.get_args(kind)
        return [_coerce(arg, item, where) for item in value]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_dict(cls: type[C], data: dict[str, Any], where: str = "config") -> C:
    """Build a dataclass config from a dict, refusing unknown keys with a message naming them.

    Missing keys take the dataclass defaults, so configs saved by older versions still load.
    """
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise BadInputError(
            f"{where}: unknown keys {unknown} for {cls.__name__}; expected some of {sorted(names)}"
        )
    values = {key: _coerce(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    return cls(**values)


def save_json(config: Any, path: str | Path) -> None:
    """Write a config as indented JSON."""
    Path(path).write_text(json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")


def load_json(cls: type[C], path: str | Path) -> C:
    """Read a config written by :func:`save_json`; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise BadInputError(f"{path}: config file not found") from error
    except json.JSONDecodeError as error:
        raise BadInputError(f"{path}: not valid JSON ({error})") from error
    return from_dict(cls, data, where=str(path))


def replace(config: C, **changes: Any) -> C:
    """Return a copy of a frozen config with some fields changed."""
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def require_non_negative(name: str, value: float | None) -> None:
    """Refuse (:class:`BadInputError` naming ``name``) a value that is not finite and >= 0; ``None``
    (not given) passes."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise BadInputError(f"{name} {value}: expected a finite value >= 0")


def config_differences(mine: dict[str, Any], theirs: dict[str, Any], keys: Any = None) -> str:
    """``"key: <theirs> there, <mine> here"`` for each key (default: both dicts' keys, sorted) whose
    values differ, joined by commas; ``""`` when they agree. Used to say why weights do not fit."""
    names = sorted(set(mine) | set(theirs)) if keys is None else list(keys)
    differing = [k for k in names if mine.get(k) != theirs.get(k)]
    return ", ".join(f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} here" for k in differing)
