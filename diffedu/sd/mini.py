"""Mini Stable Diffusion (chapter 05): a text-to-digit model made of the real Diffusers and
Transformers classes, small enough to train on a laptop CPU.

    prompt ──CLIPTokenizer──> token ids (B, 16) ──CLIPTextModel──> text states (B, 16, 64)
    x_T (B, 4, 8, 8) ──UNet2DConditionModel, cross-attending to the text states, + scheduler──> z_0
    z_0 / scaling_factor ──AutoencoderKL decoder──> image (B, 1, 32, 32)

Stable Diffusion v1.5 is the same five classes at (B, 77, 768) text states, (B, 4, 64, 64)
latents and (B, 3, 512, 512) images. MNIST digits are padded from 28 x 28 to 32 x 32 because
Stable Diffusion's pipeline wants sides divisible by 8.

`python -m diffedu train mini-sd` trains it in two stages, both with the course's resumable
loop (diffedu.train):
1. the VAE (AutoencoderKL) on MNIST, eq. (4.5) with a Gaussian reconstruction term;
2. the UNet and the text encoder together on the VAE's latents, with random captions
   (diffedu.course.captions) and 10% empty captions for classifier-free guidance; the loss is the
   course's noise-prediction loss (3.5) on Stable Diffusion's "scaled linear" schedule.
The result is saved with `StableDiffusionPipeline.save_pretrained` under
data/checkpoints/mini-sd, with a model card (mini-sd.json).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from diffedu.course.captions import EVAL_TEMPLATE, TEMPLATES, all_captions, caption
from diffedu.latents import scaled_latents
from diffedu.losses import noise_prediction_loss
from diffedu.metrics import load_classifier, predict_labels
from diffedu.models import build_seeded
from diffedu.models.checkpoints import CheckpointError, checkpoint_dir, read_model_card, verify_files, warn_if_unfinished
from diffedu.models.vae import kl_to_standard_normal, sample_posterior
from diffedu.schedules import NoiseSchedule, schedule_from_betas


@contextlib.contextmanager
def transformers_errors_only():
    """Transformers' log shows errors only inside the block, and whatever it showed before afterwards."""
    before = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(before)


with transformers_errors_only():  # importing SD's pipeline warns that torchvision is missing: only the unused safety checker needs it
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging

NAME = "mini-sd"
IMAGE_SIZE = 32  # MNIST padded from 28 (the pipeline needs multiples of 8)
MAX_TOKENS = 16  # prompt length in tokens, start and end included (Stable Diffusion: 77)
TOKENIZER_FOLDER = Path(__file__).resolve().parents[1] / "assets" / "clip_tokenizer"  # tools/build_clip_tokenizer.py

VAE_CONFIG = dict(  # 32 x 32 x 1 -> 8 x 8 x 4, as Stable Diffusion's 512 x 512 x 3 -> 64 x 64 x 4
    in_channels=1, out_channels=1, latent_channels=4, sample_size=IMAGE_SIZE,
    block_out_channels=(16, 32, 64), down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1, norm_num_groups=8,
)
TEXT_CONFIG = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                   max_position_embeddings=MAX_TOKENS, projection_dim=64)
UNET_CONFIG = dict(
    sample_size=IMAGE_SIZE // 4, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
    attention_head_dim=4, norm_num_groups=8,  # diffusers reads attention_head_dim as the number of heads here
)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                        prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                        timestep_spacing="trailing")
VAE_KL_WEIGHT = 0.01  # beta in eq. (4.5), per image, with the squared-error reconstruction term
CAPTION_DROP = 0.1  # share of empty captions, for classifier-free guidance
MIN_SNR_GAMMA = 5.0  # loss weighting (3.5)


def pad_to_32(images: torch.Tensor) -> torch.Tensor:
    """MNIST (B, 1, 28, 28) in [-1, 1] -> (B, 1, 32, 32), with 2 background pixels on every side."""
    return nn.functional.pad(images, (2, 2, 2, 2), value=-1.0)


def crop_to_28(images: torch.Tensor) -> torch.Tensor:
    """(B, C, 32, 32) -> (B, C, 28, 28), the centre, e.g. for the MNIST classifier."""
    return images[..., 2:30, 2:30]


