import pytest
import torch

from after.diffusion.encoders import (
    AdversarialClassifier,
    AttentiveStatsPooling,
    MidiStructureEncoder,
    StructureEncoder,
    TimbreEncoder,
    box_penalty,
    cosine_classifier_loss,
    shuffle_segments,
)
from after.nn.streaming import streaming


def test_attentive_pooling_is_permutation_invariant():
    torch.manual_seed(0)
    pool = AttentiveStatsPooling(6, 5)
    x = torch.randn(2, 6, 40)
    perm = torch.randperm(40)
    assert torch.allclose(pool(x), pool(x[:, :, perm]), atol=1e-5)
    assert not torch.allclose(pool(x), pool(torch.randn(2, 6, 40)), atol=1e-2)


def test_timbre_encoder_shape_tanh_and_length_independence():
    torch.manual_seed(0)
    enc = TimbreEncoder(8, 5, channels=16, dilations=(1, 2), se_dim=4, attention_dim=8, use_tanh=True).eval()
    c = enc(torch.randn(3, 8, 30) * 10)
    assert c.shape == (3, 5) and bool((c.abs() < 1).all())
    # a repeated clip has (nearly) the same pooled statistics: pooling does not depend on length
    z = torch.randn(1, 8, 32)
    enc.use_tanh = False
    short, tiled = enc(z), enc(torch.cat([z, z, z], dim=-1))
    assert torch.allclose(short, tiled, atol=0.05 * short.abs().max().item())


def test_box_penalty():
    assert box_penalty(torch.tensor([0.3, -1.0, 0.99])).item() == 0.0
    assert box_penalty(torch.tensor([2.0, -3.0, 0.0, 0.5])).item() == pytest.approx((1.0 + 2.0) / 4)


def test_shuffle_segments_permutes_whole_segments():
    g = torch.Generator().manual_seed(0)
    z = torch.arange(2 * 1 * 24, dtype=torch.float32).reshape(2, 1, 24)
    out = shuffle_segments(z, (4, 8), g)
    for b in range(2):
        assert sorted(out[b, 0].tolist()) == sorted(z[b, 0].tolist())  # same frames
        diffs = out[b, 0, 1:] - out[b, 0, :-1]
        assert int((diffs != 1).sum()) <= 24 // 4  # contiguous runs inside segments
    shuffled_any = any(not torch.equal(shuffle_segments(z, (4,), g), z) for _ in range(3))
    assert shuffled_any


@pytest.mark.parametrize("mode", ["audio", "midi"])
def test_structure_encoders_are_causal_and_stream_like_offline(mode):
    torch.manual_seed(0)
    if mode == "audio":
        enc = StructureEncoder(8, 6, channels=(12, 16), kernel_size=5).eval()
        x = torch.randn(2, 8, 30)
    else:
        enc = MidiStructureEncoder(6, channels=(12,), kernel_size=3).eval()
        x = (torch.rand(2, 2, 128, 30) > 0.95).float()
    with torch.no_grad():
        s = enc(x)
        assert s.shape == (2, 6, 30) and bool((s.abs() <= 1).all())
        # causality: perturbing frames >= 17 leaves frames < 17 untouched
        y = x.clone()
        y[..., 17:] = torch.randn_like(y[..., 17:])
        s2 = enc(y)
        assert torch.equal(s2[..., :17], s[..., :17]) and not torch.allclose(s2[..., 17:], s[..., 17:])
        # streaming with uneven blocks equals offline
        with streaming(enc, 2):
            parts = [enc(x[..., a:b]) for a, b in [(0, 1), (1, 8), (8, 11), (11, 30)]]
        assert torch.allclose(torch.cat(parts, dim=-1), s, atol=1e-6)


def test_midi_encoder_without_network_passes_the_roll():
    enc = MidiStructureEncoder(256, use_encoder=False)
    roll = torch.rand(1, 2, 128, 5)
    assert torch.equal(enc(roll), roll.reshape(1, 256, 5))


def test_classifier_learns_and_cosine_loss():
    torch.manual_seed(0)
    clf = AdversarialClassifier(4, 3, channels=(16, 16))
    c = torch.randn(16, 3)
    s = c[:, :, None].repeat(1, 2, 12)[:, :4] + 0.1 * torch.randn(16, 4, 12)  # structure leaks timbre
    assert cosine_classifier_loss(c, c).item() == pytest.approx(0.0, abs=1e-6)
    assert cosine_classifier_loss(-c, c).item() == pytest.approx(2.0, abs=1e-5)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-2)
    first = cosine_classifier_loss(clf(s), c).item()
    for _ in range(60):
        loss = cosine_classifier_loss(clf(s), c)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
