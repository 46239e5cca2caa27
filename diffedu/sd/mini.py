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
   (diffedu.captions) and 10% empty captions for classifier-free guidance; the loss is the
   course's noise-prediction loss (3.5) on Stable Diffusion's "scaled linear" schedule.
The result is saved with `StableDiffusionPipeline.save_pretrained` under
data/checkpoints/mini-sd, with a model card (mini-sd.json).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

_verbosity = transformers_logging.get_verbosity()
transformers_logging.set_verbosity_error()  # importing SD's pipeline warns that torchvision is missing; only the (unused) safety checker needs it
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
transformers_logging.set_verbosity(_verbosity)

from diffedu.captions import EVAL_TEMPLATE, TEMPLATES, all_captions, caption
from diffedu.checkpoints import (
    CheckpointError, checkpoint_dir, hardware_description, read_model_card, record_sha256, verify_files, warn_if_unfinished,
    write_model_card,
)
from diffedu.data import load_mnist
from diffedu.latent_recipes import latent_scale_factor
from diffedu.recipes import data_record, stop_if_interrupted
from diffedu.losses import noise_prediction_loss
from diffedu.metrics import load_classifier, predict_labels
from diffedu.models.unet import count_parameters
from diffedu.models.vae import kl_to_standard_normal
from diffedu.schedules import NoiseSchedule, schedule_from_betas
from diffedu.train import TrainConfig, train

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
# Measured on the reference 2-core CPU: the VAE trains at ~135 images/s, the UNet + text
# encoder at ~330 latents/s in batches of 256 (bfloat16 autocast was 10x slower here).
VAE_TRAIN = TrainConfig(steps=1200, batch_size=64, lr=1e-3, warmup_steps=100, ema_decay=0.998, time_budget_minutes=12)
UNET_TRAIN = TrainConfig(steps=2200, batch_size=256, lr=2e-3, warmup_steps=100, ema_decay=0.998, time_budget_minutes=30)
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


def scaled_linear_schedule(num_steps: int = 1000) -> NoiseSchedule:
    """Stable Diffusion's noise schedule: beta_t = (linspace(sqrt(0.00085), sqrt(0.012), T)_t)^2."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, num_steps, dtype=torch.float64) ** 2
    return schedule_from_betas(betas, "scaled_linear")


def build_parts(tokenizer: CLIPTokenizer) -> tuple[AutoencoderKL, CLIPTextModel, UNet2DConditionModel]:
    """Freshly initialised VAE, text encoder and UNet (the same seed gives the same weights)."""
    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE_CONFIG)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **TEXT_CONFIG))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    return vae, text_encoder, unet


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
        noise = torch.randn(posterior.mean.shape, generator=generator).to(images.device)
        z = posterior.mean + posterior.std * noise  # eq. (4.2)
        reconstruction = vae.decode(z).sample
        squared_error = (reconstruction.float() - images).square().flatten(1).sum(1)  # (B,)
        kl = kl_to_standard_normal(posterior.mean.float(), posterior.logvar.float())  # (B,)
        return (squared_error + kl_weight * kl).mean()

    return loss_fn


def caption_table(tokenizer: CLIPTokenizer) -> torch.Tensor:
    """Token ids (1 + 10 * len(TEMPLATES), MAX_TOKENS): row 0 is the empty caption, row
    1 + 10 * template + digit the digit's caption with that template."""
    return tokenize(tokenizer, all_captions())  # "" first, then template by template, digits 0-9