def load_tokenizer(folder: Path = TOKENIZER_FOLDER) -> CLIPTokenizer:
    """CLIP's byte-pair tokenizer, pruned to the course's words (tools/build_clip_tokenizer.py)."""
    return CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)


def scaled_linear_schedule(num_train_timesteps: int = 1000) -> NoiseSchedule:
    """Stable Diffusion's noise schedule: beta_t = (linspace(sqrt(0.00085), sqrt(0.012), T)_t)^2."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return schedule_from_betas(betas, "scaled_linear")


def build_parts(tokenizer: CLIPTokenizer) -> tuple[AutoencoderKL, CLIPTextModel, UNet2DConditionModel]:
    """Freshly initialised VAE, text encoder and UNet: the same weights every time (seed 0), and the
    global random stream left alone."""
    def make():
        vae = AutoencoderKL(**VAE_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **TEXT_CONFIG))
        unet = UNet2DConditionModel(**UNET_CONFIG)
        return vae, text_encoder, unet

    return build_seeded(make)


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids (B, MAX_TOKENS), padded and truncated exactly as StableDiffusionPipeline does."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


class TextConditionedUNet(nn.Module):
    """The two parts trained together in stage 2, as one module for the training loop:
    eps_theta(z_t, t, prompt) = unet(z_t, t, text_encoder(token_ids))."""

    def __init__(self, text_encoder: CLIPTextModel, unet: UNet2DConditionModel):
        super().__init__()
        self.text_encoder = text_encoder
        self.unet = unet

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        text_states = self.text_encoder(token_ids).last_hidden_state  # (B, MAX_TOKENS, 64)
        return self.unet(latents, timesteps, encoder_hidden_states=text_states).sample  # (B, 4, 8, 8)


def vae_loss_fn(kl_weight: float = VAE_KL_WEIGHT):
    """loss_fn(vae, (images,), generator): squared error summed over pixels + kl_weight * KL, eq. (4.5)."""

    def loss_fn(vae: AutoencoderKL, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        (images,) = batch  # (B, 1, 32, 32)
        posterior = vae.encode(images).latent_dist
        z = sample_posterior(posterior.mean, posterior.logvar, generator)  # eq. (4.2)
        reconstruction = vae.decode(z).sample
        squared_error = (reconstruction.float() - images).square().flatten(1).sum(1)  # (B,)
        kl = kl_to_standard_normal(posterior.mean.float(), posterior.logvar.float())  # (B,)
        return (squared_error + kl_weight * kl).mean()

    return loss_fn


def caption_table(tokenizer: CLIPTokenizer) -> torch.Tensor:
    """Token ids (1 + 10 * len(TEMPLATES), MAX_TOKENS): row 0 is the empty caption, row
    1 + 10 * template + digit the digit's caption with that template."""
    return tokenize(tokenizer, all_captions())  # "" first, then template by template, digits 0-9


