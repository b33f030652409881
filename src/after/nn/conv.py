"""Causal, streamable 1-D convolutions.

Both convolutions are *block-causal* and add no look-ahead:

* :class:`CausalConv1d` with stride ``s`` maps ``T`` input samples to ``T // s`` output frames; frame
  ``n`` reads the ``(kernel_size - 1) * dilation + 1`` input samples that end at sample
  ``n * s + s - 1`` (the last sample of its block), so it depends only on inputs ``< (n + 1) * s``.
  Input samples that do not yet complete a block are kept in the state and used by the next call,
  so any sequence of block lengths (even uneven ones, shorter than the stride) gives exactly the
  offline output.
* :class:`CausalConvTranspose1d` with stride ``s`` maps ``L`` input frames to ``L * s`` output
  samples; output samples ``[n * s, (n + 1) * s)`` depend only on input frames ``<= n``. The part of
  the kernel that reaches beyond the current block is carried over in the state (overlap-add).

Latency convention (used by every streaming unit of the project): ``latency`` is the algorithmic
delay in samples *beyond* the wait for one complete input block of ``ratio`` samples, which the
host's buffering provides anyway. Causal convolutions have ``latency == 0``; composites add the
latencies of their parts (for example a PQMF filter bank's filter delay). The total delay of a
block-processing chain in real time is ``block size + latency``.

Weight normalisation is optional (``weight_norm=True``) and implemented with
``torch.nn.utils.parametrizations``; call :func:`remove_weight_norm` on a model before
``torch.jit.script`` (it bakes the normalised weight in place).
"""

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from after.nn.streaming import StreamingModule


