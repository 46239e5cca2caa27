"""Exercises of chapter 07 (the probability-flow ODE: Heun's step, another clock, and a flow solved by
hand). See diffedu/exercises/__init__.py for how checkers work."""

from __future__ import annotations

import math

import torch
from scipy.integrate import quad

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_number, expect_tensor, same
from diffedu.schedules import make_schedule
from diffedu.sde import ode_euler_step, probability_flow_sample

DATA_STD = 0.5  # the tiny model of 7.1 and 7.2 is the exact noise predictor for data ~ N(0, 0.5^2 I)


def _linear_schedule():
    return make_schedule("linear").to(dtype=torch.float64)


def _gaussian_model(schedule):
    """model(x, k) -> eps, exact for data N(0, DATA_STD^2 I); k an int code timestep or a tensor (B,)."""

    def model(x: torch.Tensor, k) -> torch.Tensor:
        alpha_bar = schedule.alpha_bar[torch.as_tensor(k)].double()
        if alpha_bar.ndim == 1:
            alpha_bar = alpha_bar.view(-1, *([1] * (x.ndim - 1)))  # (B, 1): one timestep per sample
        return (1 - alpha_bar).sqrt() * x.double() / (alpha_bar * DATA_STD**2 + 1 - alpha_bar)

    return model


def _points(seed: int) -> torch.Tensor:
    return torch.randn(6, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)  # (6, 2)


@exercise("7.1")
def check_heun_step(heun_step) -> None:
    """Exercise 7.1: one Heun step of the probability-flow ODE (7.7), eq. (7.8), checked against the library's
    `probability_flow_sample(..., method="heun")`."""
    schedule, x_t = _linear_schedule(), _points(1)
    model = _gaussian_model(schedule)
    k, k_next = 600, 400
    result = expect_tensor(heun_step(model, x_t, k, k_next, schedule), (6, 2), "x at k_next").double()
    eps_t = model(x_t, k)
    euler = ode_euler_step(x_t, k, k_next, eps_t, schedule)
    eps_end = model(euler, k_next)
    mistakes = [
        (euler, "that is Euler's step (DDIM): Heun evaluates the slope a second time, at the end of that Euler step"),
        (ode_euler_step(x_t, k, k_next, eps_end, schedule),
         "you used the slope at the end only: Heun averages the slopes at the start and at the end"),
        (ode_euler_step(x_t, k, k_next, eps_t + eps_end, schedule),
         "the two slopes are averaged, not added: each gets half the weight"),
        (ode_euler_step(x_t, k, k_next, 0.5 * (eps_t + model(euler, k)), schedule),
         "the second slope belongs to the end of the step: call the model at k_next, not at k"),
        (ode_euler_step(x_t, k, k_next, 0.5 * (eps_t + model(x_t, k_next)), schedule),
         "the second slope is taken at the point the Euler step reached, not at x_t"),
    ]
    for candidate, hint in mistakes:
        if same(result, candidate, atol=1e-8, rtol=1e-6):
            raise ExerciseError(hint)
    expect_close(result, ode_euler_step(x_t, k, k_next, 0.5 * (eps_t + eps_end), schedule),
                 "take an Euler step with the slope at x_t, read the slope again where it lands, and redo the step "
                 "from x_t with the average", atol=1e-8, rtol=1e-6,
                 formula="x_euler = ode_euler_step(x_t, k, k_next, eps_t, schedule); eps_end = model(x_euler, k_next); "
                         "return ode_euler_step(x_t, k, k_next, (eps_t + eps_end) / 2, schedule)")
    # the library's solver: 3 trailing steps 999 -> 666 -> 332 -> clean, the first and the last plain Euler
    x_start = _points(2)
    library = probability_flow_sample(model, (6, 2), schedule, 3, "heun", x_init=x_start, progress=False).samples.double()
    x = ode_euler_step(x_start, 999, 666, model(x_start, 999), schedule)
    x = heun_step(model, x, 666, 332, schedule).double()
    x = ode_euler_step(x, 332, -1, model(x, 332), schedule)
    expect_close(x, library, "your step agrees on one step but not inside the library's solver: does it use only its "
                 "arguments (model, x_t, k, k_next, schedule)?", atol=1e-5, rtol=1e-4)


