"""Editing a real image by running the sampler backwards (chapter 10): DDIM inversion.

DDIM (2.7) with eta = 0 is a deterministic map from x_T to x_0. Run backwards, it maps a real image
to the noise that DDIM turns back into (nearly) that image; sampling from that noise under another
prompt keeps what the noise encodes (position, thickness, slant) and redraws what the prompt says.

    x_{k'} = sqrt(alpha_bar_{k'}) pred_x0 + sqrt(1 - alpha_bar_{k'}) eps,  pred_x0 = (x_k - sqrt(1 - alpha_bar_k) eps) / sqrt(alpha_bar_k)
    with k' > k and eps = eps_theta(x_k, k'), eq. (10.9)

Exact inversion would need eps at x_{k'}, which is not known yet; eps_theta(x_k, k') is the
approximation every DDIM inversion makes (Diffusers' DDIMInverseScheduler does the same), good when
steps are small and the prediction changes slowly. Classifier-free guidance (5.2) with w > 1 makes
the prediction change fast, and the round trip drifts: inverting and regenerating with the source
prompt as the negative prompt (Miyake et al. 2023) makes (5.2) the plain conditional prediction for
the source prompt, whatever w, so the round trip is as good as at w = 1.

    ddim_inversion_states(model, x0, schedule, timesteps)  x_0 -> x_T over the reverse of a DDIM run's timesteps
    text_predictor(pipe, prompts, guidance, negative_prompts)  eps_theta(z_t, k) of mini-sd's UNet, guided by (5.2)
    encode_images / decode_latents                         mini-sd's VAE, (B, 1, 28, 28) in [-1, 1] <-> latents
    invert / regenerate                                    the two halves of an edit on mini-sd
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from diffedu.samplers import NoisePredictor, StepOutput, alpha_bar_at, ddim_states, ddim_timesteps, predict_noise, x0_from_eps


def ddim_inversion_step(x: torch.Tensor, k: int, k_next: int, eps: torch.Tensor, schedule) -> StepOutput:
    """One step of (10.9) from timestep k (-1: clean data, alpha_bar = 1) up to k_next > k."""
    if not -1 <= k < k_next:
        raise ValueError(f"inversion goes up in noise: need -1 <= k < k_next, got k = {k}, k_next = {k_next}")
    alpha_bar = alpha_bar_at(schedule, torch.full((x.shape[0],), k, device=x.device), x)
    alpha_bar_next = alpha_bar_at(schedule, torch.full((x.shape[0],), k_next, device=x.device), x)
    pred_x0 = x0_from_eps(x, eps, alpha_bar)
    return StepOutput(alpha_bar_next.sqrt() * pred_x0 + (1 - alpha_bar_next).sqrt() * eps, pred_x0, k)


def ddim_inversion_states(model: NoisePredictor, x0: torch.Tensor, schedule, timesteps: list[int]) -> Iterator[StepOutput]:
    """DDIM inversion, eq. (10.9): from clean x0 up through `timesteps` (a DDIM run's, decreasing, as
    ddim_states takes them), one step at a time; the last prev_sample is the x_T that ddim_states over
    the same timesteps maps back to about x0."""
    levels = [-1] + sorted(timesteps)
    x = x0
    for k, k_next in zip(levels, levels[1:]):
        step = ddim_inversion_step(x, k, k_next, predict_noise(model, x, k_next), schedule)
        yield step
        x = step.prev_sample


def text_states(pipe, prompts: list[str]) -> torch.Tensor:
    """CLIP's text states (B, L, D) of the prompts, as StableDiffusionPipeline computes them."""
    from diffedu.sd.mini import tokenize

    token_ids = tokenize(pipe.tokenizer, prompts).to(pipe.device)
    return pipe.text_encoder(token_ids)[0]


def text_predictor(pipe, prompts: list[str], guidance: float = 1.0, negative_prompts: list[str] | None = None):
    """eps_theta(z_t, k) for mini-sd's latents, guided by (5.2) towards `prompts` and away from
    `negative_prompts` (default: the empty prompt) with weight w = guidance; w = 1 is the conditional
    prediction alone (one pass)."""
    cond = text_states(pipe, prompts)  # (B, L, D)
    other = text_states(pipe, negative_prompts if negative_prompts is not None else [""] * len(prompts))

    def predict(z_t: torch.Tensor, time_input: torch.Tensor) -> torch.Tensor:
        if guidance == 1.0:
            return pipe.unet(z_t, time_input, encoder_hidden_states=cond).sample
        both = pipe.unet(torch.cat([z_t, z_t]), torch.cat([time_input, time_input]),
                         encoder_hidden_states=torch.cat([cond, other])).sample
        eps_cond, eps_other = both.chunk(2)
        return eps_other + guidance * (eps_cond - eps_other)  # eq. (5.2)

    return predict


def schedule_of(pipe):
    """mini-sd's noise schedule as a course NoiseSchedule (the betas its scheduler holds)."""
    from diffedu.schedules import schedule_from_betas

    return schedule_from_betas(pipe.scheduler.betas.double(), "scaled_linear")


@torch.no_grad()
def encode_images(pipe, images: torch.Tensor) -> torch.Tensor:
    """Digits (B, 1, 28, 28) in [-1, 1] -> mini-sd's scaled latents (B, 4, 8, 8): the posterior mean, eq. (4.8)."""
    from diffedu.sd.mini import pad_to_32

    return pipe.vae.encode(pad_to_32(images).to(pipe.device)).latent_dist.mean * pipe.vae.config.scaling_factor


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> digits (B, 1, 28, 28) in [-1, 1]."""
    from diffedu.sd.mini import crop_to_28

    return crop_to_28(pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample).clamp(-1, 1).cpu()


def edit_timesteps(schedule, steps: int, strength: float = 1.0) -> list[int]:
    """The timesteps of a `steps`-step DDIM run below strength * T: strength 1 inverts all the way to
    z_T, a smaller one stops earlier and keeps more of the image (as img2img's strength, chapter 05)."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    timesteps = [k for k in ddim_timesteps(schedule.num_train_timesteps, steps) if k < strength * schedule.num_train_timesteps]
    if not timesteps:
        raise ValueError(f"strength {strength} keeps none of the {steps} steps: raise it or take more steps")
    return timesteps


@torch.no_grad()
def invert(pipe, images: torch.Tensor, prompts: list[str], steps: int = 50, guidance: float = 1.0,
           negative_prompts: list[str] | None = None, strength: float = 1.0) -> torch.Tensor:
    """The noisy latents (B, 4, 8, 8) from which `regenerate` with the same arguments redraws `images`."""
    schedule = schedule_of(pipe)
    latents = encode_images(pipe, images)
    model = text_predictor(pipe, prompts, guidance, negative_prompts)
    for step in ddim_inversion_states(model, latents, schedule, edit_timesteps(schedule, steps, strength)):
        latents = step.prev_sample
    return latents


@torch.no_grad()
def regenerate(pipe, noise: torch.Tensor, prompts: list[str], steps: int = 50, guidance: float = 1.0,
               negative_prompts: list[str] | None = None, strength: float = 1.0) -> torch.Tensor:
    """DDIM (2.7) from the noisy latents `noise` under `prompts`, decoded: digits (B, 1, 28, 28) in [-1, 1]."""
    schedule = schedule_of(pipe)
    model = text_predictor(pipe, prompts, guidance, negative_prompts)
    latents = noise
    for step in ddim_states(model, noise, schedule, edit_timesteps(schedule, steps, strength)):
        latents = step.prev_sample
    return decode_latents(pipe, latents)
