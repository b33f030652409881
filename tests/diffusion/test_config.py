import dataclasses

import pytest
import torch

from after.config import from_dict, to_dict
from after.diffusion.config import PRESETS, DiffusionConfig, diffusion_preset
from after.diffusion.flow import flow_loss, interpolate, sample_time, velocity_target
from after.diffusion.guidance import drop_conditions
from after.diffusion.model import build_model
from after.errors import BadInputError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    config = diffusion_preset(name)
    assert from_dict(DiffusionConfig, to_dict(config)) == config


def test_bad_configs_are_refused_with_clear_messages():
    with pytest.raises(BadInputError, match="preset 'huge'"):
        diffusion_preset("huge")
    with pytest.raises(BadInputError, match="mode"):
        DiffusionConfig(mode="video")
    with pytest.raises(BadInputError, match="max_steps"):
        DiffusionConfig(n_steps=100)


@pytest.mark.parametrize("name", ["tiny", "tiny_midi"])
def test_tiny_presets_train_a_few_steps(name):
    """The zero-initialised (training default) tiny model learns: the flow loss falls on a fixed batch."""
    torch.manual_seed(0)
    config = dataclasses.replace(diffusion_preset(name), latent_dim=16)
    model = build_model(config)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(4, 16, 12, generator=g).cumsum(-1) * 0.3
    source = x1 if config.mode == "audio" else (torch.rand(4, 2, 128, 12, generator=g) > 0.95).float()
    x0 = torch.randn(4, 16, 12, generator=g)
    t = sample_time(4, g)
    params = [p for n, p in model.named_parameters() if not n.startswith("classifier")]
    opt = torch.optim.Adam(params, lr=2e-3)
    losses = []
    for _ in range(25):
        c = model.encode_timbre(x1)
        s = model.encode_structure(source)
        c, s, _, _ = drop_conditions(c, s, config.drop_rates, g)
        loss = flow_loss(model(interpolate(x0, x1, t), t, c, s), velocity_target(x0, x1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