def caption_loss_fn(schedule: NoiseSchedule, scaling_factor: float, captions: torch.Tensor, drop: float = 0.0,
                    empty: torch.Tensor | None = None):
    """loss_fn(model, (mean, log_var, labels[, control]), generator): z ~ q(z | x) scaled by eq. (4.8),
    each digit's caption drawn from one of the templates in `captions` (templates, 10, MAX_TOKENS)
    and, with probability `drop`, the empty caption `empty` (MAX_TOKENS,); then the loss (3.5). A
    fourth tensor in the batch (a ControlNet's condition) goes to the model after the token ids."""

    def loss_fn(model: nn.Module, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        mean, log_var, labels, *control = batch
        latents = scaled_latents(mean, log_var, scaling_factor, generator)  # (B, 4, 8, 8), eqs. (4.2) and (4.8)
        template = torch.randint(captions.shape[0], labels.shape, generator=generator).to(labels.device)
        token_ids = captions.to(labels.device)[template, labels]  # (B, MAX_TOKENS)
        if drop > 0:
            dropped = (torch.rand(labels.shape, generator=generator) < drop).to(labels.device)
            token_ids = torch.where(dropped[:, None], empty.to(labels.device), token_ids)
        conditions = (token_ids, *(c.float() for c in control))
        return noise_prediction_loss(model, latents, schedule, generator, conditions, "min_snr", MIN_SNR_GAMMA)

    return loss_fn


def unet_loss_fn(schedule: NoiseSchedule, scaling_factor: float, captions: torch.Tensor, drop: float = CAPTION_DROP):
    """Stage 2's loss: caption_loss_fn with every template of caption_table(...) (`captions`), empty
    with probability `drop`."""
    return caption_loss_fn(schedule, scaling_factor, captions[1:].view(len(TEMPLATES), 10, -1), drop, captions[0])


def make_pipeline(vae, text_encoder, unet, tokenizer) -> StableDiffusionPipeline:
    """Assemble the trained parts into Diffusers' StableDiffusionPipeline (no safety checker:
    the model draws digits)."""
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**SCHEDULER_CONFIG), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_adherence(pipe: StableDiffusionPipeline, per_digit: int = 100, guidance: float = 3.0, steps: int = 20,
                     seed: int = 0, batch_size: int = 100) -> dict:
    """For each digit d, per_digit images of EVAL_TEMPLATE ("a handwritten d"); the share the
    MNIST classifier labels d. Returns {"per_digit": [10 shares], "mean": ..., "seconds": ...}."""
    classifier = load_classifier()
    shares, start = [], time.perf_counter()
    for digit in range(10):
        correct = 0
        for offset in range(0, per_digit, batch_size):
            count = min(batch_size, per_digit - offset)
            generator = torch.Generator().manual_seed(seed + 1000 * digit + offset)
            images = pipe([caption(digit, EVAL_TEMPLATE)] * count, num_inference_steps=steps, guidance_scale=guidance,
                          generator=generator, output_type="pt").images  # (count, 1, 32, 32) in [0, 1]
            correct += (predict_labels(classifier, crop_to_28(images * 2 - 1)) == digit).sum().item()
        shares.append(correct / per_digit)
    return {"per_digit": shares, "mean": sum(shares) / 10, "guidance": guidance, "steps": steps,
            "images": 10 * per_digit, "seconds": round(time.perf_counter() - start, 1)}


def save_pipeline(pipe: StableDiffusionPipeline, path: Path) -> None:
    """save_pretrained, in a form that transformers 4 reads as well as transformers 5."""
    pipe.save_pretrained(path, safe_serialization=True)
    make_readable_by_transformers_4(Path(path))


def make_readable_by_transformers_4(path: Path) -> None:
    """Two things transformers 5 writes that transformers 4 cannot read (tested by
    `./course.sh test-lowest`): the tokenizer as tokenizer.json alone (CLIPTokenizer then gets
    no vocabulary: add vocab.json and merges.txt), and the text encoder's weights without the
    "text_model." prefix (transformers 4 then starts from random weights: add it back;
    transformers 5 reads both). The tensors are unchanged."""
    for name in ("vocab.json", "merges.txt"):
        shutil.copy2(TOKENIZER_FOLDER / name, path / "tokenizer" / name)
    weights = path / "text_encoder" / "model.safetensors"
    state = load_file(weights)
    if not all(key.startswith("text_model.") for key in state):
        save_file({key if key.startswith("text_model.") else f"text_model.{key}": value for key, value in state.items()},
                  weights, metadata={"format": "pt"})


def pipeline_folder(folder: Path | None = None) -> Path:
    """The saved pipeline's folder, data/checkpoints/mini-sd, with an error that says what to do if it is missing."""
    path = (Path(folder) if folder is not None else checkpoint_dir()) / NAME
    if not (path / "model_index.json").is_file():
        raise CheckpointError(f"no mini Stable Diffusion at {path}. The course ships it in data/checkpoints/: restore it "
                              f"with `git checkout -- data/checkpoints`, or train it with `python -m diffedu train {NAME}` "
                              "(the shipped model card says how long that takes).")
    return path


def load_pipeline(device: torch.device | str = "cpu", folder: Path | None = None) -> StableDiffusionPipeline:
    """The shipped mini Stable Diffusion, loaded with StableDiffusionPipeline.from_pretrained
    from disk only (no network), on `device`."""
    path = pipeline_folder(folder)
    card = read_model_card(NAME, path.parent)
    verify_files(NAME, card, path.parent)
    warn_if_unfinished(NAME, card, path.parent)
    # loading takes a second: no "Loading pipeline components" / "Loading weights" bars, which
    # would stay frozen at 0% in a saved notebook
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True, safety_checker=None,
                                                       requires_safety_checker=False, low_cpu_mem_usage=False)
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