class CausalConv1d(StreamingModule):
    """Causal (block-causal when strided) 1-D convolution with streaming state.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: taps of the kernel.
        stride: downsampling factor (``ratio``); ``T`` samples give ``T // stride`` frames.
        dilation: spacing between taps.
        groups: as in :class:`torch.nn.Conv1d`.
        bias: add a learnable bias.
        weight_norm: reparametrise the weight with weight normalisation.

    Shapes: ``[B, in_channels, T] -> [B, out_channels, T // stride]`` offline; in streaming the
    output of one call has ``(remainder + T) // stride`` frames, where ``remainder < stride`` is the
    number of input samples left over from the previous calls.

    Attributes:
        ratio: input samples per output frame (the stride).
        latency: algorithmic delay in input samples beyond one block (always 0).
        context: past input samples each output reads (``(kernel_size - 1) * dilation``).
    """

    ratio: int
    latency: int
    context: int
    in_channels: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or stride < 1 or dilation < 1:
            raise ValueError(
                f"kernel_size, stride and dilation must be >= 1, got {kernel_size}, {stride}, {dilation}"
            )
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, groups=groups, bias=bias
        )
        if weight_norm:
            _weight_norm(self.conv)
        self.in_channels = in_channels
        self.ratio = stride
        self.latency = 0
        self.context = (kernel_size - 1) * dilation
        # history (context samples) followed by the unconsumed remainder (< stride samples)
        self.register_state("cache", torch.zeros(0))

    def _zero_cache(self, batch_size: int, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch_size, self.in_channels, self.context, dtype=like.dtype, device=like.device)

    @torch.jit.unused
    def _init_state(self, batch_size: int) -> None:
        self.cache = self._zero_cache(batch_size, self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C_in, T] -> [B, C_out, frames]``; see the class docstring for ``frames``."""
        cache = self.cache
        if not self.streaming or cache.size(0) != x.size(0) or cache.dim() != 3:
            cache = self._zero_cache(x.size(0), x)
        buf = torch.cat([cache, x], dim=-1)  # [B, C_in, context + remainder + T]
        stride = self.ratio
        n_out = (buf.size(-1) - self.context) // stride
        if self.streaming:
            self.cache = buf[:, :, n_out * stride :]
        if n_out == 0:
            return x.new_zeros(x.size(0), self.conv.out_channels, 0)
        if stride == 1 and self.conv.groups == 1:
            return self._dense_stride_one(buf, n_out)
        # frame j reads buf[j*s + s - 1 : j*s + s + context]
        window = buf[:, :, stride - 1 : self.context + n_out * stride]
        return self._strided(window)

    def _strided(self, window: torch.Tensor) -> torch.Tensor:
        """Valid strided convolution of ``window [B, C_in, context + n_out * stride - stride + 1]``
        -> ``[B, C_out, n_out]`` (a hook: :mod:`after.nn.quantize` replaces it by an int8 product)."""
        return self.conv(window)

    def _dense_stride_one(self, buf: torch.Tensor, n_out: int) -> torch.Tensor:
        """Stride-1 convolution as one matrix product over the stacked taps.

        PyTorch's CPU kernels for small and dilated 1-D convolutions are slow at batch 1 (the
        dilated path loops over the kernel in Python-like fashion); stacking the ``k`` shifted views
        and doing one matmul is several times faster and gives the same result.
        """
        weight = self.conv.weight  # [C_out, C_in, k]
        c_out, c_in, taps = weight.shape
        step = self.conv.dilation[0]
        batch = buf.size(0)
        if taps == 1:
            columns = buf[:, :, :n_out].transpose(0, 1).reshape(c_in, batch * n_out)  # [C_in, B * n_out]
        else:
            views = [buf[:, :, j * step : j * step + n_out] for j in range(taps)]
            stacked = torch.stack(views, dim=1)  # [B, k, C_in, n_out]
            stacked = stacked.permute(2, 1, 0, 3)  # [C_in, k, B, n_out]
            columns = stacked.reshape(c_in * taps, batch * n_out)  # [C_in * k, B * n_out]
        out = torch.mm(weight.reshape(c_out, c_in * taps), columns)  # [C_out, B * n_out]
        out = out.view(c_out, batch, n_out).transpose(0, 1)  # [B, C_out, n_out]
        bias = self.conv.bias
        if bias is not None:
            out = out + bias.unsqueeze(-1)
        return out


class CausalConvTranspose1d(StreamingModule):
    """Causal transposed 1-D convolution (upsampling by ``stride``) with overlap-add state.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: taps of the kernel (``2 * stride`` is a common choice).
        stride: upsampling factor (``ratio``); ``L`` frames give ``L * stride`` samples.
        dilation: spacing between taps.
        groups: as in :class:`torch.nn.ConvTranspose1d`.
        bias: add a learnable bias.
        weight_norm: reparametrise the weight with weight normalisation.

    Shapes: ``[B, in_channels, L] -> [B, out_channels, L * stride]``; output samples
    ``[n * stride, (n + 1) * stride)`` depend on input frames ``<= n`` only.

    Attributes:
        ratio: output samples per input frame (the stride).
        latency: algorithmic delay beyond one block (always 0).
    """

    ratio: int
    latency: int
    tail_length: int
    out_channels: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or stride < 1 or dilation < 1:
            raise ValueError(
                f"kernel_size, stride and dilation must be >= 1, got {kernel_size}, {stride}, {dilation}"
            )
        self.conv = nn.ConvTranspose1d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, groups=groups, bias=bias
        )
        if weight_norm:
            _weight_norm(self.conv, dim=1)
        self.out_channels = out_channels
        self.ratio = stride
        self.latency = 0
        span = (kernel_size - 1) * dilation + 1
        self.tail_length = max(span - stride, 0)
        # overlap-add tail (without bias) that reaches into the next block
        self.register_state("tail", torch.zeros(0))

    def _zero_tail(self, batch_size: int, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(
            batch_size, self.out_channels, self.tail_length, dtype=like.dtype, device=like.device
        )

    @torch.jit.unused
    def _init_state(self, batch_size: int) -> None:
        self.tail = self._zero_tail(batch_size, self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C_in, L] -> [B, C_out, L * stride]``."""
        tail = self.tail
        if not self.streaming or tail.size(0) != x.size(0) or tail.dim() != 3:
            tail = self._zero_tail(x.size(0), x)
        n_out = x.size(-1) * self.ratio
        if n_out == 0:
            return x.new_zeros(x.size(0), self.out_channels, 0)
        if self.conv.dilation[0] == 1 and self.conv.groups == 1:
            full = self._overlap_add(x)
        else:
            full = F.conv_transpose1d(
                x,
                self.conv.weight,
                None,
                stride=self.ratio,
                dilation=self.conv.dilation[0],
                groups=self.conv.groups,
            )  # [B, C_out, (L - 1) * stride + span]
        if full.size(-1) < n_out + self.tail_length:
            full = F.pad(full, (0, n_out + self.tail_length - full.size(-1)))
        if self.tail_length > 0:
            head = full[:, :, : self.tail_length] + tail
            full = torch.cat([head, full[:, :, self.tail_length :]], dim=-1)
        if self.streaming:
            self.tail = full[:, :, n_out : n_out + self.tail_length]
        out = full[:, :, :n_out]
        bias = self.conv.bias
        if bias is not None:
            out = out + bias.unsqueeze(-1)
        return out

    def _tap_products(self, x: torch.Tensor) -> torch.Tensor:
        """Every input frame times every kernel tap: ``x [B, C_in, L] -> [C_out, k, B, L]`` (a hook:
        :mod:`after.nn.quantize` replaces it by an int8 product)."""
        weight = self.conv.weight  # [C_in, C_out, k]
        c_in, c_out, taps = weight.shape
        batch, length = x.size(0), x.size(-1)
        columns = x.transpose(0, 1).reshape(c_in, batch * length)  # [C_in, B * L]
        products = torch.mm(weight.reshape(c_in, c_out * taps).t(), columns)  # [C_out * k, B * L]
        return products.view(c_out, taps, batch, length)  # [C_out, k, B, L]

    def _overlap_add(self, x: torch.Tensor) -> torch.Tensor:
        """Transposed convolution (no bias) as one matrix product and ``ceil(k / stride)`` shifted adds.

        Faster than PyTorch's CPU transposed convolution at batch 1. Returns
        ``[B, C_out, L * stride + k_padded - stride]`` where ``k_padded`` rounds the kernel up to a
        multiple of the stride (the extra samples are zeros).
        """
        products = self._tap_products(x)  # [C_out, k, B, L]
        c_out, taps = products.size(0), products.size(1)
        stride = self.ratio
        batch, length = x.size(0), x.size(-1)
        pieces = (taps + stride - 1) // stride
        if pieces * stride != taps:
            products = F.pad(products.permute(0, 2, 3, 1), (0, pieces * stride - taps)).permute(0, 3, 1, 2)
        full = x.new_zeros(batch, c_out, (length + pieces - 1) * stride)
        for j in range(pieces):
            piece = products[:, j * stride : (j + 1) * stride]  # [C_out, stride, B, L]
            piece = piece.permute(2, 0, 3, 1).reshape(batch, c_out, length * stride)  # [B, C_out, L * stride]
            full[:, :, j * stride : j * stride + length * stride] += piece
        return full


def set_conv_weight(conv: nn.Conv1d | nn.ConvTranspose1d, weight: torch.Tensor) -> None:
    """Give ``conv`` the weight ``weight`` (same shape), whether it is weight-normalised or not."""
    with torch.no_grad():
        if parametrize.is_parametrized(conv, "weight"):
            conv.weight = weight  # the parametrisation's right inverse sets magnitude and direction
        else:
            conv.weight.copy_(weight)


def remove_weight_norm(model: nn.Module) -> nn.Module:
    """Bake every weight-norm parametrisation under ``model`` into a plain weight (before scripting)."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model
