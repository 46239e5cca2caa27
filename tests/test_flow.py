"""Flow matching (chapter 08): the path, its target and loss against hand computations, the
conversions between velocity, noise and v-prediction, Euler against diffusers'
FlowMatchEulerDiscreteScheduler, and the samplers' batch independence and step counts."""

import math

import pytest
import torch

from diffedu import flow
from diffedu.distill import distillation_loss_fn, student_times, two_step_target
from diffedu.models.unet import UNet, UNetConfig
from diffedu.samplers import ddim_step
from diffedu.schedules import make_schedule
from diffedu.toy import exact_velocity, make_toy_mixture

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attention_heads=2, groups=4, patch_size=2)


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    model = UNet(TINY).eval()
    with torch.no_grad():  # the output layer starts at zero: give it weights so that the velocity is not 0
        model.out_conv.weight.normal_(0, 0.1)
    return model


def test_path_and_its_velocity_are_eqs_8_1_and_8_2():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 1, 4, 4, generator=g), torch.randn(5, 1, 4, 4, generator=g)
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    x_t = flow.flow_path(x0, noise, t)
    assert torch.equal(x_t[0], x0[0]) and torch.equal(x_t[-1], noise[-1])
    assert torch.allclose(x_t[2], 0.5 * x0[2] + 0.5 * noise[2])
    h = 1e-3  # the derivative in t, by central differences, is eps - x_0 at every t
    derivative = (flow.flow_path(x0, noise, t.clamp(h, 1 - h) + h) - flow.flow_path(x0, noise, t.clamp(h, 1 - h) - h)) / (2 * h)
    assert torch.allclose(derivative, flow.conditional_velocity(x0, noise), atol=1e-3)


def test_flow_matching_loss_is_eq_8_3_computed_by_hand():
    x0 = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))

    def model(x_t, time_input):  # a fixed, non-trivial "network"
        return 0.5 * x_t + time_input.reshape(-1, 1, 1, 1) / 1000

    loss = flow.flow_matching_loss(model, x0, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # the same draws, in the same order: t, then eps
    t = torch.rand(6, generator=g)
    noise = torch.randn(6, 1, 4, 4, generator=g)
    by_hand = 0.0
    for i in range(6):
        x_t = (1 - t[i]) * x0[i] + t[i] * noise[i]
        by_hand += ((0.5 * x_t + t[i]) - (noise[i] - x0[i])).pow(2).mean() / 6
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_the_minimiser_of_8_3_is_the_marginal_velocity_8_4_on_the_mixture():
    """E[eps - x_0 | x_t = x] by Monte Carlo over x_0 (each x_0 weighted by p(x_t = x | x_0), and eps the
    noise that takes it to x) equals the exact marginal velocity."""
    mixture = make_toy_mixture()
    x0 = mixture.sample(200_000, torch.Generator().manual_seed(0))[0].double()
    for t in (0.3, 0.6, 0.9):
        for point in ([0.0, 0.0], [0.8, -0.3], [0.1, 0.9]):
            x = torch.tensor(point, dtype=torch.float64)
            noise = (x - (1 - t) * x0) / t  # (N, 2): the eps that sends each x_0 to x at time t
            weights = torch.softmax(-noise.square().sum(1) / 2, 0)  # p(x_t = x | x_0) ~ exp(-|eps|^2 / 2)
            monte_carlo = (weights[:, None] * (noise - x0)).sum(0)
            exact = exact_velocity(mixture, x[None], t)[0]
            assert torch.allclose(monte_carlo, exact, atol=0.02), (t, point, monte_carlo, exact)


def test_conversions_8_6_to_8_8():
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, 1, 3, 3, generator=g)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    x_t = flow.flow_path(x0, noise, t)
    velocity = flow.conditional_velocity(x0, noise)
    assert torch.allclose(flow.x0_from_velocity(x_t, velocity, t), x0, atol=1e-5)
    assert torch.allclose(flow.eps_from_velocity(x_t, velocity, t), noise, atol=1e-5)
    assert torch.allclose(flow.velocity_from_eps(x_t, noise, t), velocity, atol=1e-4)
    # (8.6): a VP x_t, divided by a + s, is the flow's x_t at t = s / (a + s)
    alpha_bar = torch.tensor([0.9, 0.5, 0.1, 0.01])
    x_vp = alpha_bar.sqrt().reshape(-1, 1, 1, 1) * x0 + (1 - alpha_bar).sqrt().reshape(-1, 1, 1, 1) * noise
    a_plus_s = (alpha_bar.sqrt() + (1 - alpha_bar).sqrt()).reshape(-1, 1, 1, 1)
    t_flow = flow.flow_time_from_alpha_bar(alpha_bar).float()
    assert torch.allclose(x_vp / a_plus_s, flow.flow_path(x0, noise, t_flow), atol=1e-6)
    # (8.8) and its inverse
    v = flow.v_prediction_from_eps(x_vp, noise, alpha_bar)
    assert torch.allclose(v, alpha_bar.sqrt().reshape(-1, 1, 1, 1) * noise - (1 - alpha_bar).sqrt().reshape(-1, 1, 1, 1) * x0, atol=1e-4)
    assert torch.allclose(flow.eps_from_v_prediction(x_vp, v, alpha_bar), noise, atol=1e-4)


def test_v_prediction_matches_diffusers_get_velocity():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    timesteps = torch.tensor([10, 500, 990])
    x_t = scheduler.add_noise(x0, noise, timesteps)
    ours = flow.v_prediction_from_eps(x_t, noise, scheduler.alphas_cumprod[timesteps])
    assert torch.allclose(ours, scheduler.get_velocity(x0, noise, timesteps), atol=1e-4)


