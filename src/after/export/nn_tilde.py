"""Our own implementation of the nn~ model contract (no dependency on the ``nn_tilde`` package).

nn~ (Max/MSP, PureData) loads a TorchScript file and, for every method ``M`` listed by
``get_methods()``, reads:

* ``M_params``: int buffer ``[in_channels, in_ratio, out_channels, out_ratio]``; the method takes
  float32 ``[B, in_channels, N / in_ratio]`` and returns float32 ``[B, out_channels, N / out_ratio]``
  for a host buffer of N samples (a power of two, at least the largest ratio);
* ``M_input_labels`` / ``M_output_labels``: one string per channel (inlet/outlet help).

For every attribute ``A`` listed by ``get_attributes()`` it calls ``get_A()`` and ``set_A(...)``
(setters return 0 when the value is accepted, -1 when refused), and reads the type codes in the
``A_params`` buffer. ``get_sample_rate()`` gives the model's sample rate.

Subclass :class:`NnTildeModule`, call :meth:`register_method` / :meth:`register_attribute` in
``__init__`` after building the layers, write the methods (``@torch.jit.export`` except
``forward``) and typed ``get_A``/``set_A`` methods, then :meth:`export` to a ``.ts`` file.
"""

# No ``from __future__ import annotations`` here: TorchScript must see the class annotations as types.
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

ATTRIBUTE_TYPE_CODES: dict[type, int] = {bool: 0, int: 1, float: 2, str: 3, torch.Tensor: 4}
"""Type codes nn~ reads from ``<attribute>_params`` (one per value of the attribute)."""


class NnTildeModule(nn.Module):
    """Base class of models exported for nn~. See the module docstring for the contract."""

    sample_rate: int
    methods: list[str]
    attributes: list[str]

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.methods = []
        self.attributes = []

    def __init_subclass__(cls, **kwargs: object) -> None:
        # TorchScript reads attribute types from the class's own annotations only: inherit ours.
        super().__init_subclass__(**kwargs)
        cls.__annotations__ = {**NnTildeModule.__annotations__, **inspect.get_annotations(cls)}

    # -- registration (eager only) ----------------------------------------------------------------
    @torch.jit.unused
    def register_method(
        self,
        name: str,
        in_channels: int,
        in_ratio: int,
        out_channels: int,
        out_ratio: int,
        input_labels: Sequence[str] | None = None,
        output_labels: Sequence[str] | None = None,
        test_buffer_size: int = 8192,
        test: bool = True,
    ) -> None:
        """Declare method ``name`` with its channel counts and ratios, and test-call it.

        The test calls run the (eager) method on zeros ``[B, in_channels, test_buffer_size / in_ratio]``
        for B = 1 and 4 and check that it returns float32 ``[B, out_channels, test_buffer_size /
        out_ratio]``; a mismatch raises ValueError naming the method.
        """
        for label, value in (
            ("in_channels", in_channels),
            ("in_ratio", in_ratio),
            ("out_channels", out_channels),
            ("out_ratio", out_ratio),
        ):
            if int(value) < 1:
                raise ValueError(f"method {name!r}: {label} must be >= 1, got {value}")
        if name in self.methods:
            raise ValueError(f"method {name!r} registered twice")
        input_labels = list(input_labels or [f"(signal) input {i}" for i in range(in_channels)])
        output_labels = list(output_labels or [f"(signal) output {i}" for i in range(out_channels)])
        if len(input_labels) != in_channels or len(output_labels) != out_channels:
            raise ValueError(
                f"method {name!r}: {len(input_labels)} input / {len(output_labels)} output labels "
                f"for {in_channels} / {out_channels} channels"
            )
        self.register_buffer(
            f"{name}_params", torch.tensor([in_channels, in_ratio, out_channels, out_ratio], dtype=torch.long)
        )
        setattr(self, f"{name}_input_labels", input_labels)
        setattr(self, f"{name}_output_labels", output_labels)
        self.methods.append(name)
        if test:
            self.test_method(name, test_buffer_size)

    @torch.jit.unused
    def test_method(self, name: str, buffer_size: int) -> None:
        """Call method ``name`` eagerly at batch 1 and 4 and check the output shape and dtype."""
        in_channels, in_ratio, out_channels, out_ratio = (int(v) for v in getattr(self, f"{name}_params"))
        if buffer_size % in_ratio or buffer_size % out_ratio:
            raise ValueError(
                f"method {name!r}: test buffer of {buffer_size} samples is not a multiple of "
                f"its ratios {in_ratio} / {out_ratio}"
            )
        method = getattr(self, name)
        for batch in (1, 4):
            with torch.no_grad():
                out = method(torch.zeros(batch, in_channels, buffer_size // in_ratio))
            expected = (batch, out_channels, buffer_size // out_ratio)
            if (
                not isinstance(out, torch.Tensor)
                or tuple(out.shape) != expected
                or out.dtype != torch.float32
            ):
                got = (
                    f"{out.dtype} {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
                )
                raise ValueError(f"method {name!r}: returned {got}, expected float32 {expected}")

    @torch.jit.unused
    def register_attribute(self, name: str, default: bool | int | float | str | Sequence) -> None:
        """Declare attribute ``name`` with its default value(s); the subclass writes ``get_<name>``
        (typed return) and ``set_<name>`` (returns 0 if accepted, -1 if refused)."""
        if name in self.attributes:
            raise ValueError(f"attribute {name!r} registered twice")
        values = list(default) if isinstance(default, list | tuple) else [default]
        codes = []
        for value in values:
            kind = next(
                (
                    k
                    for k in ATTRIBUTE_TYPE_CODES
                    if isinstance(value, k) and not (k is int and isinstance(value, bool))
                ),
                None,
            )
            if kind is None:
                raise ValueError(f"attribute {name!r}: unsupported value type {type(value).__name__}")
            codes.append(ATTRIBUTE_TYPE_CODES[kind])
        self.register_buffer(f"{name}_params", torch.tensor(codes, dtype=torch.long))
        self.attributes.append(name)

    @torch.jit.unused
    def check_attributes(self) -> None:
        """Every registered attribute must have ``get_<name>`` and ``set_<name>`` methods."""
        for name in self.attributes:
            for accessor in (f"get_{name}", f"set_{name}"):
                if not callable(getattr(self, accessor, None)):
                    raise ValueError(f"attribute {name!r} has no {accessor}() method")

    # -- contract methods (scripted) -----------------------------------------------------------
    @torch.jit.export
    def get_methods(self) -> list[str]:
        """Names of the methods nn~ may call."""
        return self.methods

    @torch.jit.export
    def get_attributes(self) -> list[str]:
        """Names of the attributes nn~ may get and set."""
        return self.attributes

    @torch.jit.export
    def get_sample_rate(self) -> int:
        """Sample rate in Hz the model works at."""
        return self.sample_rate

    # -- export --------------------------------------------------------------------------------
    @torch.jit.unused
    def export(self, path: str | Path) -> torch.jit.ScriptModule:
        """Script the module (eval mode) and save it to ``path``; returns the scripted module."""
        self.check_attributes()
        self.eval()
        scripted = torch.jit.script(self)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        scripted.save(str(path))
        log.info("exported %s (methods %s, attributes %s)", path, self.methods, self.attributes)
        return scripted
