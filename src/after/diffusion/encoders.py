"""Condition encoders: timbre (pooled), structure (causal, audio or MIDI) and the adversarial classifier.

* :class:`TimbreEncoder`: codec latents of a reference ``[B, D, L] -> c [B, ZT]``; conv blocks with
  squeeze-excitation and attentive statistics pooling (a compact ECAPA-like design). Kept in
  ``[-1, 1]`` by :func:`box_penalty` (optionally a hard tanh).
* :class:`StructureEncoder`: codec latents ``[B, D, L] -> s [B, ZS, L]`` at the same frame rate with
  causal convolutions only (frame ``n`` depends on frames ``<= n``; no look-ahead, no added latency);
  streams through the state API of :mod:`after.nn.streaming`.
* :class:`MidiStructureEncoder`: piano roll ``[B, 2, 128, L]`` (or ``[B, 256, L]``) ``-> s [B, ZS, L]``,
  causal as well.
* :class:`AdversarialClassifier`: ``s [B, ZS, L] -> c_hat [B, ZT]`` (pooled over time), trained with
  :func:`cosine_classifier_loss` to predict the timbre from the structure; the structure encoder is
  trained to defeat it, so that ``s`` carries no timbre.
"""

import torch
from torch import nn
from torch.nn import functional as F

from after.nn.conv import CausalConv1d
from after.nn.streaming import StreamingModule


def box_penalty(x: torch.Tensor) -> torch.Tensor:
    """Penalty for leaving the ``[-1, 1]`` box: ``mean(relu(|x| - 1))`` (a scalar, 0 inside)."""
    return F.relu(x.abs() - 1.0).mean()


