"""CPU threads of inference (``after transfer``, ``after demo``, the live host).

The embedded models are small: a second thread makes an offline transfer only about 8 % faster on an
idle 2-core machine, while more threads than free cores make every small operation wait for a
descheduled thread. Beside a 2-thread training run on 2 cores, ``after demo`` took about 10 minutes
with 2 threads and 27 s with 1. Hence one thread by default, as ``after live`` uses.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator

from after.errors import BadInputError

DEFAULT_INFERENCE_THREADS = 1

THREADS_HELP = (
    "CPU threads for the model (default 1: the small models gain little from more, and more threads "
    "than free cores slow them many times over)"
)


def check_threads(threads: int) -> int:
    """``threads`` as an int if it is a whole number >= 1, else :class:`BadInputError` naming it."""
    try:
        count = operator.index(threads)
    except TypeError:
        count = 0
    if isinstance(threads, bool) or count < 1:
        raise BadInputError(f"--threads {threads!r}: expected a whole number of CPU threads >= 1")
    return count


@contextlib.contextmanager
def inference_threads(threads: int = DEFAULT_INFERENCE_THREADS) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to ``threads``; restore it after."""
    import torch

    count = check_threads(threads)
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
