"""Endpoints of the live host: audio devices (sounddevice/PortAudio), audio files, MIDI ports.

sounddevice, soundfile and mido are imported inside the functions, so importing this module
touches no hardware and needs no PortAudio.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from after.errors import AfterError, BadInputError
from after.runtime.ring import AudioRing
from after.runtime.stats import HostStats

logger = logging.getLogger(__name__)

MIDI_EXTENSIONS = frozenset({".mid", ".midi"})
_FLOAT_SUFFIXES = frozenset({".wav", ".wave", ".w64", ".rf64", ".aif", ".aiff"})
RECORD_RING_SECONDS = 4.0  # audio the worker may fall behind in draining the record tap


def _sounddevice():
    try:
        import sounddevice
    except OSError as error:  # the PortAudio shared library is missing
        raise AfterError(
            f"audio devices need the PortAudio library (apt install libportaudio2): {error}"
        ) from None
    return sounddevice


def list_devices() -> str:
    """Audio devices and host APIs PortAudio sees, as text (``after live --list-devices``)."""
    sd = _sounddevice()
    apis = ", ".join(api["name"] for api in sd.query_hostapis())
    devices = str(sd.query_devices()) or "(no audio device)"
    return f"host APIs: {apis}\n{devices}"


def classify_endpoint(spec: str | int | Path | None, default: str, allow_midi: bool) -> tuple[str, Any]:
    """Tell what an ``--input``/``--output`` value names: ``(kind, spec)``.

    kind: "device" (spec = index, name or None for the default device), "audio_file" or
    "midi_file" (spec = Path), or "none". A value with an audio or MIDI file extension is a file;
    an integer (or a string of digits) is a device index; anything else is a device name.
    """
    from after.data.audio import AUDIO_EXTENSIONS

    if spec is None:
        return default, None
    if isinstance(spec, int):
        return "device", spec
    text = str(spec)
    suffix = Path(text).suffix.lower()
    if suffix in MIDI_EXTENSIONS:
        if not allow_midi:
            raise BadInputError(f"{text}: a MIDI file cannot be an audio output (expected .wav, .flac, ...)")
        return "midi_file", Path(text)
    if suffix in AUDIO_EXTENSIONS or isinstance(spec, Path):
        return "audio_file", Path(text)
    if text.isdigit():
        return "device", int(text)
    return "device", text


def resolve_device(spec: int | str | None, kind: str) -> int:
    """Index of the ``kind`` ("input"/"output") device named by ``spec`` (None = default).

    Raises BadInputError naming the device and listing the available ones.
    """
    sd = _sounddevice()
    try:
        info = sd.query_devices(spec, kind)
    except (ValueError, sd.PortAudioError) as error:
        names = [f"{d['index']}: {d['name']}" for d in sd.query_devices()] or ["none"]
        what = "default" if spec is None else repr(spec)
        raise BadInputError(
            f"audio {kind} device {what}: not found ({error}); available: {'; '.join(names)}"
        ) from None
    if info[f"max_{kind}_channels"] < 1:
        raise BadInputError(f"audio device {info['name']!r} has no {kind} channels")
    return int(info["index"])


class AudioWriter:
    """Writes ``[1, n]`` float32 blocks to an audio file as they come (WAV as 32-bit float).

    ``max_frames`` caps the file's length (later samples are dropped).
    """

    def __init__(self, path: str | Path, sample_rate: int, max_frames: int | None = None) -> None:
        import soundfile as sf

        self.path = Path(path)
        subtype = "FLOAT" if self.path.suffix.lower() in _FLOAT_SUFFIXES else None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(str(self.path), "w", int(sample_rate), 1, subtype=subtype)
        except (sf.SoundFileError, TypeError, ValueError, OSError) as error:
            raise BadInputError(f"{self.path}: cannot write audio here ({error})") from None
        self.frames_written = 0
        self.max_frames = max_frames

    def write(self, block: np.ndarray) -> None:
        if self.max_frames is not None:
            block = block[:, : max(self.max_frames - self.frames_written, 0)]
        self._file.write(np.ascontiguousarray(block.T))  # [1, n] -> [n, 1]
        self.frames_written += block.shape[1]

    def close(self) -> None:
        self._file.close()


class DeviceStream:
    """A PortAudio stream whose callback only copies between the card and ring buffers.

    ``input_ring`` (input device only) receives the card's first input channel; ``output_ring``
    (output device only) feeds every output callback and starts with ``buffer_samples`` of
    silence; ``record_ring`` (when ``record``) receives a copy of every output callback.
    """

    def __init__(
        self,
        input_device: int | None,
        output_device: int | None,
        sample_rate: int,
        device_blocksize: int,
        block_size: int,
        buffer_samples: int,
        stats: HostStats,
        record: bool = False,
    ) -> None:
        sd = _sounddevice()
        self.stats = stats
        callback_frames = device_blocksize or block_size
        has_in, has_out = input_device is not None, output_device is not None
        self.input_ring = AudioRing(4 * block_size + 2 * callback_frames) if has_in else None
        out_capacity = buffer_samples + 2 * block_size + 2 * callback_frames
        self.output_ring = AudioRing(out_capacity) if has_out else None
        self.record_ring = AudioRing(round(RECORD_RING_SECONDS * sample_rate)) if record and has_out else None
        if self.output_ring is not None:
            self.output_ring.write_silence(buffer_samples)
        self._xruns = 0
        self._stopped = False
        common = dict(samplerate=sample_rate, blocksize=device_blocksize, dtype="float32")
        try:
            if has_in and has_out:
                self._stream = sd.Stream(
                    device=(input_device, output_device), channels=(1, 1), callback=self._duplex, **common
                )
            elif has_in:
                self._stream = sd.InputStream(device=input_device, channels=1, callback=self._input, **common)
            else:
                self._stream = sd.OutputStream(
                    device=output_device, channels=1, callback=self._output, **common
                )
        except (sd.PortAudioError, ValueError) as error:
            devices = f"in={input_device} out={output_device}"
            raise AfterError(f"cannot open audio device(s) {devices} at {sample_rate} Hz: {error}") from None

    # -- audio thread: copies only ----------------------------------------------------------------

    def _duplex(self, indata, outdata, frames, time_info, status) -> None:
        if status:
            self._xruns += 1
        self.input_ring.write(indata.T)  # [frames, 1] -> [1, frames] (a view)
        self._play(outdata)

    def _input(self, indata, frames, time_info, status) -> None:
        if status:
            self._xruns += 1
        self.input_ring.write(indata.T)

    def _output(self, outdata, frames, time_info, status) -> None:
        if status:
            self._xruns += 1
        self._play(outdata)

    def _play(self, outdata) -> None:
        self.output_ring.read_into(outdata.T)  # fills [1, frames] in place
        if self.record_ring is not None:
            self.record_ring.write(outdata.T)

    # -- control thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._stream.start()

    def describe_latency(self) -> str:
        latency = self._stream.latency
        parts = latency if isinstance(latency, tuple) else (latency,)
        return " / ".join(f"{1000 * value:.1f} ms" for value in parts) + " (input / output as reported)"

    def sync_stats(self) -> None:
        """Copy the ring counters into the host's statistics (until :meth:`stop`)."""
        if self._stopped:
            return
        if self.output_ring is not None:
            self.stats.underruns = self.output_ring.underruns
            self.stats.missing_frames = self.output_ring.missing_frames
        if self.input_ring is not None:
            self.stats.overruns = self.input_ring.overruns
            self.stats.dropped_frames = self.input_ring.dropped_frames
        if self.record_ring is not None:
            self.stats.record_dropped_frames = self.record_ring.dropped_frames
        self.stats.device_xruns = self._xruns

    def freeze_stats(self) -> None:
        """Copy the counters one last time; what happens while shutting down is not counted."""
        self.sync_stats()
        self._stopped = True

    def stop(self) -> None:
        self.freeze_stats()
        self._stream.stop()

    def drain_record(self, writer: AudioWriter | None) -> None:
        """Move everything in the record ring to ``writer`` (worker or control thread)."""
        if writer is None or self.record_ring is None:
            return
        available = self.record_ring.available
        if available:
            writer.write(self.record_ring.read(available))

    def close(self) -> None:
        self._stream.close()