def shuffle_segments(
    z: torch.Tensor, sizes: tuple[int, ...] = (4, 8), generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cut each example into segments of a randomly chosen size and permute them (timbre augmentation).

    Args:
        z: latents ``[B, D, L]``.
        sizes: candidate segment lengths in frames; one is drawn per example.
        generator: random generator (``None`` = the global one).

    Returns:
        ``[B, D, L]``, each example's segments in a random order (the last one may be shorter).
    """
    out = torch.empty_like(z)
    length = z.size(-1)
    for b in range(z.size(0)):
        size = sizes[int(torch.randint(len(sizes), (1,), generator=generator))]
        starts = list(range(0, length, size))
        order = torch.randperm(len(starts), generator=generator).tolist()
        pieces = [z[b, :, starts[i] : starts[i] + size] for i in order]
        out[b] = torch.cat(pieces, dim=-1)
    return out


class ChannelNorm(nn.Module):
    """Layer norm over channels of each frame: ``[B, C, L] -> [B, C, L]`` (causal, batch-independent)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class SqueezeExcite(nn.Module):
    """Channel gating from the time-mean of ``x [B, C, L]``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(channels, hidden)
        self.up = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.up(F.relu(self.down(x.mean(dim=-1)))))  # [B, C]
        return x * gate[:, :, None]


class TimbreBlock(nn.Module):
    """Residual block: dilated conv -> SiLU -> norm -> 1x1 conv -> SE, on ``[B, C, L]``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, se_dim: int) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation // 2
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.norm = ChannelNorm(channels)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.se = SqueezeExcite(channels, se_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pad(x, [self.pad, self.pad], mode="replicate")
        h = self.norm(F.silu(self.conv(h)))
        return x + self.se(self.mix(h))


class AttentiveStatsPooling(nn.Module):
    """Attention-weighted mean and standard deviation over time, with global context.

    ``x [B, C, L] -> [B, 2C]``. Invariant to permutations of the frames (every step is either
    frame-wise or a sum over frames).
    """

    def __init__(self, channels: int, attention_dim: int) -> None:
        super().__init__()
        self.attend = nn.Sequential(
            nn.Conv1d(3 * channels, attention_dim, 1), nn.Tanh(), nn.Conv1d(attention_dim, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)  # [B, C, 1]
        std = (x.var(dim=-1, keepdim=True, unbiased=False) + 1e-6).sqrt()  # [B, C, 1]
        context = torch.cat([x, mean.expand_as(x), std.expand_as(x)], dim=1)  # [B, 3C, L]
        weights = torch.softmax(self.attend(context), dim=-1)  # [B, C, L]
        w_mean = (weights * x).sum(dim=-1)  # [B, C]
        w_var = (weights * x * x).sum(dim=-1) - w_mean * w_mean
        w_std = (w_var.clamp(min=1e-6)).sqrt()  # [B, C]
        return torch.cat([w_mean, w_std], dim=1)  # [B, 2C]


class TimbreEncoder(nn.Module):
    """Codec latents of a timbre reference ``[B, D, L] -> c [B, ZT]``.

    Args:
        in_dim: latent channels ``D``.
        out_dim: timbre dimensions ``ZT``.
        channels: hidden width.
        dilations: one residual block per dilation; their outputs are concatenated (multi-layer
            aggregation) before pooling.
        kernel_size: conv kernel.
        se_dim: squeeze-excitation width.
        attention_dim: width of the pooling attention.
        use_tanh: squash the output with tanh (default off: the box penalty keeps it in range).
    """

    use_tanh: bool

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        channels: int = 256,
        dilations: tuple[int, ...] = (1, 2, 3),
        kernel_size: int = 3,
        se_dim: int = 64,
        attention_dim: int = 128,
        use_tanh: bool = False,
    ) -> None:
        super().__init__()
        self.use_tanh = use_tanh
        self.input = nn.Conv1d(in_dim, channels, 1)
        self.blocks = nn.ModuleList([TimbreBlock(channels, kernel_size, d, se_dim) for d in dilations])
        self.aggregate = nn.Conv1d(channels * len(dilations), channels, 1)
        self.pool = AttentiveStatsPooling(channels, attention_dim)
        self.norm = nn.LayerNorm(2 * channels)
        self.output = nn.Linear(2 * channels, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, D, L] -> c [B, ZT]``."""
        h = F.silu(self.input(z))
        features: list[torch.Tensor] = []
        for block in self.blocks:
            h = block(h)
            features.append(h)
        h = F.silu(self.aggregate(torch.cat(features, dim=1)))  # [B, C, L]
        c = self.output(self.norm(self.pool(h)))  # [B, ZT]
        if self.use_tanh:
            c = torch.tanh(c)
        return c


class CausalResBlock(nn.Module):
    """Causal residual block on ``[B, C, L]``: norm -> SiLU -> conv -> norm -> SiLU -> conv, plus input."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.conv1 = CausalConv1d(channels, channels, kernel_size)
        self.norm2 = ChannelNorm(channels)
        self.conv2 = CausalConv1d(channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class CausalConvStack(nn.Module):
    """Pointwise input projection, then per width: a causal residual block and a 1x1 projection.

    ``[B, in_dim, L] -> [B, out_dim, L]``; frame ``n`` of the output depends on input frames ``<= n``.
    The receptive field is ``2 * len(channels) * (kernel_size - 1) + 1`` frames, all in the past.
    """

    def __init__(self, in_dim: int, out_dim: int, channels: tuple[int, ...], kernel_size: int) -> None:
        super().__init__()
        widths = list(channels)
        self.input = nn.Conv1d(in_dim, widths[0], 1)
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            nxt = widths[i + 1] if i + 1 < len(widths) else out_dim
            layers.append(CausalResBlock(width, kernel_size))
            layers.append(ChannelNorm(width))
            layers.append(nn.SiLU())
            layers.append(nn.Conv1d(width, nxt, 1))
        self.layers = nn.Sequential(*layers)
        self.receptive_field = 2 * len(widths) * (kernel_size - 1) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.input(x))


class StructureEncoder(StreamingModule):
    """Causal structure encoder: codec latents ``[B, D, L] -> s [B, ZS, L]``.

    ``bound = "tanh"`` squashes ``s`` into ``(-1, 1)``; ``"box"`` leaves it free (train with
    :func:`box_penalty`). Streams block by block (any block length) through the state API; latency 0.
    """

    use_tanh: bool
    latency: int

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        channels: tuple[int, ...] = (64, 128, 256),
        kernel_size: int = 5,
        bound: str = "tanh",
    ) -> None:
        super().__init__()
        if bound not in ("tanh", "box"):
            raise ValueError(f"bound must be 'tanh' or 'box', got {bound!r}")
        self.use_tanh = bound == "tanh"
        self.latency = 0
        self.net = CausalConvStack(in_dim, out_dim, channels, kernel_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, D, L] -> s [B, ZS, L]``."""
        s = self.net(z)
        if self.use_tanh:
            s = torch.tanh(s)
        return s


class MidiStructureEncoder(StreamingModule):
    """Piano roll ``[B, 2, 128, L]`` or ``[B, 256, L]`` (sustain + onset) ``-> s [B, ZS, L]``, causal.

    With ``use_encoder=False`` the flattened roll itself is the structure (``ZS = 256``).
    """

    use_encoder: bool
    latency: int

    def __init__(
        self,
        out_dim: int,
        channels: tuple[int, ...] = (128,),
        kernel_size: int = 3,
        use_encoder: bool = True,
        in_dim: int = 256,
    ) -> None:
        super().__init__()
        self.use_encoder = use_encoder
        self.latency = 0
        if not use_encoder and out_dim != in_dim:
            raise ValueError(f"without an encoder out_dim must equal in_dim {in_dim}, got {out_dim}")
        widths = channels if len(channels) > 0 else (out_dim,)
        self.net = CausalConvStack(in_dim, out_dim, widths, kernel_size) if use_encoder else nn.Identity()

    def forward(self, roll: torch.Tensor) -> torch.Tensor:
        """``roll [B, 2, 128, L] | [B, 256, L] -> s [B, ZS, L]``."""
        if roll.dim() == 4:
            roll = roll.reshape(roll.size(0), roll.size(1) * roll.size(2), roll.size(3))  # [B, 256, L]
        if not self.use_encoder:
            return roll
        return torch.tanh(self.net(roll))


class AdversarialClassifier(nn.Module):
    """Predicts the timbre from the structure: ``s [B, ZS, L] -> c_hat [B, ZT]`` (pooled over time)."""

    def __init__(
        self, in_dim: int, out_dim: int, channels: tuple[int, ...] = (64, 64, 64), kernel_size: int = 3
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for i, nxt in enumerate(channels):
            stride = 1 if i == 0 else 2
            layers.append(nn.Conv1d(width, nxt, kernel_size, stride=stride, padding=kernel_size // 2))
            layers.append(nn.SiLU())
            width = nxt
        self.convs = nn.Sequential(*layers)
        self.output = nn.Linear(width, out_dim)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """``s [B, ZS, L] -> c_hat [B, ZT]``."""
        return self.output(self.convs(s).mean(dim=-1))


def cosine_classifier_loss(c_hat: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos(c_hat, c))`` over the batch; ``c`` is detached (the classifier's target)."""
    return (1.0 - F.cosine_similarity(c_hat, c.detach(), dim=-1)).mean()
