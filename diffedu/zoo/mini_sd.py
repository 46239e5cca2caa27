"""mini-sd: a text-to-digit Stable Diffusion pipeline made of the real Diffusers and Transformers
classes (chapter 05; the parts are in diffedu.sd.mini).

    python -m diffedu train mini-sd      two stages (its model card records how long each took)

1. the VAE (AutoencoderKL) on MNIST padded to 32 x 32, eq. (4.5);
2. the UNet and the text encoder together on the VAE's latents, with random captions and 10%
   empty ones for classifier-free guidance, the loss (3.5) on Stable Diffusion's schedule.
Saved with `StableDiffusionPipeline.save_pretrained` as the folder mini-sd/, with a card mini-sd.json.

This module imports Diffusers and Transformers (slow to import) only inside its functions, so
that `python -m diffedu models` stays quick.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.latents import encode, latent_scale_factor, reconstruction_metrics
from diffedu.models import count_parameters
from diffedu.models.checkpoints import model_card, record_folder, stop_if_interrupted, write_model_card
from diffedu.train import TrainConfig, train as train_loop
from diffedu.zoo import NamedModel

NAME = "mini-sd"
VAE_TRAIN = TrainConfig(train_steps=1200, batch_size=64, lr=1e-3, warmup_steps=100, ema_decay=0.998, time_budget_minutes=12)
UNET_TRAIN = TrainConfig(train_steps=2200, batch_size=256, lr=2e-3, warmup_steps=100, ema_decay=0.998, time_budget_minutes=30)


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Both stages (each resumable from its own folder in run_dir; `overrides` apply to each),
    then save the pipeline with save_pretrained and write the model card."""
    from diffedu.sd import mini

    vae_config, unet_config = replace(VAE_TRAIN, **overrides), replace(UNET_TRAIN, **overrides)
    run_dir = Path(run_dir)
    tokenizer = mini.load_tokenizer()
    vae, text_encoder, unet = mini.build_parts(tokenizer)
    train_images = mini.pad_to_32(load_mnist("train").images)
    print(f"stage 1: VAE, {count_parameters(vae) / 1e6:.2f}M parameters")
    vae_result = train_loop(vae, mini.vae_loss_fn(), (train_images,), vae_config, run_dir / "vae")
    stop_if_interrupted(vae_result)
    if not vae_result.finished:  # stage 2 needs the finished VAE: the next call resumes stage 1
        return {"name": NAME, "finished": False, "train_steps": vae_result.step, "stage": "vae",
                "train_config": vae_config.to_dict()}
    vae = vae_result.ema.cpu().eval()
    start = time.perf_counter()
    mean, log_var = encode(vae, train_images, batch_size=256)
    encode_seconds = time.perf_counter() - start
    scaling_factor = latent_scale_factor(mean, log_var)
    vae.register_to_config(scaling_factor=scaling_factor)

    model = mini.TextConditionedUNet(text_encoder, unet)
    print(f"stage 2: UNet {count_parameters(unet) / 1e6:.2f}M + text encoder {count_parameters(text_encoder) / 1e6:.2f}M "
          f"parameters; latent scaling factor {scaling_factor:.4f}")
    loss_fn = mini.unet_loss_fn(mini.scaled_linear_schedule(), scaling_factor, mini.caption_table(tokenizer))
    unet_result = train_loop(model, loss_fn, (mean, log_var, load_mnist("train").labels), unet_config, run_dir / "unet")
    stop_if_interrupted(unet_result)
    model = unet_result.ema.cpu().eval()

    folder = Path(out_folder)
    pipe = mini.make_pipeline(vae, model.text_encoder, model.unet, tokenizer)
    mini.save_pipeline(pipe, folder / NAME)
    card = model_card(NAME, unet_config, unet_result, {
        "name": NAME,
        "wall_time_minutes": round((vae_result.elapsed_seconds + unet_result.elapsed_seconds) / 60, 2),
        "stages": {
            "vae": {"train_config": vae_config.to_dict(), "train_steps": vae_result.step, "finished": vae_result.finished,
                    "wall_time_minutes": round(vae_result.elapsed_seconds / 60, 2), "kl_weight": mini.VAE_KL_WEIGHT},
            "unet_and_text_encoder": {"train_config": unet_config.to_dict(), "train_steps": unet_result.step,
                                      "finished": unet_result.finished,
                                      "wall_time_minutes": round(unet_result.elapsed_seconds / 60, 2),
                                      "caption_drop": mini.CAPTION_DROP, "min_snr_gamma": mini.MIN_SNR_GAMMA},
        },
        "encode_seconds": round(encode_seconds, 1), "latent_scaling_factor": round(scaling_factor, 5),
        "parameters": {"vae": count_parameters(vae), "text_encoder": count_parameters(model.text_encoder),
                       "unet": count_parameters(model.unet)},
        "metrics": {"prompt_adherence": mini.prompt_adherence(pipe)} if unet_result.finished and measure else {},
        "notes": "EMA weights of both stages; MNIST padded to 32 x 32; captions from diffedu.course.captions.",
    })
    record_folder(card, folder, NAME)
    write_model_card(NAME, card, folder)
    return card


def load(device="cpu", folder: Path | None = None):
    """The pipeline (StableDiffusionPipeline), from disk only, its files checked against the card."""
    from diffedu.sd.mini import load_pipeline

    return load_pipeline(device, folder)


def evaluate(pipe, n: int) -> dict:
    """VAE reconstructions of the 10,000 test digits, prompt adherence (100 images per digit,
    guidance 3, 20 steps) and the time for 64 images at 20 steps (n is not used)."""
    from diffedu.course.captions import EVAL_TEMPLATE, caption
    from diffedu.sd.mini import prompt_adherence

    metrics = {"vae_reconstruction": reconstruction_metrics(pipe.vae, load_mnist("test").images, pad=2, batch_size=256),
               "prompt_adherence": prompt_adherence(pipe)}
    prompts = [caption(d % 10, EVAL_TEMPLATE) for d in range(64)]
    start = time.perf_counter()
    pipe(prompts, num_inference_steps=20, guidance_scale=3.0, generator=torch.Generator().manual_seed(0), output_type="pt")
    metrics["seconds_64_images_20_steps"] = round(time.perf_counter() - start, 2)
    metrics["threads"] = torch.get_num_threads()
    return metrics


MODEL = NamedModel(
    name=NAME, chapter=5, summary="text-to-digit Stable Diffusion pipeline", train_config=UNET_TRAIN,
    train=train, load=load, evaluate=evaluate, files=(NAME, f"{NAME}.json"),
    headline={"prompt adherence": ("prompt_adherence", "mean"), "VAE PSNR dB": ("vae_reconstruction", "psnr_db")},
)
