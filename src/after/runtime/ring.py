"""A single-producer, single-consumer ring buffer of audio frames.

The audio callback of a sound card must never wait: it only copies samples between the card and
two of these rings, one for input and one for output, while a worker thread runs the model.

Thread model: exactly one thread writes and exactly one thread reads. Each side owns one integer
counter (``_written`` for the producer, ``_read`` for the consumer) that only it updates, and
updates it *after* copying the samples, so the other side never sees a frame before it is in
place. Under CPython a plain int assignment is atomic, so no lock is needed and neither side
ever blocks. Counters grow without bound (Python ints), positions are taken modulo the capacity.

Failure accounting (both sides keep going, nothing raises):

- overrun: :meth:`AudioRing.write` got more frames than there was room for; the frames that do
  not fit are dropped (counted in ``dropped_frames``) and ``overruns`` grows by one;
- underrun: :meth:`AudioRing.read` was asked for more frames than were stored; the missing
  frames are filled with silence (counted in ``missing_frames``) and ``underruns`` grows by one.
"""

from __future__ import annotations

import numpy as np

from after.errors import BadInputError


class AudioRing:
    """Fixed-capacity FIFO of float32 frames shaped ``[channels, capacity]``.

    Args:
        capacity: frames it can hold (samples per channel), > 0.
        channels: audio channels per frame, > 0.
    """

    def __init__(self, capacity: int, channels: int = 1) -> None:
        if capacity <= 0 or channels <= 0:
            raise BadInputError(f"ring buffer of {capacity} frames x {channels} channels: expected both > 0")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._data = np.zeros((self.channels, self.capacity), dtype=np.float32)
        self._written = 0  # frames ever written; only the producer updates it
        self._read = 0  # frames ever read; only the consumer updates it
        self.overruns = 0  # producer-side counters
        self.dropped_frames = 0
        self.underruns = 0  # consumer-side counters
        self.missing_frames = 0

    # -- both sides ------------------------------------------------------------------------------

    @property
    def available(self) -> int:
        """Frames stored and not yet read."""
        return self._written - self._read

    @property
    def free(self) -> int:
        """Frames that can be written without dropping any."""
        return self.capacity - (self._written - self._read)

    # -- producer ----------------------------------------------------------------------------------

    def write(self, frames: np.ndarray) -> int:
        """Append ``frames`` ``[channels, n]``; returns how many were stored.

        Frames beyond the free space are dropped (an overrun is counted); never blocks.
        """
        n = frames.shape[-1]
        room = self.capacity - (self._written - self._read)
        count = min(n, room)
        if count < n:
            self.overruns += 1
            self.dropped_frames += n - count
        if count > 0:
            start = self._written % self.capacity
            first = min(count, self.capacity - start)
            self._data[:, start : start + first] = frames[:, :first]
            if count > first:  # wrap around to the beginning of the storage
                self._data[:, : count - first] = frames[:, first:count]
            self._written += count  # publish only after the copy
        return count

    def write_silence(self, n: int) -> int:
        """Append ``n`` frames of zeros (e.g. to prefill an output ring); returns frames stored."""
        return self.write(np.zeros((self.channels, n), dtype=np.float32))

    # -- consumer ----------------------------------------------------------------------------------

    def read_into(self, out: np.ndarray) -> int:
        """Fill ``out`` ``[channels, n]`` with the oldest frames; returns how many were real.

        Missing frames are zeros (an underrun is counted); never blocks.
        """
        n = out.shape[-1]
        count = min(n, self._written - self._read)
        if count > 0:
            start = self._read % self.capacity
            first = min(count, self.capacity - start)
            out[:, :first] = self._data[:, start : start + first]
            if count > first:  # wrap around
                out[:, first:count] = self._data[:, : count - first]
            self._read += count  # release the space only after the copy
        if count < n:
            out[:, count:] = 0.0
            self.underruns += 1
            self.missing_frames += n - count
        return count

    def read(self, n: int) -> np.ndarray:
        """Return the oldest ``n`` frames as a new ``[channels, n]`` array (zero-filled on underrun)."""
        out = np.empty((self.channels, n), dtype=np.float32)
        self.read_into(out)
        return out
