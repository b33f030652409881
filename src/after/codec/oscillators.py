"""A bank of fixed-frequency sinusoidal oscillators driven by the latent: the codec decoder's stateful part.

Why it exists: every layer of the convolutional decoder (convolutions, transposed convolutions, PQMF
synthesis) is equivariant to a shift of one hop, so a latent that stays constant decodes to a signal
that repeats every hop, whose partials can only sit at multiples of the frame rate (21.53 Hz at
hop 1024 and 22.05 kHz). A steady 440-Hz tone then comes out as lines at 430 and 452 Hz. The
oscillators here keep their phase from one frame to the next (it is a function of the absolute
sample index), so a constant amplitude gives a true sinusoid at any frequency of the grid.

The grid: ``count`` frequencies ``min_hz * 2 ** (i / per_octave)``; with the defaults (27.5 Hz, 48
per octave) it holds every equal-tempered note of A440 tuning and three quarter-tone steps between
neighbours, so any partial is within 12.5 cents of an oscillator (two neighbours together cover the
gap). Each latent frame gives one non-negative amplitude per oscillator (a small causal head:
convolution, Snake, 1x1 convolution, fixed gain, softplus); within frame ``n`` the amplitude moves
linearly from frame ``n - 1``'s value to frame ``n``'s, so there are no clicks at frame edges.

Phase: oscillator ``i`` at absolute sample ``t`` (counted from the start of the stream) is
``sin(2 pi f_i t / sample_rate)``. Frame ``n`` starts at phase ``2 pi frac(n hop f_i / sr)``,
computed in float64 from the frame counter, so streaming (the counter is the state) gives exactly the
offline result and no rounding error accumulates over hours. Within a frame,
``sin(phi + w k) = sin(phi) cos(w k) + cos(phi) sin(w k)``, so the sum over oscillators is two matrix
products with ``[count, hop]`` tables instead of ``count * hop`` sines per frame.

Causality: audio samples ``[n hop, (n + 1) hop)`` depend on latent frames ``<= n`` only (the head is
causal; the interpolation reads frames ``n - 1`` and ``n``). The bank adds no latency.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from after.nn.activations import Snake
from after.nn.conv import CausalConv1d, set_conv_weight
from after.nn.streaming import StreamingModule

INITIAL_AMPLITUDE_LOGIT = -9.0
"""Amplitude logit of every oscillator at initialisation: ``softplus(-9) = 1.2e-4`` per oscillator,
so a new bank is almost silent and does not disturb a trained decoder it is added to."""

AMPLITUDE_GAIN = 20.0
"""Fixed gain between the head's last layer and the softplus. Adam moves each weight by about the
learning rate per step whatever its gradient, so at a codec's learning rate (2e-4) a plain head
would need ~20,000 steps to lift a logit from -9 to an audible level; the gain makes the logits
move 20 times faster (a learning rate of ~5e-3 for them) while the rest of the decoder keeps its
own pace. Faster still (3e-2) lets a quarter-tone neighbour win a partial before the right
oscillator does."""


class OscillatorBank(StreamingModule):
    """Latent ``[B, latent_dim, L]`` -> audio ``[B, 1, L * hop]``: a sum of fixed-frequency sinusoids.

    Args:
        latent_dim: latent channels ``D``.
        hop: audio samples per latent frame.
        sample_rate: audio rate in Hz.
        count: number of oscillators.
        min_hz: frequency of the lowest oscillator in Hz.
        per_octave: oscillators per octave.
        hidden: channels of the amplitude head.
        weight_norm: weight-normalised convolutions in the head.

    State (streaming): the frame counter (``[1]``, int64, shared by all streams), the previous
    frame's amplitudes (``[B, count, 1]``) and the head's convolution caches.
    """

    hop: int
    count: int
    amplitude_gain: float
    min_hz: float
    per_octave: float
    sample_rate: float

    def __init__(
        self,
        latent_dim: int,
        hop: int,
        sample_rate: int,
        count: int,
        min_hz: float = 27.5,
        per_octave: int = 48,
        hidden: int = 256,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        self.hop = hop
        self.count = count
        self.amplitude_gain = AMPLITUDE_GAIN
        # plain numbers, not buffers: a model cast to half precision must keep float64 phases
        self.min_hz = float(min_hz)
        self.per_octave = float(per_octave)
        self.sample_rate = float(sample_rate)
        if count < 1 or min_hz <= 0 or per_octave < 1:
            raise ValueError(
                "oscillator grid needs count >= 1, min_hz > 0, per_octave >= 1; "
                f"got {count}, {min_hz}, {per_octave}"
            )
        frequencies = self.frequencies(torch.device("cpu"))
        if float(frequencies[-1]) >= sample_rate / 2:
            raise ValueError(
                f"highest oscillator {float(frequencies[-1]):.0f} Hz is above Nyquist ({sample_rate / 2} Hz)"
            )
        # sin / cos of w_i k for k < hop: the same every frame, so computed once (not weights)
        angle = (frequencies * (2 * math.pi / sample_rate)).float()[:, None] * torch.arange(hop)[None, :]
        self.register_buffer(
            "tables", torch.cat([torch.cos(angle), torch.sin(angle)], dim=0), persistent=False
        )
        self.head = nn.Sequential(
            CausalConv1d(latent_dim, hidden, 3, weight_norm=weight_norm),
            Snake(hidden),
            CausalConv1d(hidden, count, 1, weight_norm=weight_norm),
        )
        self.register_state("frame", torch.zeros(0, dtype=torch.long))
        self.register_state("previous", torch.zeros(0))

    def quiet_start(self) -> None:
        """Make the bank almost silent (call after any re-initialisation of the head's weights)."""
        last = self.head[-1].conv
        set_conv_weight(last, last.weight.detach() * (0.1 / AMPLITUDE_GAIN))
        with torch.no_grad():
            last.bias.fill_(INITIAL_AMPLITUDE_LOGIT / AMPLITUDE_GAIN)

    @torch.jit.unused
    def _init_state(self, batch_size: int) -> None:
        device = self.head[0].conv.bias.device
        self.frame = torch.zeros(1, dtype=torch.long, device=device)
        self.previous = torch.zeros(batch_size, self.count, 1, device=device)

    def frequencies(self, device: torch.device) -> torch.Tensor:
        """The oscillators' frequencies in Hz, ``[count]`` float64."""
        octaves = torch.arange(self.count, dtype=torch.float64, device=device) / self.per_octave
        return self.min_hz * torch.pow(2.0, octaves)

    def amplitudes(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, D, L] -> amplitudes [B, count, L]`` (non-negative, audio units)."""
        return F.softplus(self.amplitude_gain * self.head(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, D, L] -> audio [B, 1, L * hop]``."""
        return self.synthesize(self.amplitudes(z))

    def synthesize(self, amplitude: torch.Tensor) -> torch.Tensor:
        """Amplitudes ``[B, count, L]`` (one per oscillator and latent frame, audio units) -> audio
        ``[B, 1, L * hop]``; streaming state as in :meth:`forward`."""
        batch, _, frames = amplitude.shape
        previous = self.previous
        first = self.frame
        if not self.streaming or previous.dim() != 3 or previous.size(0) != batch:
            previous = amplitude.new_zeros(batch, self.count, 1)
        if not self.streaming or first.numel() != 1:
            first = torch.zeros(1, dtype=torch.long, device=amplitude.device)
        start = torch.cat([previous, amplitude[:, :, :-1]], dim=-1)  # amplitude at each frame's start
        if self.streaming:
            self.previous = amplitude[:, :, -1:].detach()
            self.frame = first + frames

        frequencies = self.frequencies(amplitude.device)  # [N] Hz, float64
        cycles_per_frame = frequencies * (self.hop / self.sample_rate)
        index = first.to(torch.float64) + torch.arange(frames, dtype=torch.float64, device=amplitude.device)
        phase = torch.remainder(index[:, None] * cycles_per_frame[None, :], 1.0) * (2 * math.pi)
        sin_phase = torch.sin(phase).to(amplitude.dtype)  # [L, N]
        cos_phase = torch.cos(phase).to(amplitude.dtype)
        tables = self.tables.to(amplitude.dtype)  # [2N, hop]: cos(w_i k), then sin(w_i k)
        # [hop], 0 at the frame's start
        ramp = torch.arange(self.hop, dtype=amplitude.dtype, device=amplitude.device) / self.hop
        out = self._frame_signal(start, sin_phase, cos_phase, tables) * (1 - ramp)
        out = out + self._frame_signal(amplitude, sin_phase, cos_phase, tables) * ramp  # [B, L, hop]
        return out.reshape(batch, 1, frames * self.hop)

    @staticmethod
    def _frame_signal(
        amplitude: torch.Tensor, sin_phase: torch.Tensor, cos_phase: torch.Tensor, tables: torch.Tensor
    ) -> torch.Tensor:
        """Constant amplitudes ``[B, N, L]`` -> ``[B, L, hop]``:
        ``sum_i a_i (sin phi_i cos(w_i k) + cos phi_i sin(w_i k))`` with phases ``[L, N]``."""
        a = amplitude.transpose(1, 2)  # [B, L, N]
        weights = torch.cat([a * sin_phase[None], a * cos_phase[None]], dim=-1)  # [B, L, 2N]
        return torch.matmul(weights, tables)
