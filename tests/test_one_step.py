"""One-step models (chapter 08, sections 7-8): the consistency parametrisation's boundary condition,
MeanFlow's target and its JVP against a hand computation on a linear model, one call counted as one,
and sampling that does not depend on the batch size."""

import pytest
import torch

from diffedu.consistency import consistency_distillation_loss_fn, consistency_function, grid_times, pseudo_huber
from diffedu.generate import generate, model_calls
from diffedu.meanflow import MeanFlowSettings, interval_times, jump, meanflow_loss_fn, meanflow_target
from diffedu.models.unet import UNet, UNetConfig

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attention_heads=2, groups=4, patch_size=2)


def tiny_unet(seed: int = 0, interval: bool = False) -> UNet:
    torch.manual_seed(seed)
    model = UNet(UNetConfig(**{**TINY.to_dict(), "interval_input": interval})).eval()
    with torch.no_grad():  # the output layer (and the interval embedding's) start at zero: give them weights
        model.out_conv.weight.normal_(0, 0.1)
        if interval:
            model.interval_mlp[-1].weight.normal_(0, 0.1)
    return model


class CallCounter(torch.nn.Module):
    """A model that counts its forward calls and the images they carried."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls, self.images = model, 0, 0
        self.config, self.null_class = model.config, model.null_class

    def forward(self, x, time_input, labels=None, **inputs):
        self.calls += 1
        self.images += x.shape[0]
        return self.model(x, time_input, labels, **inputs)


def test_consistency_function_meets_the_boundary_condition_exactly():
    g = torch.Generator().manual_seed(0)
    x, network_output = torch.randn(4, 1, 28, 28, generator=g), 1e6 * torch.randn(4, 1, 28, 28, generator=g)
    assert torch.equal(consistency_function(network_output, x, 0.0), x)  # f(x, 0) = x, whatever F says
    t = torch.tensor([0.0, 0.3, 0.0, 1.0])
    f = consistency_function(network_output, x, t)
    assert torch.equal(f[0], x[0]) and torch.equal(f[2], x[2])
    assert torch.allclose(f[1], x[1] - 0.3 * network_output[1])  # elsewhere c_skip = 1, c_out = -t (8.14)
    model = tiny_unet()  # and through the network: the real F at t = 0 changes nothing
    output = model(x, torch.zeros(4), torch.arange(4))
    assert output.abs().max() > 0 and torch.equal(consistency_function(output, x, 0.0), x)


def test_consistency_distillation_target_at_the_first_grid_step_is_the_teachers_step_exactly():
    """At t' = 0 the target f(x_hat_0, 0) is x_hat_0 itself: with a student whose f is that point, the loss is 0."""
    teacher = tiny_unet(1)
    x0, labels = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    loss_fn = consistency_distillation_loss_fn(teacher, steps=1, guidance=1.0, huber_c=0.03)

    class Teacher1Step(torch.nn.Module):  # F = the teacher's velocity: f = x_t - t v = one Euler step to 0
        def __init__(self):
            super().__init__()
            self.null_class = teacher.null_class

        def forward(self, x, time_input, labels):
            return teacher(x, time_input, labels)

    loss = loss_fn(Teacher1Step(), [x0, labels], torch.Generator().manual_seed(0))
    assert loss.abs() < 1e-6
    student = tiny_unet(2)  # another student: positive loss, gradients only through the online branch
    loss = loss_fn(student, [x0, labels], torch.Generator().manual_seed(0))
    loss.backward()
    assert loss > 0 and student.out_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_pseudo_huber_is_quadratic_near_zero_and_linear_far_away():
    a = torch.zeros(2, 1, 2, 2)
    b = torch.stack([torch.full((1, 2, 2), 1e-4), torch.full((1, 2, 2), 10.0)])
    d = pseudo_huber(a, b, c=0.03)
    assert torch.allclose(d[0], torch.tensor(1e-8 / (2 * 0.03)), rtol=1e-3)  # ~ squared error / 2c
    assert torch.allclose(d[1], torch.tensor(10.0 - 0.03), rtol=1e-4)  # ~ |a - b|
    t, t_next = grid_times(16, torch.Generator().manual_seed(0), 1000)
    assert torch.allclose(t - t_next, torch.full((1000,), 1 / 16)) and t_next.min() == 0 and t.max() == 1


def test_meanflow_target_matches_a_hand_computation_on_a_linear_model():
    """u(z, r, t) = A z + b t + c r: du/dt along the path = A v + b (the JVP with tangent (v, 0, 1)),
    so the target of (8.20)-(8.22) is v - (t - r)(A v + b)."""
    g = torch.Generator().manual_seed(0)
    dim, batch = 5, 3
    A, b, c = torch.randn(dim, dim, generator=g), torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    weight = A.clone().requires_grad_(True)

    def u_fn(z, r, t):
        return z @ weight.T + t[:, None] * b + r[:, None] * c

    z, v = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    r, t = torch.tensor([0.0, 0.2, 0.5]), torch.tensor([1.0, 0.7, 0.5])
    u, target = meanflow_target(u_fn, z, r, t, v)
    by_hand = v - (t - r)[:, None] * (v @ A.T + b)
    assert torch.allclose(target, by_hand, atol=1e-6)
    assert torch.allclose(target[2], v[2])  # r = t: the target is the velocity itself (flow matching)
    assert torch.allclose(u, z @ A.T + t[:, None] * b + r[:, None] * c, atol=1e-6)
    assert u.requires_grad and not target.requires_grad  # the gradient goes through u only (the sg of 8.22)