def unet_loss_fn(schedule: NoiseSchedule, scaling_factor: float, captions: torch.Tensor, drop: float = CAPTION_DROP):
    """loss_fn(model, (mean, log_var, labels), generator): z ~ q(z | x) scaled by eq. (4.8), a
    random caption per digit (empty with probability `drop`), then the loss (3.5)."""

    def loss_fn(model: TextConditionedUNet, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        mean, log_var, labels = batch
        noise = torch.randn(mean.shape, generator=generator).to(mean.device)
        latents = scaling_factor * (mean + (0.5 * log_var).exp() * noise)  # (B, 4, 8, 8)
        template = torch.randint(len(TEMPLATES), labels.shape, generator=generator).to(labels.device)
        row = 1 + 10 * template + labels
        row = torch.where(torch.rand(labels.shape, generator=generator).to(labels.device) < drop, 0, row)
        token_ids = captions.to(labels.device)[row]  # (B, MAX_TOKENS)
        return noise_prediction_loss(model, latents, schedule, generator, token_ids, "min_snr", MIN_SNR_GAMMA)

    return loss_fn


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance (N, 4, 8, 8) of padded images (N, 1, 32, 32)."""
    device = next(vae.parameters()).device
    means, log_vars = [], []
    for start in range(0, len(images), batch_size):
        posterior = vae.encode(images[start: start + batch_size].to(device)).latent_dist
        means.append(posterior.mean.cpu())
        log_vars.append(posterior.logvar.cpu())
    return torch.cat(means), torch.cat(log_vars)


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


def train_mini_sd(run_dir: Path, out_folder: Path | None = None, vae_config: TrainConfig = VAE_TRAIN,
                  unet_config: TrainConfig = UNET_TRAIN) -> dict:
    """Both training stages (each resumable from its own folder in run_dir), then save the
    pipeline with save_pretrained and write the model card."""
    run_dir = Path(run_dir)
    tokenizer = load_tokenizer()
    vae, text_encoder, unet = build_parts(tokenizer)
    train_images = pad_to_32(load_mnist("train").images)
    print(f"stage 1: VAE, {count_parameters(vae) / 1e6:.2f}M parameters")
    vae_result = train(vae, vae_loss_fn(), (train_images,), vae_config, run_dir / "vae")
    stop_if_interrupted(vae_result)
    if not vae_result.finished:  # stage 2 needs the finished VAE: the next call resumes stage 1
        return {"name": NAME, "finished": False, "steps": vae_result.step, "stage": "vae",
                "train_config": vae_config.to_dict()}
    vae = vae_result.ema.cpu().eval()
    start = time.perf_counter()
    mean, log_var = encode_dataset(vae, train_images)
    encode_seconds = time.perf_counter() - start
    scaling_factor = latent_scale_factor(mean, log_var)
    vae.register_to_config(scaling_factor=scaling_factor)

    model = TextConditionedUNet(text_encoder, unet)
    print(f"stage 2: UNet {count_parameters(unet) / 1e6:.2f}M + text encoder {count_parameters(text_encoder) / 1e6:.2f}M "
          f"parameters; latent scaling factor {scaling_factor:.4f}")
    loss_fn = unet_loss_fn(scaled_linear_schedule(), scaling_factor, caption_table(tokenizer))
    unet_result = train(model, loss_fn, (mean, log_var, load_mnist("train").labels), unet_config, run_dir / "unet")
    stop_if_interrupted(unet_result)
    model = unet_result.ema.cpu().eval()

    folder = Path(out_folder) if out_folder is not None else run_dir
    pipe = make_pipeline(vae, model.text_encoder, model.unet, tokenizer)
    save_pipeline(pipe, folder / NAME)
    adherence = prompt_adherence(pipe) if unet_result.finished else {}
    if adherence:
        print(f"prompt adherence (guidance 3, 20 steps): {adherence['per_digit']}, mean {adherence['mean']:.3f}")
    card = {
        "name": NAME, "command": "python -m diffedu train mini-sd", "steps": unet_result.step,
        "finished": unet_result.finished, "train_config": unet_config.to_dict(),
        "wall_time_minutes": round((vae_result.elapsed_seconds + unet_result.elapsed_seconds) / 60, 2),
        "stages": {
            "vae": {"train_config": vae_config.to_dict(), "steps": vae_result.step, "finished": vae_result.finished,
                    "wall_time_minutes": round(vae_result.elapsed_seconds / 60, 2), "kl_weight": VAE_KL_WEIGHT},
            "unet_and_text_encoder": {"train_config": unet_config.to_dict(), "steps": unet_result.step,
                                      "finished": unet_result.finished,
                                      "wall_time_minutes": round(unet_result.elapsed_seconds / 60, 2),
                                      "caption_drop": CAPTION_DROP, "min_snr_gamma": MIN_SNR_GAMMA},
        },
        "encode_seconds": round(encode_seconds, 1), "latent_scaling_factor": round(scaling_factor, 5),
        "parameters": {"vae": count_parameters(vae), "text_encoder": count_parameters(model.text_encoder),
                       "unet": count_parameters(model.unet)},
        "prompt_adherence": adherence, "hardware": hardware_description(), "trained_on": time.strftime("%Y-%m-%d"),
        "data": data_record(),
        "notes": "EMA weights of both stages; MNIST padded to 32 x 32; captions from diffedu.captions.",
    }
    files = sorted(str(p.relative_to(folder)) for p in (folder / NAME).rglob("*") if p.is_file())
    card["folder_bytes"] = sum((folder / f).stat().st_size for f in files)
    record_sha256(card, folder, files)
    write_model_card(NAME, card, folder)
    return card


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


@torch.no_grad()
def vae_reconstruction_metrics(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 256) -> dict:
    """Mean PSNR (4.6) and SSIM (4.7) of decode(posterior mean) for MNIST images (N, 1, 28, 28),
    padded to 32 x 32 for the VAE and cropped back for the metrics."""
    from diffedu.metrics import psnr, ssim

    device = next(vae.parameters()).device
    parts = []
    for start in range(0, len(images), batch_size):
        batch = pad_to_32(images[start: start + batch_size]).to(device)
        parts.append(crop_to_28(vae.decode(vae.encode(batch).latent_dist.mean).sample.clamp(-1, 1)).float().cpu())
    reconstructions = torch.cat(parts)
    return {"n": len(images), "psnr_db": round(psnr(reconstructions, images).mean().item(), 3),
            "ssim": round(ssim(reconstructions, images).mean().item(), 4)}


def evaluate_mini_sd(folder: Path | None = None) -> dict:
    """Re-measure the shipped pipeline into its model card: VAE reconstructions of the 10,000
    test digits, prompt adherence (100 images per digit, guidance 3, 20 steps) and the time
    for 64 images at 20 steps."""
    pipe = load_mini_sd(folder=folder)
    metrics = {"vae_reconstruction": vae_reconstruction_metrics(pipe.vae, load_mnist("test").images)}
    metrics["prompt_adherence"] = prompt_adherence(pipe)
    prompts = [caption(d % 10, EVAL_TEMPLATE) for d in range(64)]
    start = time.perf_counter()
    pipe(prompts, num_inference_steps=20, guidance_scale=3.0, generator=torch.Generator().manual_seed(0), output_type="pt")
    metrics["seconds_64_images_20_steps"] = round(time.perf_counter() - start, 2)
    metrics.update(threads=torch.get_num_threads(), measured_with=f"python -m diffedu evaluate {NAME}",
                   hardware=hardware_description())
    card = read_model_card(NAME, folder)
    card["metrics"] = metrics
    card["evaluated_on"] = time.strftime("%Y-%m-%d")
    write_model_card(NAME, card, folder)
    print(json.dumps(metrics, indent=2))
    return metrics


def mini_sd_folder(folder: Path | None = None) -> Path:
    """The saved pipeline's folder, data/checkpoints/mini-sd, with an error that says what to do if it is missing."""
    path = (Path(folder) if folder is not None else checkpoint_dir()) / NAME
    if not (path / "model_index.json").is_file():
        raise CheckpointError(f"no mini Stable Diffusion at {path}. The course ships it in data/checkpoints/: restore it "
                              f"with `git checkout -- data/checkpoints`, or train it with `python -m diffedu train {NAME}` "
                              "(about 45 minutes on a 2-core CPU).")
    return path


def load_mini_sd(device: torch.device | str = "cpu", folder: Path | None = None) -> StableDiffusionPipeline:
    """The shipped mini Stable Diffusion, loaded with StableDiffusionPipeline.from_pretrained
    from disk only (no network), on `device`."""
    path = mini_sd_folder(folder)
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