def open_midi_input(
    port: str | None, api: str | None, client_name: str, callback: Callable[[Any], None]
) -> Any:
    """Open a mido input port with the rtmidi backend; ``callback(message)`` runs in rtmidi's thread.

    Args:
        port: name (or a part of it, case-insensitive) of an existing port to connect to, or
            None to create a virtual input port ``client_name:in`` that other programs connect to.
        api: rtmidi API ("UNIX_JACK", "LINUX_ALSA", "MACOSX_CORE", "WINDOWS_MM"); None: the
            ``AFTER_MIDI_API`` environment variable, else the backend's default (mido's
            ``MIDO_BACKEND`` such as ``mido.backends.rtmidi/UNIX_JACK`` is honoured too).
    """
    import mido

    api = api or os.environ.get("AFTER_MIDI_API") or None
    backend_name = os.environ.get("MIDO_BACKEND") or "mido.backends.rtmidi"
    where = f"MIDI ({backend_name}, API {api or 'default'})"
    try:
        backend = mido.Backend(backend_name, api=api, load=True)
        if port is None:
            opened = backend.open_input("in", client_name=client_name, callback=callback)
        else:
            names = backend.get_input_names()
            matches = [name for name in names if name == port] or [
                name for name in names if port.lower() in name.lower()
            ]
            if not matches:
                raise BadInputError(f"{where}: port {port!r} not found; available: {names or 'none'}")
            opened = backend.open_input(matches[0], callback=callback)
    except AfterError:
        raise
    except Exception as error:  # rtmidi raises SystemError/RuntimeError/OSError when an API is unusable
        raise AfterError(
            f"{where}: cannot open an input port ({type(error).__name__}: {error}); "
            "on Linux without an ALSA sequencer, start JACK and use --midi-api UNIX_JACK"
        ) from None
    logger.info("MIDI: listening on %s", f"{client_name}:{opened.name}" if port is None else opened.name)
    return opened