def _u_step_expected(x_t, k, k_next, eps, schedule, score_factor=0.5, span=None, noise_std=None):
    beta, alpha_bar = schedule.betas[k].item(), schedule.alpha_bar[k].item()
    score = -eps / math.sqrt(1 - alpha_bar) if noise_std is None else -eps / noise_std
    span = k - k_next if span is None else span
    return x_t + span * (0.5 * beta * x_t + score_factor * beta * score)


@exercise("7.2")
def check_euler_step_in_u(euler_step_in_u) -> None:
    """Exercise 7.2: one Euler step of (7.6) in the clock u = (k + 1) / T, with the score from eps by (7.2)."""
    schedule = _linear_schedule()
    gen = torch.Generator().manual_seed(3)
    x_t, eps = torch.randn(6, 2, generator=gen, dtype=torch.float64), torch.randn(6, 2, generator=gen, dtype=torch.float64)
    k, k_next = 600, 550
    result = expect_tensor(euler_step_in_u(x_t, k, k_next, eps, schedule), (6, 2), "x at k_next").double()
    alpha_bar = schedule.alpha_bar[k].item()
    reject = [
        (_u_step_expected(x_t, k, k_next, eps, schedule, score_factor=1.0),
         "that is the drift of the reverse SDE (7.5); the ODE (7.6) has half its score term"),
        (_u_step_expected(x_t, k, k_next, eps, schedule, span=1),
         "a jump from k to k_next spans k - k_next timesteps, and beta(u) du is beta_t for each of them"),
        (_u_step_expected(x_t, k, k_next, eps, schedule, span=k_next - k),
         "mind the direction: u decreases from k to k_next, and -1/2 beta (x + score) is the slope in u"),
        (_u_step_expected(x_t, k, k_next, eps, schedule, noise_std=1 - alpha_bar),
         "the score divides eps by the noise's standard deviation sqrt(1 - alpha_bar_t), eq. (7.2), not its variance"),
        (_u_step_expected(x_t, k, k_next, -eps, schedule),
         "check the score's sign: it points against the noise, score = -eps / sqrt(1 - alpha_bar_t)"),
    ]
    for candidate, hint in reject:
        if same(result, candidate, atol=1e-9, rtol=1e-7):
            raise ExerciseError(hint)
    expected = _u_step_expected(x_t, k, k_next, eps, schedule)
    expect_close(result, expected, "one Euler step of (7.6) at x_t: u moves by -(k - k_next) / T, and beta(u) is T beta_t, so the "
                 "step's beta(u) du is (k - k_next) beta_t", atol=1e-9, rtol=1e-7,
                 formula="x_t + 0.5 * beta_t * (k - k_next) * (x_t + score), score = -eps / sqrt(1 - alpha_bar_t)")
    last = euler_step_in_u(x_t, 40, -1, eps, schedule)  # the last step, to clean data: 41 timesteps
    expect_close(expect_tensor(last, (6, 2), "x at k_next = -1").double(), _u_step_expected(x_t, 40, -1, eps, schedule),
                 "the last step goes to k_next = -1 (clean data, u = 0): it spans k + 1 timesteps", atol=1e-9, rtol=1e-7)