def test_meanflow_jvp_through_the_unet_matches_finite_differences():
    model = tiny_unet(3, interval=True).double()
    labels = torch.arange(2)

    def u_fn(z, r, t):
        return model(z, t * 1000, labels, interval_input=(t - r) * 1000)

    g = torch.Generator().manual_seed(1)
    z, v = torch.randn(2, 1, 28, 28, generator=g, dtype=torch.float64), torch.randn(2, 1, 28, 28, generator=g, dtype=torch.float64)
    r, t = torch.tensor([0.1, 0.3], dtype=torch.float64), torch.tensor([0.9, 0.6], dtype=torch.float64)
    u, target = meanflow_target(u_fn, z, r, t, v)
    h = 1e-5
    with torch.no_grad():
        du_dt = (u_fn(z + h * v, r, t + h) - u_fn(z - h * v, r, t - h)) / (2 * h)
    expected = v - (t - r)[:, None, None, None] * du_dt
    assert torch.allclose(target, expected, atol=1e-6 * expected.abs().max())


def test_meanflow_loss_runs_and_draws_intervals_as_set():
    settings = MeanFlowSettings(interval_fraction=0.5)
    r, t = interval_times(4000, settings, torch.Generator().manual_seed(0))
    assert (r <= t).all() and 0.45 < (r < t).float().mean() < 0.55
    for fraction in (0.0, 0.5, 1.0):  # all r = t, both kinds, all r < t (all through the JVP): the gradient reaches theta
        model = tiny_unet(4, interval=True).train()
        loss_fn = meanflow_loss_fn(MeanFlowSettings(interval_fraction=fraction))
        loss = loss_fn(model, [torch.randn(8, 1, 28, 28), torch.arange(8)], torch.Generator().manual_seed(0))
        loss.backward()
        assert loss > 0 and model.out_conv.weight.grad.abs().sum() > 0


def test_interval_input_starts_as_the_flow_it_was_copied_from():
    flow = tiny_unet(5)
    meanflow = UNet(UNetConfig(**{**TINY.to_dict(), "interval_input": True})).eval()
    meanflow.load_state_dict(flow.state_dict(), strict=False)
    x, time_input, labels = torch.randn(3, 1, 28, 28), torch.tensor([100.0, 500.0, 900.0]), torch.arange(3)
    for interval in (None, torch.zeros(3), torch.tensor([50.0, 400.0, 900.0])):
        assert torch.allclose(meanflow(x, time_input, labels, interval_input=interval), flow(x, time_input, labels))
    with pytest.raises(ValueError, match="no interval input"):
        flow(x, time_input, labels, interval_input=torch.zeros(3))
    assert torch.allclose(jump(x, torch.ones_like(x), 0.25, 1.0), x - 0.75)


@pytest.mark.parametrize("sampler, interval", [("consistency", False), ("meanflow", True)])
@pytest.mark.parametrize("steps", [1, 2])
def test_one_call_per_step_counted(sampler, interval, steps):
    model = CallCounter(tiny_unet(6, interval=interval))
    generate(model, 7, sampler, steps, labels=torch.arange(7), batch_size=7, progress=False)
    assert model.calls == steps and model.images == 7 * steps  # one batched call per step: `steps` calls per image
    assert model_calls(sampler, steps) == steps


@pytest.mark.parametrize("sampler, interval", [("consistency", False), ("meanflow", True)])
def test_sampling_does_not_depend_on_the_batch_size(sampler, interval):
    model = tiny_unet(7, interval=interval)
    labels = torch.arange(10) % 10
    whole = generate(model, 10, sampler, 2, labels=labels, seed=3, batch_size=10, progress=False)
    for batch_size in (1, 3, 4):
        assert torch.allclose(generate(model, 10, sampler, 2, labels=labels, seed=3, batch_size=batch_size, progress=False),
                              whole, atol=1e-6)


def test_time_embedding_cutoff_drops_the_fast_frequencies_and_smooths_the_t_derivative():
    from diffedu.models.time_embedding import timestep_embedding

    t = torch.tensor([0.0, 250.0, 999.0])
    full, cut = timestep_embedding(t, 32), timestep_embedding(t, 32, max_frequency=0.02)
    freqs = 10_000 ** (-torch.arange(16) / 16)
    kept = (freqs <= 0.02).repeat(2)
    assert torch.equal(cut[:, kept], full[:, kept]) and (cut[:, ~kept] == 0).all() and kept.sum() == 18
    # d/dt of a random network through each embedding: the cutoff bounds it by the kept frequencies
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 1)
    slopes = []
    for cutoff in (None, 0.02):
        time = torch.linspace(0, 1000, 101, requires_grad=True)
        layer(timestep_embedding(time, 32, max_frequency=cutoff)).sum().backward()
        slopes.append(time.grad.abs().max().item())
    assert slopes[1] < slopes[0] / 10
    model = UNet(UNetConfig(**{**TINY.to_dict(), "max_time_frequency": 0.02, "num_classes": None}))  # the config reaches it
    assert torch.allclose(model.embed(t, None), model.time_mlp(timestep_embedding(t, 8, max_frequency=0.02)))
    assert not torch.allclose(model.embed(t, None), model.time_mlp(timestep_embedding(t, 8)))
