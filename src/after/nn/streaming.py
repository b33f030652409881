"""Explicit streaming state.

A :class:`StreamingModule` carries context from one call to the next in *state buffers* that it
owns. The rules, shared by every streaming unit of the project (convs, PQMF, codec, encoders,
denoiser KV caches):

* State is allocated explicitly by :meth:`StreamingModule.init_state` (recursively, zeros), never
  lazily on a first call and never through a global flag.
* Offline processing is the same code path run from an empty (zero) state: a module that is not
  streaming behaves exactly as if its state had just been initialised and is dropped after the call.
  Hence streaming block after block equals one offline call.
* State buffers are non-persistent (not in ``state_dict``) and TorchScript-friendly: scripted code may
  reassign them, and a leaf re-initialises its own state when the batch size changes (nn~ may switch
  from 1 to 4 streams), so an exported model never needs Python to manage it.

Usage::

    with streaming(model, batch_size=1):
        for block in blocks:
            out = model(block)
"""

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class StreamingModule(nn.Module):
    """Base class of modules that carry context between calls.

    Subclasses register their state with :meth:`register_state` in ``__init__`` (an empty placeholder
    is fine) and allocate it in :meth:`_init_state`. They read ``self.streaming`` in ``forward`` to
    decide whether to keep the updated state.
    """

    streaming: bool

    def __init__(self) -> None:
        super().__init__()
        self.streaming = False
        self._state_names: list[str] = []

    def register_state(self, name: str, value: torch.Tensor) -> None:
        """Declare a state buffer (non-persistent, so never saved in weights)."""
        self.register_buffer(name, value, persistent=False)
        self._state_names.append(name)

    @torch.jit.unused
    def _init_state(self, batch_size: int) -> None:
        """Allocate this module's own state for ``batch_size`` streams (zeros). Override."""

    @torch.jit.unused
    def init_state(self, batch_size: int) -> None:
        """Allocate the state of this module and every streaming descendant; switch them to streaming."""
        init_state(self, batch_size)

    @torch.jit.unused
    def reset_state(self) -> None:
        """Leave streaming mode in this module and every streaming descendant; state is dropped."""
        reset_state(self)


def init_state(model: nn.Module, batch_size: int) -> None:
    """Allocate (zeros) the state of every streaming module under ``model``; switch them to streaming."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for module in model.modules():
        if isinstance(module, StreamingModule):
            module._init_state(batch_size)
            module.streaming = True


def reset_state(model: nn.Module) -> None:
    """Switch every streaming module under ``model`` back to offline mode and drop its state."""
    for module in model.modules():
        if isinstance(module, StreamingModule):
            module.streaming = False
            for name in module._state_names:
                setattr(module, name, torch.zeros(0, device=getattr(module, name).device))


def get_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Snapshot (cloned) of every state buffer under ``model``, keyed by qualified name."""
    snapshot: dict[str, torch.Tensor] = {}
    for prefix, module in model.named_modules():
        if isinstance(module, StreamingModule):
            for name in module._state_names:
                key = f"{prefix}.{name}" if prefix else name
                snapshot[key] = getattr(module, name).clone()
    return snapshot


def set_state(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    """Restore a snapshot taken by :func:`get_state`; the model must be streaming."""
    for prefix, module in model.named_modules():
        if isinstance(module, StreamingModule):
            for name in module._state_names:
                key = f"{prefix}.{name}" if prefix else name
                if key not in snapshot:
                    raise KeyError(f"state snapshot has no entry {key!r}")
                setattr(module, name, snapshot[key].clone())


@contextlib.contextmanager
def streaming(model: nn.Module, batch_size: int) -> Iterator[nn.Module]:
    """Context in which ``model`` and its streaming descendants carry state between calls."""
    init_state(model, batch_size)
    try:
        yield model
    finally:
        reset_state(model)
