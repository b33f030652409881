"""A nearly silent example in a batch cannot dominate the STFT loss (spectral convergence over the batch)."""

import math

import torch

from after.codec.losses import MultiResolutionSTFTLoss

torch.set_num_threads(1)


def test_nearly_silent_example_does_not_blow_up_the_loss():
    t = torch.arange(8192) / 22050
    loud = 0.3 * torch.sin(2 * math.pi * 220 * t)
    quiet = 1e-4 * torch.sin(2 * math.pi * 330 * t)  # a crop in a note's release, -70 dB
    target = torch.stack([loud, quiet]).unsqueeze(1)  # [2, 1, T]
    noise = 0.01 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    loss = MultiResolutionSTFTLoss((512, 128), sample_rate=22050)
    both = loss(target + noise, target)
    loud_only = loss(target[:1] + noise[:1], target[:1])
    # the same absolute error on the quiet example adds a bounded amount (a per-example ratio
    # made it ~100 times larger than the loud example's loss)
    assert both < 5 * loud_only, (float(both), float(loud_only))
    # and the loss still falls as the error shrinks
    assert loss(target + 0.1 * noise, target) < both
