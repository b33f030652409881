"""Dynamic int8 quantisation of the matrix products that dominate batch-1 streaming on a CPU.

At batch 1 a streaming call multiplies a few frames by every weight of the network once, so its cost is
the time to read the weights from memory. Storing the large weights as int8 (a quarter of fp32) and
quantising the activations on the fly ("dynamic" quantisation, fbgemm/onednn kernels) makes those
products 3-6x faster on this kind of machine; small layers are left in fp32, where the quantisation
overhead would cost more than it saves.

* :func:`quantize_linears`: ``nn.Linear`` layers -> ``torch.ao.nn.quantized.dynamic.Linear``
  (per-output-channel weight scales);
* :func:`quantize_convs`: the project's causal convolutions, which are already computed as one matrix
  product over stacked taps (:mod:`after.nn.conv`) -> :class:`Int8CausalConv1d` /
  :class:`Int8CausalConvTranspose1d`, which do that product in int8 and keep the streaming state
  handling of their fp32 parents (same cache layout, same latency);
* :func:`freeze_snakes`: Snake activations with their per-channel constants computed once;
* :func:`quantize_dynamic_int8`: all three, on a deep copy.

Numerics: weights are rounded once (per output channel); each call quantises its input with one scale
over the whole call, so the result depends a little on how a signal is cut into blocks: streaming
equals offline only up to the quantisation error (tests bound it), not bit for bit. Quantised modules
script, save and load with TorchScript (and so go into nn~ exports).
"""

import copy
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as qdynamic

from after.nn.activations import Snake
from after.nn.conv import CausalConv1d, CausalConvTranspose1d, remove_weight_norm
from after.nn.streaming import StreamingModule

DEFAULT_MIN_WEIGHTS = 1 << 16
"""Layers with fewer weights than this stay fp32 (int8 only pays off for weights that outgrow the caches)."""


def int8_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> qdynamic.Linear:
    """Dynamic int8 linear layer ``y = x W^T + b`` from an fp32 ``weight [out, in]`` (per-channel scales)."""
    dense = nn.Linear(weight.size(1), weight.size(0), bias=bias is not None)
    with torch.no_grad():
        dense.weight.copy_(weight)
        if bias is not None:
            dense.bias.copy_(bias)
    dense.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return qdynamic.Linear.from_float(dense)


def _conv_arguments(conv: nn.Module) -> dict[str, int | bool]:
    return {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": conv.kernel_size[0],
        "stride": conv.stride[0],
        "dilation": conv.dilation[0],
        "groups": conv.groups,
        "bias": conv.bias is not None,
    }


class Int8CausalConv1d(CausalConv1d):
    """:class:`~after.nn.conv.CausalConv1d` whose product runs in int8 (groups 1 only).

    Built from an fp32 convolution by :meth:`from_float`; the fp32 weight is dropped (the inner
    ``conv`` keeps an empty weight, used only for its dtype), the bias is folded into the int8 layer.
    Shapes and streaming behaviour are those of the parent.
    """

    def __init__(self, source: CausalConv1d) -> None:
        conv = source.conv
        super().__init__(**_conv_arguments(conv))
        c_out, c_in, taps = conv.weight.shape
        weight = conv.weight.detach()
        # both products below order the columns as [C_in, k] (input channel major, then tap)
        matrix = weight.reshape(c_out, c_in * taps)  # [C_out, C_in * k]
        self.linear = int8_linear(matrix, conv.bias.detach() if conv.bias is not None else None)
        self.taps = taps
        self.step = conv.dilation[0]
        self.conv.weight = nn.Parameter(torch.zeros(0, dtype=weight.dtype), requires_grad=False)
        self.conv.bias = None

    taps: int
    step: int

    @classmethod
    def from_float(cls, source: CausalConv1d) -> "Int8CausalConv1d":
        if source.conv.groups != 1:
            raise ValueError("int8 convolution needs groups == 1")
        return cls(source)

    def _dense_stride_one(self, buf: torch.Tensor, n_out: int) -> torch.Tensor:
        batch, c_in = buf.size(0), buf.size(1)
        if self.taps == 1:
            rows = buf[:, :, :n_out].transpose(1, 2).reshape(batch * n_out, c_in)  # [B * n_out, C_in]
        else:
            span = (self.taps - 1) * self.step + 1
            patches = buf.unfold(2, span, 1)[..., :: self.step]  # [B, C_in, n_out, k]
            rows = patches.transpose(1, 2).reshape(batch * n_out, c_in * self.taps)  # [B * n_out, C_in * k]
        out = self.linear(rows)  # [B * n_out, C_out]
        return out.view(batch, n_out, -1).transpose(1, 2)  # [B, C_out, n_out]

    def _strided(self, window: torch.Tensor) -> torch.Tensor:
        batch, c_in = window.size(0), window.size(1)
        span = (self.taps - 1) * self.step + 1
        patches = window.unfold(2, span, self.ratio)[..., :: self.step]  # [B, C_in, n_out, k]
        n_out = patches.size(2)
        rows = patches.transpose(1, 2).reshape(batch * n_out, c_in * self.taps)  # [B * n_out, C_in * k]
        out = self.linear(rows)  # [B * n_out, C_out]
        return out.view(batch, n_out, -1).transpose(1, 2)  # [B, C_out, n_out]


