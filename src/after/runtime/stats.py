"""Counters and timings of a live run, and the lines that report them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HostStats:
    """What happened during a run of :class:`~after.runtime.live.LiveHost`.

    Times are in seconds. ``underruns``: times the output ring could not give the sound card a
    full callback (``missing_frames`` samples of silence were played instead); ``overruns``:
    times the input ring was full (``dropped_frames`` input samples lost); ``device_xruns``:
    callbacks that PortAudio flagged with an input overflow or output underflow.
    """

    block_seconds: float
    blocks: int = 0
    process_seconds_total: float = 0.0
    process_seconds_max: float = 0.0
    underruns: int = 0
    missing_frames: int = 0
    overruns: int = 0
    dropped_frames: int = 0
    device_xruns: int = 0
    record_dropped_frames: int = 0
    midi_notes: int = 0
    parameter_updates: int = 0
    rejected_updates: int = 0

    def add_block(self, seconds: float) -> None:
        """Count one processed block that took ``seconds``."""
        self.blocks += 1
        self.process_seconds_total += seconds
        self.process_seconds_max = max(self.process_seconds_max, seconds)

    @property
    def process_seconds_mean(self) -> float:
        return self.process_seconds_total / self.blocks if self.blocks else 0.0

    @property
    def load(self) -> float:
        """Mean processing time / block duration (1.0 = the CPU just keeps up)."""
        return self.process_seconds_mean / self.block_seconds

    def status_line(self) -> str:
        """One line for the periodic log."""
        return (
            f"live: {self.blocks} blocks, underruns {self.underruns}, overruns {self.overruns}, "
            f"load {100 * self.load:.0f}% (mean {1000 * self.process_seconds_mean:.1f} ms, "
            f"max {1000 * self.process_seconds_max:.1f} ms per {1000 * self.block_seconds:.1f} ms block)"
        )

    def summary(self) -> str:
        """The final report (a few lines)."""
        return "\n".join(
            [
                f"summary: {self.blocks} blocks processed "
                f"({self.blocks * self.block_seconds:.1f} s of audio)",
                f"  processing per block: mean {1000 * self.process_seconds_mean:.2f} ms, "
                f"max {1000 * self.process_seconds_max:.2f} ms, block duration "
                f"{1000 * self.block_seconds:.2f} ms (load {100 * self.load:.0f}%)",
                f"  underruns {self.underruns} ({self.missing_frames} samples of silence), "
                f"overruns {self.overruns} ({self.dropped_frames} input samples lost), "
                f"device xruns {self.device_xruns}",
                f"  MIDI notes {self.midi_notes}, parameter updates {self.parameter_updates} applied, "
                f"{self.rejected_updates} refused",
            ]
        )
