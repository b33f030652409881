"""Project-wide test settings.

Tests run on one torch thread: the machines that run them have two cores shared with other
processes, and one thread gives steadier, faster small-tensor work there. Tests that measure
threading set their own count.
"""

import torch


def pytest_configure(config):
    torch.set_num_threads(1)
