import pytest
import torch

from after.diffusion.guidance import (
    branches_needed,
    combine_guidance,
    drop_conditions,
    guidance_batch,
    null_like,
    split_guidance_batch,
)


def _preds():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(2, 4, 6, generator=g) for _ in range(3)]


@pytest.mark.parametrize("mode", ["audio", "midi"])
@pytest.mark.parametrize("g", [0.0, 0.5, 1.0, 2.5])
def test_equal_scales_give_standard_cfg(mode, g):
    v_full, v_partial, v_null = _preds()
    v = combine_guidance(v_full, v_partial, v_null, g, g, mode)
    assert torch.allclose(v, v_null + g * (v_full - v_null), atol=1e-5)


@pytest.mark.parametrize("mode", ["audio", "midi"])
def test_unit_scales_give_conditional_prediction_exactly(mode):
    v_full, v_partial, v_null = _preds()
    assert torch.equal(combine_guidance(v_full, v_partial, v_null, 1.0, 1.0, mode), v_full)
    assert branches_needed(1.0, 1.0, mode) == (True, False, False)
    # an unused branch is never read: garbage there changes nothing
    nan = torch.full_like(v_full, float("nan"))
    assert torch.equal(combine_guidance(v_full, nan, nan, 1.0, 1.0, mode), v_full)


def test_audio_formula_and_midi_role_swap():
    v_full, v_partial, v_null = _preds()
    g_t, g_s = 2.0, 0.5
    big_g = 0.5 * (g_t + g_s)
    k_audio = g_t / g_s
    expected_audio = v_null + big_g * (v_partial - v_null) + big_g * k_audio * (v_full - v_partial)
    assert torch.allclose(
        combine_guidance(v_full, v_partial, v_null, g_t, g_s, "audio"), expected_audio, atol=1e-5
    )
    # MIDI: partial is the timbre-only branch and k = g_s / g_t, i.e. the audio formula with swapped scales
    k_midi = g_s / g_t
    expected_midi = v_null + big_g * (v_partial - v_null) + big_g * k_midi * (v_full - v_partial)
    midi = combine_guidance(v_full, v_partial, v_null, g_t, g_s, "midi")
    assert torch.allclose(midi, expected_midi, atol=1e-5)
    assert torch.allclose(midi, combine_guidance(v_full, v_partial, v_null, g_s, g_t, "audio"), atol=1e-6)
    # structure scale 0 in audio mode: eps bounds k
    assert torch.isfinite(combine_guidance(v_full, v_partial, v_null, 1.0, 0.0, "audio")).all()


def test_guidance_batch_branches_and_split():
    x, c, s = torch.randn(2, 4, 5), torch.rand(2, 3), torch.rand(2, 6, 5)
    null_c, null_s = null_like(c), null_like(s)
    x3, c3, s3 = guidance_batch(x, c, s, null_c, null_s, "audio")
    assert torch.equal(x3[2:4], x) and torch.equal(c3[:2], c) and torch.equal(s3[:2], s)
    assert torch.equal(c3[2:4], null_c) and torch.equal(s3[2:4], s)  # partial = structure only
    assert bool((c3[4:] == -4.0).all()) and bool((s3[4:] == -4.0).all())
    _, c3m, s3m = guidance_batch(x, c, s, null_c, null_s, "midi")
    assert torch.equal(c3m[2:4], c) and torch.equal(s3m[2:4], null_s)  # partial = timbre only
    parts = split_guidance_batch(s3)
    assert torch.equal(parts[0], s) and torch.equal(parts[2], null_s)
    with pytest.raises(ValueError, match="mode"):
        guidance_batch(x, c, s, null_c, null_s, "video")


def test_drop_rates_match_frequencies():
    n = 20000
    c, s = torch.rand(n, 3), torch.rand(n, 2, 4)
    g = torch.Generator().manual_seed(0)
    c_out, s_out, dc, ds = drop_conditions(c, s, (0.2, 0.1, 0.3), g)
    both = (dc & ds).float().mean().item()
    timbre_only = (dc & ~ds).float().mean().item()
    structure_only = (~dc & ds).float().mean().item()
    assert abs(both - 0.2) < 0.015 and abs(timbre_only - 0.1) < 0.015 and abs(structure_only - 0.3) < 0.015
    assert bool((c_out[dc] == -4.0).all()) and torch.equal(c_out[~dc], c[~dc])
    assert bool((s_out[ds] == -4.0).all()) and torch.equal(s_out[~ds], s[~ds])
    # MIDI scheme: timbre never dropped alone
    _, _, dc, ds = drop_conditions(c, s, (0.2, 0.0, 0.2), g)
    assert not bool((dc & ~ds).any())
    with pytest.raises(ValueError, match="drop rates"):
        drop_conditions(c, s, (0.6, 0.3, 0.3), g)


def test_combine_guidance_scripts():
    scripted = torch.jit.script(combine_guidance)
    v_full, v_partial, v_null = _preds()
    for mode in ("audio", "midi"):
        assert torch.allclose(
            scripted(v_full, v_partial, v_null, 1.7, 0.6, mode),
            combine_guidance(v_full, v_partial, v_null, 1.7, 0.6, mode),
        )