class Int8CausalConvTranspose1d(CausalConvTranspose1d):
    """:class:`~after.nn.conv.CausalConvTranspose1d` whose tap products run in int8 (dilation 1,
    groups 1 only); the bias stays fp32 (added after the overlap-add, as in the parent)."""

    taps: int

    def __init__(self, source: CausalConvTranspose1d) -> None:
        conv = source.conv
        super().__init__(**_conv_arguments(conv))
        c_in, c_out, taps = conv.weight.shape
        matrix = conv.weight.detach().reshape(c_in, c_out * taps).t()  # [C_out * k, C_in]
        self.linear = int8_linear(matrix, None)
        self.taps = taps
        with torch.no_grad():
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)
        self.conv.weight = nn.Parameter(torch.zeros(0, dtype=conv.weight.dtype), requires_grad=False)

    @classmethod
    def from_float(cls, source: CausalConvTranspose1d) -> "Int8CausalConvTranspose1d":
        if source.conv.groups != 1 or source.conv.dilation[0] != 1:
            raise ValueError("int8 transposed convolution needs groups == 1 and dilation == 1")
        return cls(source)

    def _tap_products(self, x: torch.Tensor) -> torch.Tensor:
        batch, c_in, length = x.shape
        rows = x.transpose(1, 2).reshape(batch * length, c_in)  # [B * L, C_in]
        products = self.linear(rows)  # [B * L, C_out * k]
        products = products.view(batch, length, -1, self.taps)  # [B, L, C_out, k]
        return products.permute(2, 3, 0, 1)  # [C_out, k, B, L]


class FrozenSnake(nn.Module):
    """Inference form of :class:`after.nn.activations.Snake`: ``α`` and ``1 / (β + eps)`` computed once.

    ``y = x + sin²(α·x) · (1 / (β + eps))``: four element-wise operations instead of eight per call;
    equal to the trainable form up to float rounding (relative 1e-6). Shapes ``[B, C, T]`` kept.
    """

    def __init__(self, snake: Snake) -> None:
        super().__init__()
        with torch.no_grad():
            self.register_buffer("alpha", snake.log_alpha.exp().detach().clone())  # [1, C, 1]
            self.register_buffer("inv_beta", 1.0 / (snake.log_beta.exp().detach() + snake.eps))  # [1, C, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x, torch.sin(self.alpha * x).square(), self.inv_beta)


def freeze_snakes(model: nn.Module) -> list[str]:
    """Swap, in place, every :class:`Snake` under ``model`` for a :class:`FrozenSnake` (inference only:
    the frozen form has no trainable parameters); returns the names of the swapped layers."""
    swapped: list[str] = []
    for name, module in list(model.named_modules()):
        if type(module) is Snake:
            _replace(model, name, FrozenSnake(module))
            swapped.append(name)
    return swapped


def _keep_stream(source: nn.Module, new: nn.Module) -> nn.Module:
    """Carry the streaming mode and state of ``source`` over to its replacement ``new``."""
    if isinstance(source, StreamingModule) and isinstance(new, StreamingModule):
        new.streaming = source.streaming
        for name in source._state_names:
            setattr(new, name, getattr(source, name))
    new.train(source.training)
    return new


def _weight_count(module: nn.Module) -> int:
    weight = getattr(module, "weight", None)
    return int(weight.numel()) if isinstance(weight, torch.Tensor) else 0


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def quantize_convs(model: nn.Module, min_weights: int = DEFAULT_MIN_WEIGHTS) -> list[str]:
    """Swap, in place, every causal (transposed) convolution under ``model`` with at least
    ``min_weights`` weights for its int8 version; returns the names of the swapped layers.

    Weight normalisation must have been removed (:func:`after.nn.conv.remove_weight_norm`).
    """
    swapped: list[str] = []
    for name, module in list(model.named_modules()):
        if not name:
            continue  # the root cannot be swapped in place: wrap a lone layer in a container
        if type(module) is CausalConv1d:
            if module.conv.groups != 1 or _weight_count(module.conv) < min_weights:
                continue
            new: nn.Module = Int8CausalConv1d.from_float(module)
        elif type(module) is CausalConvTranspose1d:
            conv = module.conv
            if conv.groups != 1 or conv.dilation[0] != 1 or _weight_count(conv) < min_weights:
                continue
            new = Int8CausalConvTranspose1d.from_float(module)
        else:
            continue
        _replace(model, name, _keep_stream(module, new))
        swapped.append(name)
    return swapped


def quantize_linears(
    model: nn.Module, min_weights: int = DEFAULT_MIN_WEIGHTS, skip: tuple[str, ...] = ()
) -> list[str]:
    """Swap, in place, every ``nn.Linear`` under ``model`` with at least ``min_weights`` weights (and
    whose qualified name does not start with one of ``skip``) for a dynamic int8 linear; returns the
    names of the swapped layers."""
    swapped: list[str] = []
    for name, module in list(model.named_modules()):
        if not name or type(module) is not nn.Linear or _weight_count(module) < min_weights:
            continue
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        _replace(model, name, int8_linear(module.weight.detach(), module.bias))
        swapped.append(name)
    return swapped


def quantize_dynamic_int8(
    model: nn.Module, min_weights: int = DEFAULT_MIN_WEIGHTS, skip: tuple[str, ...] = ()
) -> nn.Module:
    """An int8 copy of ``model`` (eval mode, weight norm removed): large linears and causal
    convolutions quantised (see the module docstring); ``model`` itself is left untouched."""
    quantized = remove_weight_norm(copy.deepcopy(model)).eval()
    quantize_convs(quantized, min_weights)
    quantize_linears(quantized, min_weights, skip)
    freeze_snakes(quantized)
    quantized.requires_grad_(False)
    return quantized
