import pytest
import torch

from after.diffusion.flow import euler_step, flow_loss, interpolate, sample_time, time_grid, velocity_target


def test_interpolate_endpoints_and_midpoint():
    x0, x1 = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    assert torch.equal(interpolate(x0, x1, torch.zeros(3)), x0)
    assert torch.allclose(interpolate(x0, x1, torch.ones(3)), x1)
    t = torch.tensor([0.0, 0.5, 1.0])
    mixed = interpolate(x0, x1, t)
    assert torch.allclose(mixed[1], 0.5 * (x0[1] + x1[1]))
    assert torch.allclose(mixed[2], x1[2])


def test_euler_with_exact_velocity_transports_noise_to_data_in_one_step():
    x0, x1 = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    v = velocity_target(x0, x1)
    grid = time_grid(1)
    assert torch.allclose(euler_step(x0, v, float(grid[0]), float(grid[1])), x1, atol=1e-6)
    # and along any grid, since the path is straight
    x = x0
    grid = time_grid(5, "cosine").tolist()
    for i in range(5):
        x = euler_step(x, v, grid[i], grid[i + 1])
    assert torch.allclose(x, x1, atol=1e-5)


def test_velocity_is_derivative_of_path():
    x0, x1 = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    t, dt = torch.full((2,), 0.3), 1e-3
    numeric = (interpolate(x0, x1, t + dt) - interpolate(x0, x1, t)) / dt
    assert torch.allclose(numeric, velocity_target(x0, x1), atol=1e-2)
    assert flow_loss(velocity_target(x0, x1), x1 - x0).item() == 0.0


@pytest.mark.parametrize("schedule", ["uniform", "cosine"])
def test_time_grid_is_increasing_from_noise_to_data(schedule):
    grid = time_grid(7, schedule)
    assert grid[0] == 0.0 and grid[-1] == 1.0 and grid.numel() == 8
    assert bool((grid[1:] > grid[:-1]).all())


def test_sample_time_range_and_schedules():
    g = torch.Generator().manual_seed(0)
    for schedule in ("uniform", "logit_normal"):
        t = sample_time(20000, g, schedule)
        assert t.min() >= 0.0 and t.max() <= 1.0
    uniform = sample_time(20000, g, "uniform")
    assert abs(uniform.mean().item() - 0.5) < 0.02 and abs(uniform.var().item() - 1 / 12) < 0.01
    logit = sample_time(20000, g, "logit_normal")
    assert logit.var().item() < uniform.var().item()  # concentrated around the middle
    with pytest.raises(ValueError, match="schedule"):
        sample_time(2, g, "bogus")
