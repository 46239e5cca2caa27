"""The training objective: predict the noise (Ho et al. 2020, Algorithm 1), eq. (2.9),
optionally weighted per timestep (Min-SNR, Hang et al. 2023), eq. (3.5), with labels dropped
at random for classifier-free guidance (chapter 03)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from diffedu.course.device import randn
from diffedu.schedules import NoiseSchedule, make_schedule, q_sample

WEIGHTINGS = ("none", "min_snr")


def timestep_weights(schedule: NoiseSchedule, k: torch.Tensor, weighting: str = "none", min_snr_gamma: float = 5.0) -> torch.Tensor:
    """Per-sample loss weights (B,) for code timesteps k (B,), eq. (3.5).

    "none":    1 for every timestep (Ho et al.'s L_simple).
    "min_snr": min(SNR, gamma) / SNR: nearly clean steps (huge SNR), where predicting
               the noise is hard but matters little for the picture, count less; this
               balances the timesteps and speeds training up (Hang et al. 2023).
    """
    if weighting == "none":
        return torch.ones(k.shape[0], device=k.device)
    if weighting == "min_snr":
        snr = schedule.snr.to(k.device)[k]
        return snr.clamp(max=min_snr_gamma) / snr
    raise ValueError(f"unknown loss weighting {weighting!r}: choose one of {', '.join(WEIGHTINGS)}")


def noise_prediction_loss(
    model,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
    labels: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    weighting: str = "none",
    min_snr_gamma: float = 5.0,
) -> torch.Tensor:
    """L_simple = E_{t, x_0, eps} (1/d) || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2,
    eq. (2.9): the squared error averaged over the d coordinates of a sample.

    One Monte-Carlo estimate: the code timestep k ~ Uniform{0..T-1} (the paper's t = k + 1) and
    eps ~ N(0, I) per sample, both drawn from the CPU `generator`.

    Args:
        model: eps_theta(x_t, t), or eps_theta(x_t, t, labels) when labels are given.
        x0: a batch of clean data (B, ...), on the model's device.
        schedule: the noise schedule.
        labels: optional class labels (B,) for a conditional model, or a tuple of conditions
            (e.g. token ids and a ControlNet's image), passed to the model in that order.
        weighting: "none" (L_simple) or "min_snr" (eq. 3.5).
    Returns:
        the (weighted) mean squared error, a scalar tensor.
    """
    k = torch.randint(0, schedule.num_train_timesteps, (x0.shape[0],), generator=generator).to(x0.device)  # (B,) code timesteps
    noise = randn(x0.shape, generator, x0.device)  # eps ~ N(0, I)
    x_t = q_sample(x0, k, noise, schedule)
    conditions = () if labels is None else labels if isinstance(labels, tuple) else (labels,)
    noise_pred = model(x_t, k, *conditions)
    per_sample = (noise_pred.float() - noise).pow(2).flatten(1).mean(1)  # (B,)
    return (timestep_weights(schedule, k, weighting, min_snr_gamma) * per_sample).mean()


@dataclass
class DiffusionSettings:
    """What a diffusion model learns besides its network's shape and its optimiser (chapter 03)."""

    schedule: str = "cosine"  # noise schedule (chapter 01)
    num_train_timesteps: int = 1000  # T
    weighting: str = "min_snr"  # loss weighting, eq. (3.5)
    min_snr_gamma: float = 5.0
    label_drop: float = 0.1  # fraction of labels replaced by the null class, for guidance

    def noise_schedule(self) -> NoiseSchedule:
        return make_schedule(self.schedule, self.num_train_timesteps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DiffusionSettings":
        """The settings a checkpoint recorded (checkpoints before 2026-12 say "num_steps" for T)."""
        values = dict(values)
        if "num_steps" in values:
            values["num_train_timesteps"] = values.pop("num_steps")
        return cls(**values)


def diffusion_loss_fn(schedule: NoiseSchedule, settings: DiffusionSettings):
    """loss_fn(model, (images, labels), generator) for `diffedu.train.train`: eq. (3.5), with
    each label replaced by the null class with probability settings.label_drop."""

    def loss_fn(model, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        images, labels = batch
        if model.null_class is not None:
            drop = torch.rand(labels.shape[0], generator=generator).to(labels.device) < settings.label_drop
            labels = torch.where(drop, torch.full_like(labels, model.null_class), labels)
        else:
            labels = None
        return noise_prediction_loss(
            model, images, schedule, generator, labels=labels, weighting=settings.weighting, min_snr_gamma=settings.min_snr_gamma
        )

    return loss_fn
