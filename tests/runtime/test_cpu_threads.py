"""Thread counts of inference: whole numbers >= 1, one shared check for every entry point."""

import numpy as np
import pytest
import torch

from after.errors import BadInputError
from after.runtime.cpu_threads import check_threads, inference_threads
from after.runtime.live import load_pipeline


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True, None])
def test_bad_thread_counts_are_refused_with_their_value(value):
    with pytest.raises(BadInputError, match=f"--threads {value!r}: expected a whole number"):
        check_threads(value)


def test_whole_numbers_of_any_integer_type_are_taken():
    assert check_threads(np.int64(3)) == 3 and type(check_threads(np.int64(3))) is int
    before = torch.get_num_threads()
    with inference_threads(np.int32(1)):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_the_live_pipeline_refuses_a_bad_thread_count_before_touching_torch():
    before = torch.get_num_threads()
    with pytest.raises(BadInputError, match="--threads 0"):
        load_pipeline("default", "audio", threads=0)
    assert torch.get_num_threads() == before