def test_ddim_is_flow_euler_after_the_change_of_variables_8_6():
    """One DDIM step (eta = 0, no clipping) of an eps model equals one Euler step (8.5) of the same
    model read as a velocity (8.7), in the rescaled variables of (8.6)."""
    schedule = make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(4)
    x_t = torch.randn(2, 1, 4, 4, generator=g)
    eps = torch.randn(2, 1, 4, 4, generator=g)
    t, t_prev = 700, 400
    ddim = ddim_step(x_t, t, t_prev, eps, schedule, eta=0.0, clip_x0=None).prev_sample
    ab, ab_prev = schedule.alpha_bar[t].double(), schedule.alpha_bar[t_prev].double()
    scale = lambda alpha_bar: alpha_bar.sqrt() + (1 - alpha_bar).sqrt()  # noqa: E731
    time, time_prev = flow.flow_time_from_alpha_bar(ab).item(), flow.flow_time_from_alpha_bar(ab_prev).item()
    y = x_t.double() / scale(ab)
    y_next = flow.euler_step(y, time, time_prev, flow.velocity_from_eps(y, eps.double(), time))
    assert torch.allclose((y_next * scale(ab_prev)).float(), ddim, atol=1e-5)


def test_euler_matches_diffusers_flow_match_scheduler_with_and_without_shift():
    from diffusers import FlowMatchEulerDiscreteScheduler

    model, labels = tiny_unet(), torch.arange(4) % 10
    predictor = lambda x, time_input: model(x, time_input, labels)  # noqa: E731
    x_init = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    for shift in (1.0, 3.0):
        steps = 8
        ours = flow.flow_solve(predictor, x_init.clone(), flow.flow_times(steps, shift))
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        scheduler.set_timesteps(sigmas=torch.linspace(1, 0, steps + 1)[:-1].tolist())  # unshifted; the scheduler shifts
        assert torch.allclose(scheduler.sigmas.double(), flow.flow_times(steps, shift), atol=1e-6)
        x = x_init.clone()
        with torch.no_grad():
            for timestep in scheduler.timesteps:  # = sigma * 1000: the network's time input, as ours
                x = scheduler.step(predictor(x, timestep.expand(4)), timestep, x).prev_sample
        assert torch.allclose(ours, x, atol=1e-5), (shift, (ours - x).abs().max())


def test_shift_keeps_the_ends_and_moves_the_middle_towards_noise():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    shifted = flow.shift_times(t, 3.0)
    assert shifted[0] == 0 and shifted[-1] == 1 and (shifted[1:-1] > t[1:-1]).all()
    assert torch.equal(flow.shift_times(t, 1.0), t)
    assert flow.shift_times(torch.tensor(0.5), 3.0).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="shift must be positive"):
        flow.shift_times(t, 0.0)


def test_flow_times_explain_bad_input():
    with pytest.raises(ValueError, match="steps must be at least 1"):
        flow.flow_times(0)


def test_exact_flow_with_euler_draws_the_mixture():
    mixture = make_toy_mixture()
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    times = flow.flow_times(50).tolist()
    for t, t_next in zip(times[:-1], times[1:]):
        x = flow.euler_step(x, t, t_next, exact_velocity(mixture, x, t))
    distance_to_nearest_mean = torch.cdist(x, mixture.means).min(1).values
    assert (distance_to_nearest_mean < 0.6).float().mean() > 0.97


def test_distillation_target_is_two_teacher_euler_steps_8_11():
    teacher = lambda x, time_input: -x * (1 + time_input.reshape(-1, 1, 1, 1) / 1000)  # noqa: E731  v depends on x and t
    x_t = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(6))
    t, t_next = torch.tensor([1.0, 0.5, 0.25]), torch.tensor([0.75, 0.25, 0.0])
    target = two_step_target(teacher, x_t, t, t_next)
    for i in range(3):  # by hand, one sample at a time
        t_mid = (t[i] + t_next[i]) / 2
        x_mid = x_t[i] + (t_mid - t[i]) * (-x_t[i] * (1 + t[i]))
        x_next = x_mid + (t_next[i] - t_mid) * (-x_mid * (1 + t_mid))
        assert torch.allclose(target[i], (x_next - x_t[i]) / (t_next[i] - t[i]), atol=1e-6)


def test_student_times_lie_on_its_grid_and_the_loss_trains_only_the_student():
    t, t_next = student_times(4, torch.Generator().manual_seed(0), 1000)
    assert set((t * 4).round().int().tolist()) == {1, 2, 3, 4} and torch.allclose(t - t_next, torch.full_like(t, 0.25))
    teacher, student = tiny_unet(0), tiny_unet(1)
    loss = distillation_loss_fn(teacher, 4, guidance=2.0)(student, [torch.randn(3, 1, 28, 28), torch.arange(3)],
                                                          torch.Generator().manual_seed(0))
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 0
    assert all(p.grad is None for p in teacher.parameters()) and any(p.grad is not None for p in student.parameters())


def test_clipped_velocity_points_at_the_clipped_x0():
    g = torch.Generator().manual_seed(8)
    x_t, velocity = 2 * torch.randn(3, 1, 4, 4, generator=g), 3 * torch.randn(3, 1, 4, 4, generator=g)
    clipped = flow.clipped_velocity(x_t, velocity, 0.4, 1.0)
    x0 = flow.x0_from_velocity(x_t, clipped, 0.4)
    assert torch.allclose(x0, flow.x0_from_velocity(x_t, velocity, 0.4).clamp(-1, 1), atol=1e-5)
    assert torch.equal(flow.clipped_velocity(x_t, velocity, 0.4, None), velocity)
    assert torch.equal(flow.clipped_velocity(x_t, velocity, 0.0, 1.0), velocity)
