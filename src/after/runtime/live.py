"""The real-time host: sound card, MIDI port and OSC around a streaming pipeline.

Threads and data flow::

    sound card ──callback──► input ring ──┐                  ┌──► output ring ──callback──► sound card
    MIDI port (rtmidi thread) ─► queue ───┼─► worker thread ─┤                    └─► record ring ─► file
    OSC server thread ─► update queue ────┘  pipeline.process └──► output file (file mode)

- The audio callback never waits: it copies between the card and :class:`~after.runtime.ring.AudioRing`
  buffers and counts what went wrong (underrun: the output ring ran dry; overrun: the input ring
  was full; device xrun: PortAudio's own status flags).
- The worker thread runs ``pipeline.process`` block by block, applies parameter updates between
  blocks (a refused value is logged in one line and ignored), places MIDI notes in time and
  measures the processing time of every block.
- Host buffering: the output ring starts with ``buffer_samples`` of silence (one block for the
  input to fill up, one callback period, plus ``safety_blocks`` blocks of headroom for the
  worker). Total latency = pipeline algorithmic latency + ``buffer_samples`` (+ the device's
  own latency, logged when known).
- File mode (input and output are files): the same worker path without hardware, as fast as
  possible or at the pace of real time (``realtime=True``).

MIDI notes arriving from a port are stamped on arrival; before each block the worker places them
at ``arrival - now`` before the end of the block (one block of constant delay, but the spacing
between notes is kept). A MIDI file given as input is played with sample-exact timing.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from after.errors import AudioFileError, BadInputError
from after.runtime.cpu_threads import DEFAULT_INFERENCE_THREADS, check_threads
from after.runtime.host_io import (
    AudioWriter,
    DeviceStream,
    classify_endpoint,
    list_devices,
    open_midi_input,
    resolve_device,
)
from after.runtime.osc import RESET, OscControl
from after.runtime.protocol import StreamingPipeline, frames_per_block
from after.runtime.stats import HostStats
from after.runtime.voices import VoiceAllocator, midi_file_events

logger = logging.getLogger(__name__)

_POLL_S = 0.001  # worker's wait step while a ring fills or drains


def load_pipeline(model: str | None, mode: str = "audio", **settings: Any) -> StreamingPipeline:
    """Build the streaming pipeline of ``model`` (a name or a path) in ``mode`` ("audio"/"midi").

    ``settings`` are the CLI's initial parameters (``steps``, ``guidance_timbre``,
    ``guidance_structure``, ``block_frames``, ``n_voices``, ``threads`` (torch compute threads,
    default 1), ``scripted`` (run the streaming path through the TorchScript engine, default True:
    less Python overhead per block; with ``int8``, 1-frame blocks run in real time on one core),
    ``int8`` (int8 weights, default False: 2-3x faster per block, output within 2-3 % of fp32), and
    the other settings of :class:`after.runtime.pipeline.TransferPipeline`).
    """
    from after.runtime.bundle import default_model_name, load_bundle
    from after.runtime.pipeline import build_pipeline

    bundle = load_bundle(default_model_name(mode) if model is None else model)
    if bundle.mode != mode:
        raise BadInputError(
            f"model {bundle.name!r} is a {bundle.mode} model; it cannot run in {mode} mode "
            f"(use --mode {bundle.mode})"
        )
    options = dict(settings)
    if "block_frames" in options:
        options["chunk"] = options.pop("block_frames")
    # One compute thread: next to the host's own threads, torch's default thread pool spins against
    # them (measured: 370 ms instead of 15 ms per 46 ms block on a 2-core machine).
    import torch

    torch.set_num_threads(check_threads(options.pop("threads", DEFAULT_INFERENCE_THREADS)))
    options.setdefault("scripted", True)
    pipeline = build_pipeline(bundle, **options)
    logger.info(
        "pipeline: %s engine, %s weights",
        "TorchScript" if pipeline.scripted else "Python", "int8" if pipeline.int8 else "fp32",
    )  # fmt: skip
    return pipeline


class LiveHost:
    """Drive ``pipeline`` from audio/MIDI/OSC inputs to an audio output, in real time or from files.

    Args:
        pipeline: a :class:`~after.runtime.protocol.StreamingPipeline`.
        input: audio device (index or name), audio file, MIDI file (MIDI mode), or None: the
            default input device in audio mode, no audio input in MIDI mode.
        output: audio device (index or name), audio file (.wav is written as 32-bit float), or
            None for the default output device.
        midi_port: MIDI mode: name (or part of it) of a MIDI output port to listen to, or None to
            open a virtual input port named ``midi_client_name`` that other programs connect to.
        midi_api: rtmidi API ("UNIX_JACK", "LINUX_ALSA", "MACOSX_CORE", "WINDOWS_MM"); None: the
            ``AFTER_MIDI_API`` environment variable, else rtmidi's default.
        osc_port: UDP port of the OSC server (0 = any free port), None = no OSC.
        duration: stop after this many seconds (of audio in file mode, of wall time otherwise).
        realtime: file mode: process at the pace of real time instead of as fast as possible.
        record: also write what goes to the output device into this audio file.
        safety_blocks: worker headroom in blocks, added to the host buffering (see module doc).
        device_blocksize: frames per audio callback (0 = let PortAudio choose).
        log_interval: seconds between status lines (0 = none).
    """

    def __init__(
        self,
        pipeline: StreamingPipeline,
        input: str | int | Path | None = None,
        output: str | int | Path | None = None,
        midi_port: str | None = None,
        midi_api: str | None = None,
        osc_port: int | None = None,
        osc_host: str = "127.0.0.1",
        duration: float | None = None,
        realtime: bool = False,
        record: str | Path | None = None,
        safety_blocks: float = 1.0,
        device_blocksize: int = 0,
        log_interval: float = 5.0,
        midi_client_name: str = "after",
    ) -> None:
        self.pipeline = pipeline
        self.mode = pipeline.mode
        if self.mode not in ("audio", "midi"):
            raise BadInputError(f"pipeline mode {self.mode!r}: expected 'audio' or 'midi'")
        self.block_size = int(pipeline.block_size)
        self.sample_rate = int(pipeline.sample_rate)
        self.frames = frames_per_block(pipeline)
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise BadInputError(f"duration={duration!r}: expected a positive number of seconds")
        if safety_blocks < 0 or device_blocksize < 0:
            raise BadInputError(
                f"safety_blocks={safety_blocks}, device_blocksize={device_blocksize}: expected values >= 0"
            )
        self.duration = duration
        self.realtime = realtime
        self.log_interval = log_interval
        self.midi_port, self.midi_api, self.midi_client_name = midi_port, midi_api, midi_client_name
        self.osc_port, self.osc_host = osc_port, osc_host
        self.record_path = Path(record) if record is not None else None
        self.device_blocksize = int(device_blocksize)

        default_input = "device" if self.mode == "audio" else "none"
        self.input_kind, self.input_spec = classify_endpoint(input, default_input, allow_midi=True)
        self.output_kind, self.output_spec = classify_endpoint(output, "device", allow_midi=False)
        if self.input_kind == "midi_file" and self.mode != "midi":
            raise BadInputError(f"input {input}: a MIDI file needs a MIDI pipeline (this one is {self.mode})")
        if self.input_kind == "device" and pipeline.input_channels < 1:
            self.input_kind = "none"  # a MIDI pipeline reads no audio
        # files and devices are checked now, so a mistake is reported before anything starts
        self._input_audio = self._load_input_audio() if self.input_kind == "audio_file" else None
        self._input_events = (
            midi_file_events(self.input_spec, self.sample_rate) if self.input_kind == "midi_file" else None
        )
        self.input_device = resolve_device(self.input_spec, "input") if self.input_kind == "device" else None
        self.output_device = (
            resolve_device(self.output_spec, "output") if self.output_kind == "device" else None
        )
        self.uses_devices = self.input_device is not None or self.output_device is not None

        callback_frames = self.device_blocksize or self.block_size
        headroom = round(safety_blocks * self.block_size)
        self.buffer_samples = self.block_size + callback_frames + headroom if self.uses_devices else 0
        self.stats = HostStats(block_seconds=self.block_size / self.sample_rate)
        self._stop = threading.Event()
        self._updates: deque[tuple[str, Any]] = deque()
        self._midi_queue: deque[tuple[float, Any]] = deque()
        self._allocator = VoiceAllocator(getattr(pipeline, "n_voices", 8)) if self.mode == "midi" else None
        self._error: BaseException | None = None

    # -- public ----------------------------------------------------------------------------------

    @property
    def latency_samples(self) -> int:
        """Pipeline algorithmic latency + host buffering, in samples (device latency excluded)."""
        extra = self.block_size if self.mode == "midi" and self.midi_port_open else 0
        return int(self.pipeline.latency_samples) + self.buffer_samples + extra

    @property
    def midi_port_open(self) -> bool:
        """Whether notes come from a MIDI port: MIDI mode, no MIDI file input, and real time
        (a sound card, or file output with ``realtime``)."""
        live = self.uses_devices or self.realtime
        return self.mode == "midi" and self.input_kind != "midi_file" and live

    def submit(self, name: str, value: Any = None) -> None:
        """Queue a parameter update (or ``"reset"``) for the worker; thread-safe, never blocks."""
        self._updates.append((name, value))

    def stop(self) -> None:
        """Ask the host to finish (thread-safe); :meth:`run` then returns its statistics."""
        self._stop.set()

    def run(self) -> HostStats:
        """Run until ``duration``, :meth:`stop`, Ctrl-C / SIGTERM (main thread) or the input's end."""
        restore = self._install_signal_handlers()
        osc = midi = stream = writer = recorder = None
        try:
            self._max_blocks()  # refuses an endless file-mode run before anything starts
            self.pipeline.reset()
            if self._allocator is not None:
                self._allocator.reset()
                for sample, message in self._input_events or []:
                    self._allocator.push(message, sample)
            if self.osc_port is not None:
                osc = OscControl(self.osc_port, self.submit, self.osc_host, on_error=self._count_bad_osc)
                osc.start()
                self.osc_port = osc.port
            if self.midi_port_open:
                midi = open_midi_input(self.midi_port, self.midi_api, self.midi_client_name, self._on_midi)
            if self.output_kind == "audio_file":
                length = self._input_audio.shape[1] if self._input_audio is not None else None
                writer = AudioWriter(self.output_spec, self.sample_rate, max_frames=length)
            if self.record_path is not None:
                recorder = AudioWriter(self.record_path, self.sample_rate)
            self._log_start()
            if self.uses_devices:
                stream = DeviceStream(
                    self.input_device, self.output_device, self.sample_rate, self.device_blocksize,
                    self.block_size, self.buffer_samples, self.stats,
                    record=recorder is not None,
                )  # fmt: skip
                worker = threading.Thread(
                    target=self._guarded_worker,
                    args=(stream, writer, recorder),
                    name="after-worker",
                    daemon=True,
                )
                stream.start()
                logger.info("audio device latency: %s", stream.describe_latency())
                worker.start()
                deadline = None if self.duration is None else time.monotonic() + self.duration
                while worker.is_alive() and not self._stop.wait(0.05):
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                input_ended = not worker.is_alive() and not self._stop.is_set()
                if input_ended and stream.output_ring is not None:  # play the tail
                    tail_end = time.monotonic() + self.buffer_samples / self.sample_rate + 1.0
                    while stream.output_ring.available > 0 and time.monotonic() < tail_end:
                        if self._stop.wait(0.01):
                            break
                self._stop.set()
                stream.freeze_stats()
                worker.join()
                stream.stop()
                stream.drain_record(recorder)
            else:
                self._guarded_worker(None, writer, recorder)
            if self._error is not None:
                raise self._error
        finally:
            self._stop.set()
            for closer in (stream, midi, osc, writer, recorder):
                if closer is not None:
                    closer.close()
            restore()
        logger.info("%s", self.stats.summary())
        return self.stats

    # -- worker ----------------------------------------------------------------------------------

    def _guarded_worker(self, stream, writer, recorder) -> None:
        try:
            self._worker(stream, writer, recorder)
        except BaseException as error:  # reported by run() in the calling thread
            self._error = error
            self._stop.set()

    def _max_blocks(self) -> float:
        """Blocks to process: the input file's length, else (file mode) the duration's."""
        by_duration = math.inf
        if not self.uses_devices and self.duration is not None:  # with devices: wall-clock time
            by_duration = math.ceil(self.duration * self.sample_rate / self.block_size)
        if self._input_audio is not None:
            return min(math.ceil(self._input_audio.shape[1] / self.block_size), by_duration)
        if self._input_events is not None and self.duration is None:
            last = max((sample for sample, _ in self._input_events), default=0)
            return last // self.block_size + 2  # the last event's block and one after it
        if by_duration == math.inf and not self.uses_devices:
            raise BadInputError("file output without an input file: give a duration")
        return by_duration

    def _worker(self, stream, writer, recorder) -> None:
        max_blocks = self._max_blocks()
        pace_start = time.monotonic()
        next_log = pace_start + self.log_interval if self.log_interval > 0 else math.inf
        empty_input = np.zeros((self.pipeline.input_channels, self.block_size), dtype=np.float32)
        room = self.buffer_samples - self.block_size  # output-only: keep at most this much queued
        while not self._stop.is_set() and self.stats.blocks < max_blocks:
            index = self.stats.blocks
            if self.input_kind == "device":
                if not self._wait(lambda: stream.input_ring.available >= self.block_size):
                    break
                block = stream.input_ring.read(self.block_size)
            elif self._input_audio is not None:
                block = self._input_audio[:, index * self.block_size : (index + 1) * self.block_size]
                if block.shape[1] < self.block_size:  # last block: pad with silence
                    block = np.pad(block, ((0, 0), (0, self.block_size - block.shape[1])))
            else:
                block = empty_input
            if stream is not None and self.input_kind != "device":
                if not self._wait(lambda: stream.output_ring.available <= room):
                    break
            elif stream is None and self.realtime:
                delay = pace_start + index * self.stats.block_seconds - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            self._apply_updates()
            notes = self._render_notes() if self._allocator is not None else None
            started = time.perf_counter()
            out = self.pipeline.process(block, notes)
            self.stats.add_block(time.perf_counter() - started)
            out = np.asarray(out, dtype=np.float32).reshape(1, self.block_size)  # checks [1, block_size]
            if stream is not None:
                stream.output_ring.write(out)
                stream.drain_record(recorder)
            else:
                writer.write(out)
                if recorder is not None:
                    recorder.write(out)
            if time.monotonic() >= next_log:
                if stream is not None:
                    stream.sync_stats()
                logger.info("%s", self.stats.status_line())
                next_log += self.log_interval

    def _wait(self, ready) -> bool:
        """Poll ``ready()`` until true; False if the host was stopped meanwhile."""
        while not ready():
            if self._stop.wait(_POLL_S):
                return False
        return True

    def _apply_updates(self) -> None:
        while self._updates:
            name, value = self._updates.popleft()
            try:
                if name == RESET:
                    self.pipeline.reset()
                    if self._allocator is not None:
                        self._allocator.all_notes_off()
                else:
                    self.pipeline.set_parameter(name, value)
                self.stats.parameter_updates += 1
                logger.debug("parameter %s = %r", name, value)
            except BadInputError as error:
                self.stats.rejected_updates += 1
                logger.warning("refused %s=%r: %s (ignored)", name, value, error)
            except Exception as error:  # a pipeline bug must not stop a performance
                self.stats.rejected_updates += 1
                kind = type(error).__name__
                logger.error("set_parameter(%s, %r) failed: %s: %s (ignored)", name, value, kind, error)

    def _render_notes(self):
        now = time.monotonic()
        last = self.block_size - 1
        while self._midi_queue:
            arrival, message = self._midi_queue.popleft()
            ago = round((now - arrival) * self.sample_rate)
            try:
                if self._allocator.push(message, last - min(max(ago, 0), last)):
                    self.stats.midi_notes += 1
            except BadInputError as error:
                logger.warning("MIDI message %s: %s (ignored)", message, error)
        return self._allocator.render(self.frames, self.pipeline.hop_length)

    # -- callbacks from other threads ------------------------------------------------------------

    def _on_midi(self, message) -> None:
        self._midi_queue.append((time.monotonic(), message))

    def _count_bad_osc(self, error: BadInputError) -> None:
        self.stats.rejected_updates += 1

    # -- helpers ---------------------------------------------------------------------------------

    def _load_input_audio(self) -> np.ndarray:
        from after.data.audio import load_audio

        audio, _ = load_audio(self.input_spec, sample_rate=self.sample_rate, mono=True)  # [1, T]
        channels = self.pipeline.input_channels
        if channels < 1:
            raise AudioFileError(self.input_spec, f"this {self.mode} pipeline reads no audio input")
        return np.repeat(audio, channels, axis=0) if channels > 1 else audio  # [1, T] -> [C_in, T]

    def _log_start(self) -> None:
        rate, latency = self.sample_rate, self.latency_samples
        logger.info(
            "live: %s pipeline, %d Hz, block %d samples (%.1f ms, %d latent frames); input %s, output %s",
            self.mode, rate, self.block_size, 1000 * self.block_size / rate, self.frames,
            _describe(self.input_kind, self.input_spec), _describe(self.output_kind, self.output_spec),
        )  # fmt: skip
        logger.info(
            "latency: %d samples (%.1f ms) = pipeline %d + host buffering %d%s",
            latency, 1000 * latency / rate, self.pipeline.latency_samples, self.buffer_samples,
            " + MIDI placement 1 block" if self.midi_port_open else "",
        )  # fmt: skip

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            logger.info("stopping (%s)", signal.Signals(signum).name)
            self.stop()

        for sig in previous:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore


def _describe(kind: str, spec: Any) -> str:
    if kind == "none":
        return "none"
    if kind == "device":
        return "default device" if spec is None else f"device {spec!r}"
    return str(spec)


__all__ = ["HostStats", "LiveHost", "list_devices", "load_pipeline"]
