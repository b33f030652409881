"""The audio ring buffer: FIFO order, wrap-around, overrun/underrun accounting, two threads."""

import threading
import time

import numpy as np
import pytest

from after.errors import BadInputError
from after.runtime.ring import AudioRing


def ramp(start, n, channels=2):
    return np.stack([np.arange(start, start + n, dtype=np.float32) * (c + 1) for c in range(channels)])


def test_fifo_order_across_wrap_around():
    ring = AudioRing(10, channels=2)
    produced, consumed = 0, []
    for n_write, n_read in [(7, 4), (6, 5), (5, 8), (9, 3), (0, 7)]:  # positions wrap several times
        assert ring.write(ramp(produced, n_write)) == n_write
        produced += n_write
        consumed.append(ring.read(n_read))
    assert ring.available == 0 and ring.free == 10
    np.testing.assert_array_equal(np.concatenate(consumed, axis=1), ramp(0, produced))
    assert ring.underruns == 0 and ring.overruns == 0


def test_overrun_drops_the_excess_and_counts_it():
    ring = AudioRing(8, channels=1)
    assert ring.write(ramp(0, 5, 1)) == 5
    assert ring.write(ramp(5, 6, 1)) == 3  # only 3 fit
    assert (ring.overruns, ring.dropped_frames) == (1, 3)
    np.testing.assert_array_equal(ring.read(8), ramp(0, 8, 1))  # the oldest frames were kept


def test_underrun_pads_with_silence_and_counts_it():
    ring = AudioRing(8, channels=1)
    ring.write(ramp(1, 3, 1))
    out = np.full((1, 5), 7.0, dtype=np.float32)
    assert ring.read_into(out) == 3
    np.testing.assert_array_equal(out, [[1, 2, 3, 0, 0]])
    assert (ring.underruns, ring.missing_frames) == (1, 2)
    ring.read(4)
    assert (ring.underruns, ring.missing_frames) == (2, 6)


def test_reads_into_a_transposed_view_like_a_sound_card_buffer():
    ring = AudioRing(16, channels=1)
    ring.write(ramp(0, 6, 1))
    card = np.zeros((6, 1), dtype=np.float32)  # sounddevice layout [frames, channels]
    ring.read_into(card.T)
    np.testing.assert_array_equal(card[:, 0], np.arange(6))


def test_bad_sizes_are_refused():
    with pytest.raises(BadInputError, match="0 frames"):
        AudioRing(0)


@pytest.mark.timeout(30)
def test_producer_and_consumer_threads_keep_every_sample_in_order():
    ring = AudioRing(257, channels=1)
    total = 200_000
    received = np.empty(total, dtype=np.float32)
    rng = np.random.default_rng(0)
    write_sizes = rng.integers(1, 100, size=10_000)
    read_sizes = rng.integers(1, 100, size=10_000)
    errors = []

    def produce():
        sent, i = 0, 0
        while sent < total:
            n = min(int(write_sizes[i % len(write_sizes)]), ring.free, total - sent)
            i += 1
            if n:
                assert ring.write(ramp(sent, n, 1)) == n
                sent += n
            else:
                time.sleep(0)  # let the consumer run

    def consume():
        got, i = 0, 0
        try:
            while got < total:
                n = min(int(read_sizes[i % len(read_sizes)]), ring.available)
                i += 1
                if n:
                    received[got : got + n] = ring.read(n)[0]
                    got += n
                else:
                    time.sleep(0)
        except Exception as error:  # reported to the main thread
            errors.append(error)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=25)
    assert not errors and not any(t.is_alive() for t in threads)
    np.testing.assert_array_equal(received, np.arange(total, dtype=np.float32))
    assert ring.overruns == 0 and ring.underruns == 0  # each side only took what the other had made