def clock_ratio(num_points: int = 2000, steps: int = 20) -> float:
    """Exercise 7.3's measurement: mean distance to the exact ODE's end point of Euler in u over DDIM's
    (Euler in sigma), both on `steps` trailing timesteps of the linear schedule, on the exact mixture."""
    from diffedu.course.device import randn
    from diffedu.samplers import ddim_timesteps
    from diffedu.toy import exact_noise_predictor, make_toy_mixture

    schedule = _linear_schedule()
    model = exact_noise_predictor(make_toy_mixture(), schedule)
    x_start = randn((num_points, 2), torch.Generator().manual_seed(6)).double()
    reference = probability_flow_sample(model, (num_points, 2), schedule, 200, "heun", spacing="karras", x_init=x_start,
                                        progress=False).samples
    timesteps = ddim_timesteps(schedule.num_train_timesteps, steps, "trailing")
    x_u, x_sigma = x_start.clone(), x_start.clone()
    for k, k_next in zip(timesteps, timesteps[1:] + [-1]):
        batch_t = torch.full((num_points,), k)
        x_u = _u_step_expected(x_u, k, k_next, model(x_u, batch_t), schedule)
        x_sigma = ode_euler_step(x_sigma, k, k_next, model(x_sigma, batch_t), schedule)
    distance_u = (x_u - reference).norm(dim=1).mean().item()
    distance_sigma = (x_sigma - reference).norm(dim=1).mean().item()
    return distance_u / distance_sigma


_MEASURED = {}


@exercise("7.3")
def check_clock_ratio(answer) -> None:
    """Exercise 7.3: distance(Euler in u) / distance(Euler in sigma = DDIM) at 20 steps, measured."""
    answer = expect_number(answer, "the ratio of the two mean distances")
    if "ratio" not in _MEASURED:
        _MEASURED["ratio"] = clock_ratio()
    expected = _MEASURED["ratio"]
    if abs(answer - expected) <= 0.1 * expected:  # the learner's points and seeds differ from the checker's
        return
    if abs(1 / answer - expected) <= 0.1 * expected:
        raise ExerciseError("that is the ratio the other way round: Euler in u on top, DDIM below")
    if abs(answer - 1) < 0.02:
        raise ExerciseError("a ratio of 1: did both runs take the same step? One uses your euler_step_in_u, the other "
                            "ode_euler_step (DDIM)")
    raise ExerciseError("not what the checker measures. Both runs start from the same x_T, take 20 trailing steps "
                        "(the last to k_next = -1), and are compared with `reference` by the mean distance "
                        "(x - reference).norm(dim=1).mean()")


def _flow_factor(s: float, sigma_start: float) -> float:
    """x_bar(0) / x_bar(sigma_start) for d x_bar / d sigma = sigma x_bar / (s^2 + sigma^2), by quadrature:
    log x_bar changes by the integral of sigma / (s^2 + sigma^2) over sigma."""
    integral, _ = quad(lambda sigma: sigma / (s**2 + sigma**2), 0.0, sigma_start)
    return math.exp(-integral)


@exercise("7.4")
def check_flow_factor(answer) -> None:
    """Exercise 7.4: d x_bar / d sigma = sigma x_bar / (s^2 + sigma^2) from sigma = 2 to 0, s = 0.5."""
    answer = expect_number(answer, "the factor")
    s, sigma_start = 0.5, 2.0
    expected = _flow_factor(s, sigma_start)
    if abs(answer - expected) <= 3e-3:  # two or three figures, rounded by hand, are fine
        return
    if abs(answer - 1 / expected) < 3e-3:
        raise ExerciseError("that is the factor from sigma = 0 up to sigma = 2; the flow runs the other way, towards the data")
    if abs(answer - s / sigma_start) < 3e-3:
        raise ExerciseError("s / sigma is the answer for sigma much larger than s; solve the equation exactly")
    if abs(answer - expected**2) < 3e-3 or abs(answer - 1 / expected**2) < 3e-3:
        raise ExerciseError("the integral of sigma / (s^2 + sigma^2) is (1/2) log(s^2 + sigma^2): mind the 1/2")
    raise ExerciseError("separate the variables: put everything with x_bar on one side and everything with sigma on the "
                        "other, and integrate both",
                        formula="d log x_bar = sigma d sigma / (s^2 + sigma^2) = d (1/2) log(s^2 + sigma^2)")
