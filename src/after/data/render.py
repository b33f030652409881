"""Render notes to audio with FluidSynth, in-process (pyfluidsynth).

Each stem is rendered by a fresh ``fluidsynth.Synth``: FluidSynth keeps state between notes (reverb
and chorus buffers, voices still releasing), so reusing one synthesiser would make a stem depend on
the stems rendered before it in the same process, and the corpus on the worker count. Creating a
synth is cheap; loading a soundfont is cheap too once the process holds it open, because FluidSynth
shares sample data between synths of a process, so :class:`FluidRenderer` keeps one idle synth per
process that holds every soundfont.

Audio is read as float (``fluid_synth_write_float``): no 16-bit rounding or dither before our own
peak normalisation. Sample ``k`` of the output is time ``k / sample_rate`` of the notes: a note-on
at ``t`` seconds is sent before the sample ``round(t * sample_rate)`` is computed.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from after.data.midi import Note
from after.errors import AfterError

logger = logging.getLogger(__name__)

SYNTH_GAIN = 0.4
"""FluidSynth master gain; low enough that chords do not clip in float."""

BLOCK = 1024
"""Samples computed per FluidSynth call between events."""


class FluidSynthMissingError(AfterError):
    """The FluidSynth library (or its Python binding) cannot be loaded."""


def _import_fluidsynth():
    try:
        import fluidsynth
    except (ImportError, OSError) as error:
        raise FluidSynthMissingError(
            f"FluidSynth is not available ({error}); install the library "
            "(Debian: apt-get install fluidsynth) and the Python binding (pip install pyfluidsynth)"
        ) from error
    write_float = fluidsynth._fl.fluid_synth_write_float
    write_float.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] * 2
    write_float.restype = ctypes.c_int
    return fluidsynth, write_float


class FluidRenderer:
    """Renders note lists with any of a fixed set of soundfonts, at one sample rate.

    Args:
        soundfonts: paths of the .sf2/.sf3 files this renderer may use.
        sample_rate: output rate in Hz.
    Raises:
        FluidSynthMissingError: the library is missing.
        AfterError: a soundfont cannot be loaded.
    """

    def __init__(self, soundfonts: Sequence[str | Path], sample_rate: int) -> None:
        self._fluidsynth, self._write_float = _import_fluidsynth()
        self.sample_rate = int(sample_rate)
        self._keeper = self._new_synth()
        for path in soundfonts:
            if self._keeper.sfload(str(path)) < 0:
                raise AfterError(f"{path}: FluidSynth cannot load this soundfont (expected a .sf2/.sf3 file)")
        self._soundfonts = [str(p) for p in soundfonts]

    def _new_synth(self):
        return self._fluidsynth.Synth(
            gain=SYNTH_GAIN, samplerate=float(self.sample_rate), **{"synth.cpu-cores": 1}
        )

    def close(self) -> None:
        """Free the idle synth (and with it the shared sample data)."""
        if self._keeper is not None:
            self._keeper.delete()
            self._keeper = None

    def render(self, notes: Sequence[Note], soundfont: str | Path, program: int, tail_s: float) -> np.ndarray:
        """Play ``notes`` (one program, one channel) and ``tail_s`` seconds more; mono float32 ``[T]``.

        ``T = round((last note end + tail_s) * sample_rate)``. Notes of the same pitch must not
        overlap (see :func:`after.data.stems.clean_notes`).
        """
        if str(soundfont) not in self._soundfonts:
            raise AfterError(f"{soundfont}: soundfont not loaded by this renderer")
        synth = self._new_synth()
        try:
            sfid = synth.sfload(str(soundfont))
            if sfid < 0 or synth.program_select(0, sfid, 0, int(program)) < 0:
                raise AfterError(f"{soundfont}: no preset for General MIDI program {program} in bank 0")
            return self._play(synth, notes, tail_s)
        finally:
            synth.delete()

    def _play(self, synth, notes: Sequence[Note], tail_s: float) -> np.ndarray:
        rate = self.sample_rate
        events: list[tuple[int, int, int, int]] = []  # (sample, 0 = off / 1 = on, pitch, velocity)
        for note in notes:
            events.append((round(note.start * rate), 1, note.pitch, note.velocity))
            events.append((round(note.end * rate), 0, note.pitch, 0))
        events.sort()  # at one sample, note-offs come before note-ons
        last_end = max((e[0] for e in events), default=0)
        total = last_end + round(tail_s * rate)
        stereo = np.zeros((2, total), dtype=np.float32)  # [channels, T]
        position = 0

        def advance(until: int) -> None:
            nonlocal position
            while position < until:
                count = min(BLOCK, until - position)
                left = stereo[0, position:]
                right = stereo[1, position:]
                self._write_float(synth.synth, count, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1)
                position += count

        for sample, is_on, pitch, velocity in events:
            advance(sample)
            if is_on:
                synth.noteon(0, pitch, velocity)
            else:
                synth.noteoff(0, pitch)
        advance(total)
        return stereo.mean(axis=0)  # [2, T] -> [T]


def trim_release(
    audio: np.ndarray, keep_samples: int, sample_rate: int, silence_db: float = -60.0, fade_s: float = 0.02
) -> np.ndarray:
    """Cut the silent end of ``audio`` ``[T]`` after the release of its last note.

    The cut comes after the last sample louder than ``silence_db`` relative to the peak, but never
    before ``keep_samples`` (the last note-off), so MIDI and audio keep the same time line; the
    last ``fade_s`` seconds fade out linearly. The start is never touched: sample 0 stays time 0.
    """
    magnitude = np.abs(audio)
    peak = float(magnitude.max()) if audio.size else 0.0
    if peak <= 0.0:
        return audio[:keep_samples].copy()
    loud = np.flatnonzero(magnitude > peak * 10.0 ** (silence_db / 20.0))
    end = max(int(loud[-1]) + 1, keep_samples)
    end = min(end + round(fade_s * sample_rate), audio.size)
    out = audio[:end].copy()
    fade = min(round(fade_s * sample_rate), end)
    if fade > 0:
        out[end - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return out


def peak_normalise(audio: np.ndarray, peak_dbfs: float = -1.0) -> tuple[np.ndarray, float]:
    """Scale ``audio`` so that its peak is ``peak_dbfs``; returns ``(scaled, gain)`` (linear gain)."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak <= 0.0:
        return audio, 1.0
    gain = 10.0 ** (peak_dbfs / 20.0) / peak
    return (audio * np.float32(gain)).astype(np.float32), gain
