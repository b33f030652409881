"""Causal convolutions: streaming equals offline, causality, reference equivalence, TorchScript."""

import io

import pytest
import torch
from torch.nn import functional as F

from after.nn.conv import CausalConv1d, CausalConvTranspose1d, remove_weight_norm
from after.nn.streaming import init_state, reset_state, streaming

UNEVEN = [1, 2, 7, 0, 3, 13, 50, 21, 5, 64]


def run_blocks(module, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Stream ``x`` through ``module`` in blocks of the given sizes (the last block takes the rest)."""
    outputs, start = [], 0
    with streaming(module, x.size(0)):
        for size in sizes:
            outputs.append(module(x[..., start : start + size]))
            start += size
        outputs.append(module(x[..., start:]))
    return torch.cat(outputs, dim=-1)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    assert actual.shape == expected.shape
    scale = expected.abs().max().clamp_min(1e-12)
    assert ((actual - expected).abs().max() / scale).item() < rel


CONV_CASES = [(3, 1, 1), (3, 1, 9), (4, 2, 1), (1, 3, 1), (5, 4, 2), (2, 5, 1), (8, 4, 1)]


@pytest.mark.parametrize(("kernel", "stride", "dilation"), CONV_CASES)
def test_conv_streaming_equals_offline(kernel, stride, dilation):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 5, kernel, stride=stride, dilation=dilation).eval()
    x = torch.randn(2, 3, 181)
    offline = conv(x)
    assert offline.shape == (2, 5, 181 // stride)
    for sizes in (UNEVEN, [stride] * 40, [2 * stride] * 20, [4 * stride] * 10, [1] * 100):
        assert_close(run_blocks(conv, x, sizes), offline)


@pytest.mark.parametrize(("kernel", "stride", "dilation"), CONV_CASES)
def test_conv_equals_zero_padded_convolution_sampled_at_block_ends(kernel, stride, dilation):
    torch.manual_seed(1)
    conv = CausalConv1d(2, 4, kernel, stride=stride, dilation=dilation)
    x = torch.randn(2, 2, 120)
    context = (kernel - 1) * dilation
    dense = F.conv1d(F.pad(x, (context, 0)), conv.conv.weight, conv.conv.bias, dilation=dilation)
    # frame n of the strided conv reads the window ending at the last sample of its block
    expected = dense[..., stride - 1 :: stride][..., : 120 // stride]
    assert_close(conv(x), expected)
    assert conv.ratio == stride and conv.latency == 0


def test_batch_items_are_processed_independently():
    torch.manual_seed(7)
    x = torch.randn(3, 4, 50)
    for module in (
        CausalConv1d(4, 5, 3, dilation=2),
        CausalConv1d(4, 5, 1),
        CausalConv1d(4, 5, 6, stride=3),
        CausalConvTranspose1d(4, 5, 8, 4),
        CausalConvTranspose1d(4, 5, 7, 2),
    ):
        together = module(x)
        alone = torch.cat([module(x[i : i + 1]) for i in range(3)], dim=0)
        assert_close(together, alone)


@pytest.mark.parametrize(("kernel", "stride", "dilation"), CONV_CASES)
def test_conv_is_block_causal(kernel, stride, dilation):
    torch.manual_seed(2)
    conv = CausalConv1d(2, 3, kernel, stride=stride, dilation=dilation)
    x = torch.randn(1, 2, 100)
    tau = 61
    changed = x.clone()
    changed[..., tau:] = torch.randn_like(changed[..., tau:])
    before, after = conv(x), conv(changed)
    complete = tau // stride  # frames whose blocks end before tau
    assert torch.equal(before[..., :complete], after[..., :complete])
    assert not torch.equal(before[..., complete], after[..., complete])


TRANSPOSED_CASES = [(4, 2, 1), (8, 4, 1), (3, 4, 1), (3, 1, 2), (1, 3, 1), (16, 8, 1)]


@pytest.mark.parametrize(("kernel", "stride", "dilation"), TRANSPOSED_CASES)
def test_transposed_streaming_equals_offline_and_reference(kernel, stride, dilation):
    torch.manual_seed(3)
    conv = CausalConvTranspose1d(3, 5, kernel, stride, dilation=dilation).eval()
    x = torch.randn(2, 3, 37)
    offline = conv(x)  # the reference below handles the batch with PyTorch's own kernels
    assert offline.shape == (2, 5, 37 * stride)
    reference = F.conv_transpose1d(x, conv.conv.weight, stride=stride, dilation=dilation)
    reference = F.pad(reference, (0, max(0, 37 * stride - reference.size(-1))))[..., : 37 * stride]
    reference = reference + conv.conv.bias[:, None]
    assert_close(offline, reference)
    for sizes in ([1, 2, 0, 3, 13, 5], [1] * 36, [2] * 18, [4] * 9):
        assert_close(run_blocks(conv, x, sizes), offline)


@pytest.mark.parametrize(("kernel", "stride", "dilation"), TRANSPOSED_CASES)
def test_transposed_is_block_causal(kernel, stride, dilation):
    torch.manual_seed(4)
    conv = CausalConvTranspose1d(2, 3, kernel, stride, dilation=dilation)
    x = torch.randn(1, 2, 20)
    changed = x.clone()
    changed[..., 11:] += 1.0
    before, after = conv(x), conv(changed)
    assert torch.equal(before[..., : 11 * stride], after[..., : 11 * stride])
    assert not torch.equal(before[..., 11 * stride :], after[..., 11 * stride :])


def test_weight_norm_trains_and_is_removed_without_changing_outputs():
    torch.manual_seed(5)
    conv = CausalConv1d(2, 3, 3, stride=2, weight_norm=True)
    up = CausalConvTranspose1d(3, 2, 4, 2, weight_norm=True)
    x = torch.randn(1, 2, 64)
    out = up(conv(x))
    out.pow(2).mean().backward()
    assert conv.conv.parametrizations.weight.original0.grad is not None
    with torch.no_grad():
        before = up(conv(x))
        remove_weight_norm(conv)
        remove_weight_norm(up)
        assert_close(up(conv(x)), before)
    assert not hasattr(conv.conv, "parametrizations")


def test_script_save_load_matches_eager_offline_and_streaming_with_batch_change(tmp_path):
    torch.manual_seed(6)
    model = torch.nn.Sequential(
        CausalConv1d(1, 4, 5, stride=3, dilation=2, weight_norm=True),
        CausalConvTranspose1d(4, 2, 6, 3, weight_norm=True),
    ).eval()
    remove_weight_norm(model)
    x = torch.randn(4, 1, 150)
    with torch.no_grad():
        eager = model(x)
        path = tmp_path / "conv.ts"
        torch.jit.save(torch.jit.script(model), str(path))
        loaded = torch.jit.load(str(path))
        assert_close(loaded(x), eager)

        init_state(model, 1)
        scripted = torch.jit.script(model)
        reset_state(model)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        streamed = torch.jit.load(buffer)
        first = torch.cat([streamed(x[:1, :, i : i + 7]) for i in range(0, 150, 7)], dim=-1)
        assert_close(first, eager[:1])
        # nn~ may switch to 4 streams: the state re-initialises for the new batch size
        second = torch.cat([streamed(x[:, :, i : i + 10]) for i in range(0, 150, 10)], dim=-1)
        assert_close(second, eager)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="stride"):
        CausalConv1d(1, 1, 3, stride=0)
    with pytest.raises(ValueError, match="kernel_size"):
        CausalConvTranspose1d(1, 1, 0, 2)
