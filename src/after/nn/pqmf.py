"""Pseudo-quadrature mirror filter (PQMF) bank, causal and streamable.

The bank splits audio into ``n_bands`` critically sampled sub-bands and merges them back with small
error. Design (cosine-modulated filter bank):

* A linear-phase low-pass prototype ``h`` (Kaiser window, ``taps`` from the wanted stop-band
  attenuation and a transition width of ``1 / n_bands`` of Nyquist). Its cutoff is tuned so that
  ``g = h * reversed(h)`` is as close as possible to a Nyquist(2M) filter (``g[2M·n] ≈ 0`` for
  ``n ≠ 0``), which is the near-perfect reconstruction condition of the bank.
* Analysis filters ``h_k[n] = 2 h[n] cos((2k+1) π/(2M) (n − (N−1)/2) + (−1)^k π/4)`` and synthesis
  filters ``f_k[n] = h_k[N−1−n]`` (time-reversed).

Analysis is a :class:`~after.nn.conv.CausalConv1d` with stride ``M`` and synthesis a
:class:`~after.nn.conv.CausalConvTranspose1d` with stride ``M``, so streaming equals offline and
both are block-causal. Analysis followed by synthesis reproduces the input delayed by
``latency = taps − n_bands`` samples (the cascade's delay ``taps − 1`` minus the ``n_bands − 1``
samples gained because each band frame reads its whole block).
"""

import logging
import math

import numpy as np
import torch
from scipy import optimize, signal
from torch import nn

from after.nn.conv import CausalConv1d, CausalConvTranspose1d

logger = logging.getLogger(__name__)


def design_prototype(n_bands: int, attenuation_db: float = 100.0) -> np.ndarray:
    """Low-pass prototype of a ``n_bands``-band PQMF.

    Returns:
        float64 array of ``taps`` coefficients (symmetric, so linear phase).
    """
    if n_bands < 2:
        raise ValueError(f"a PQMF prototype needs n_bands >= 2, got {n_bands}")
    # transition width in units of Nyquist: the stop band must start before 1/M
    taps, beta = signal.kaiserord(attenuation_db, 1.0 / n_bands)
    taps = max(taps, 2 * n_bands)

    def nyquist_violation(cutoff: float) -> float:
        h = signal.firwin(taps, cutoff, window=("kaiser", beta))
        g = np.convolve(h, h[::-1])
        centre = len(g) // 2
        side = np.concatenate(
            [g[centre + 2 * n_bands :: 2 * n_bands], g[centre - 2 * n_bands :: -2 * n_bands]]
        )
        return float(np.max(np.abs(side))) if side.size else 0.0

    guess = 1.0 / (2 * n_bands)
    result = optimize.minimize_scalar(
        nyquist_violation, bounds=(0.5 * guess, 1.5 * guess), method="bounded", options={"xatol": 1e-9}
    )
    cutoff = float(result.x)
    logger.debug("PQMF prototype: %d taps, kaiser beta %.3f, cutoff %.6f", taps, beta, cutoff)
    return signal.firwin(taps, cutoff, window=("kaiser", beta))


def cosine_modulated_bank(prototype: np.ndarray, n_bands: int) -> tuple[np.ndarray, np.ndarray]:
    """Analysis and synthesis filters ``[n_bands, taps]`` from a prototype (see module docstring)."""
    taps = len(prototype)
    n = np.arange(taps)
    k = np.arange(n_bands)[:, None]
    phase = (2 * k + 1) * math.pi / (2 * n_bands) * (n - (taps - 1) / 2)
    offset = np.where(k % 2 == 0, 1.0, -1.0) * math.pi / 4
    analysis = 2 * prototype * np.cos(phase + offset)
    synthesis = analysis[:, ::-1].copy()
    return analysis, synthesis


class PQMF(nn.Module):
    """Causal PQMF bank: :meth:`analysis` ``[B, 1, T] -> [B, M, T / M]``, :meth:`synthesis` back.

    Args:
        n_bands: number of bands ``M`` (1 = identity, no delay).
        attenuation_db: stop-band attenuation of the prototype; more means longer filters.

    Attributes:
        n_bands: ``M``; also the ratio of both directions.
        taps: filter length ``N`` (0 when ``n_bands == 1``).
        latency: delay of analysis + synthesis in audio samples (``N − M``).
        analysis_latency: the part of ``latency`` attributed to analysis (group delay of the
            analysis filters minus the block look-back), in audio samples.
        synthesis_latency: ``latency − analysis_latency``.

    Both directions are streaming modules (their state lives in the inner convolutions). The filters
    are fixed buffers-like parameters with ``requires_grad=False``.
    """

    n_bands: int
    latency: int

    def __init__(self, n_bands: int, attenuation_db: float = 100.0) -> None:
        super().__init__()
        if n_bands < 1:
            raise ValueError(f"n_bands must be >= 1, got {n_bands}")
        self.n_bands = n_bands
        if n_bands == 1:
            self.taps = 0
            self.latency = 0
            self.analysis_latency = 0
            self.synthesis_latency = 0
            self.analysis_conv = nn.Identity()
            self.synthesis_conv = nn.Identity()
            return
        analysis, synthesis = cosine_modulated_bank(design_prototype(n_bands, attenuation_db), n_bands)
        taps = analysis.shape[1]
        self.taps = taps
        self.latency = taps - n_bands
        self.analysis_latency = max((taps - 1) // 2 - (n_bands - 1), 0)
        self.synthesis_latency = self.latency - self.analysis_latency
        self.analysis_conv = CausalConv1d(1, n_bands, taps, stride=n_bands, bias=False)
        self.synthesis_conv = CausalConvTranspose1d(n_bands, 1, taps, stride=n_bands, bias=False)
        with torch.no_grad():
            # the conv window is oldest-first, the filter is newest-first: flip
            self.analysis_conv.conv.weight.copy_(torch.from_numpy(analysis[:, None, ::-1].copy()))
            # transposed conv weight [M, 1, N]; the factor M undoes the decimation's 1/M gain
            self.synthesis_conv.conv.weight.copy_(torch.from_numpy(n_bands * synthesis[:, None, :]))
        for p in self.parameters():
            p.requires_grad_(False)

    def analysis(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio [B, 1, T] -> bands [B, M, T // M]`` (block-causal)."""
        return self.analysis_conv(audio)

    def synthesis(self, bands: torch.Tensor) -> torch.Tensor:
        """``bands [B, M, L] -> audio [B, 1, L * M]`` (block-causal)."""
        return self.synthesis_conv(bands)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Analysis then synthesis: ``[B, 1, T] -> [B, 1, T // M * M]``, delayed by ``latency``."""
        return self.synthesis(self.analysis(audio))
