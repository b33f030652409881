"""Pictures of audio for people: log-mel spectrograms on one fixed colour scale, piano rolls and
timbre vectors, drawn side by side into one PNG (matplotlib, Agg, no global pyplot state).

Levels are in dB relative to a fixed reference (:func:`reference_power`: the loudest mel band of a
full-scale 1 kHz sine, analysed with the same settings), so every spectrogram drawn with
:data:`DB_RANGE` has the same colour for the same level whatever the file, the sample rate or the
loudness of the other panels: louder output really looks brighter.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from after.eval.features import mel_filterbank, mel_spectrogram

DB_RANGE = (-80.0, 0.0)
"""Colour scale of every spectrogram, in dB re. :func:`reference_power`."""

N_MELS = 96
COLOUR_MAP = "magma"
FREQUENCY_TICKS_HZ = (100, 250, 500, 1000, 2000, 4000, 8000, 16000)


def _analysis(sample_rate: int) -> tuple[int, int]:
    """``(n_fft, hop)`` of about 46 ms / 12 ms whatever the rate (2048 / 512 at 44.1 kHz)."""
    n_fft = 1024 if sample_rate <= 24000 else 2048
    return n_fft, n_fft // 4


@functools.lru_cache(maxsize=8)
def reference_power(sample_rate: int) -> float:
    """Mel power of the loudest band of a full-scale 1 kHz sine (0 dB on every picture)."""
    n_fft, hop = _analysis(sample_rate)
    t = np.arange(sample_rate // 2) / sample_rate
    sine = np.sin(2 * np.pi * 1000.0 * t)
    return float(mel_spectrogram(sine, sample_rate, n_fft, hop, N_MELS).max())


@dataclass(frozen=True)
class Spectrogram:
    """A log-mel spectrogram ready to draw.

    Attributes:
        db: ``[n_mels, frames]`` levels in dB re. :func:`reference_power` (not clipped).
        seconds: duration of the analysed audio.
        band_hz: ``[n_mels]`` centre frequency of each band.
    """

    db: np.ndarray
    seconds: float
    band_hz: np.ndarray


def log_mel(audio: np.ndarray, sample_rate: int) -> Spectrogram:
    """:class:`Spectrogram` of mono audio ``[T]`` / ``[1, T]`` at ``sample_rate`` Hz."""
    flat = np.asarray(audio, dtype=np.float64).reshape(-1)
    n_fft, hop = _analysis(sample_rate)
    power = mel_spectrogram(flat, sample_rate, n_fft, hop, N_MELS)  # [n_mels, frames]
    db = 10.0 * np.log10(np.maximum(power / reference_power(sample_rate), 1e-12))
    bank = mel_filterbank(int(sample_rate), n_fft, N_MELS)  # [n_mels, bins]
    bin_hz = np.linspace(0.0, sample_rate / 2.0, bank.shape[1])
    band_hz = bin_hz[np.argmax(bank, axis=1)]
    return Spectrogram(db, flat.size / sample_rate, band_hz)


@dataclass(frozen=True)
class Panel:
    """One picture of a row: ``kind`` is ``"spectrogram"`` (``data`` a :class:`Spectrogram`),
    ``"roll"`` (``data`` a sustain roll ``[128, L]`` in 0..1 over ``seconds``), ``"vector"``
    (``data`` ZT timbre values, as bars) or ``"vectors"`` (``data`` ``[ZT, N]`` values over
    ``seconds``, one line per dimension)."""

    title: str
    kind: str
    data: object
    seconds: float = 0.0


def _draw_spectrogram(axes, spectrogram: Spectrogram):
    low, high = DB_RANGE
    image = axes.imshow(
        np.clip(spectrogram.db, low, high),
        origin="lower",
        aspect="auto",
        cmap=COLOUR_MAP,
        vmin=low,
        vmax=high,
        extent=(0.0, spectrogram.seconds, -0.5, spectrogram.db.shape[0] - 0.5),
        interpolation="nearest",
    )
    ticks = [(int(np.argmin(np.abs(spectrogram.band_hz - f))), f) for f in FREQUENCY_TICKS_HZ]
    ticks = [(row, f) for row, f in ticks if f <= spectrogram.band_hz[-1]]
    axes.set_yticks([row for row, _ in ticks])
    axes.set_yticklabels([f"{f // 1000}k" if f >= 1000 else str(f) for _, f in ticks])
    axes.set_ylabel("Hz")
    axes.set_xlabel("s")
    return image


def _draw_roll(axes, roll: np.ndarray, seconds: float) -> None:
    active = np.flatnonzero(roll.max(axis=1) > 0)
    low, high = (int(active.min()) - 3, int(active.max()) + 4) if active.size else (48, 72)
    axes.imshow(
        roll[max(low, 0) : min(high, 128)],
        origin="lower",
        aspect="auto",
        cmap="Greys",
        vmin=0.0,
        vmax=1.0,
        extent=(0.0, seconds, max(low, 0) - 0.5, min(high, 128) - 0.5),
        interpolation="nearest",
    )
    axes.set_ylabel("MIDI pitch")
    axes.set_xlabel("s")


def _draw_vector(axes, values: Sequence[float]) -> None:
    values = np.asarray(values, dtype=np.float64)
    axes.bar(np.arange(values.size), values, color="#3498db")
    axes.axhline(0.0, color="black", linewidth=0.5)
    axes.set_ylim(min(-1.0, values.min() * 1.1), max(1.0, values.max() * 1.1))
    axes.set_xticks(np.arange(values.size))
    axes.set_xlabel("timbre dimension")


def _draw_vectors(axes, values: np.ndarray, seconds: float) -> None:
    times = (np.arange(values.shape[1]) + 0.5) * seconds / max(values.shape[1], 1)
    for index, row in enumerate(values):
        axes.plot(times, row, linewidth=1.0, label=str(index))
    axes.set_xlim(0.0, seconds)
    axes.set_ylabel("timbre value")
    axes.set_xlabel("s")
    axes.legend(fontsize=6, ncol=4, loc="upper right", title="dimension", title_fontsize=6)


def draw_panels(panels: Sequence[Panel], path: str | Path, dpi: int = 90) -> Path:
    """Draw ``panels`` side by side into the PNG ``path`` (folders created) with one dB colour bar
    for the spectrograms; returns the path."""
    from matplotlib.figure import Figure

    width = 4.0 * len(panels) + 1.0
    figure = Figure(figsize=(width, 2.8), dpi=dpi)
    figure.subplots_adjust(left=0.7 / width, right=1.0 - 1.2 / width, bottom=0.17, top=0.9, wspace=0.32)
    axes_row = figure.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for axes, panel in zip(axes_row, panels):
        if panel.kind == "spectrogram":
            image = _draw_spectrogram(axes, panel.data)
        elif panel.kind == "roll":
            _draw_roll(axes, np.asarray(panel.data), panel.seconds)
        elif panel.kind == "vector":
            _draw_vector(axes, panel.data)
        elif panel.kind == "vectors":
            _draw_vectors(axes, np.asarray(panel.data), panel.seconds)
        else:
            raise ValueError(f"unknown panel kind {panel.kind!r}")
        axes.set_title(panel.title, fontsize=9)
    if image is not None:
        colour_axes = figure.add_axes((1.0 - 0.95 / width, 0.17, 0.12 / width, 0.73))
        figure.colorbar(image, cax=colour_axes, label="dB")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
