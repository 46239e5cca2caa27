"""Teaching the mini Stable Diffusion new things (chapter 09): a style with LoRA, a new word with
textual inversion, a layout with ControlNet.

All three keep the trained pipeline frozen and train something small beside it, with the
course's loop (diffedu.train) and the course's loss (3.5) on the VAE latents of changed MNIST
digits (diffedu.sd.adaptation). Each saves in the format Diffusers' own loaders read, so the
same calls work on Stable Diffusion v1.5:

    what trains                               saved as                              loaded with
    LoRA: low-rank updates B A of the UNet's  pytorch_lora_weights.safetensors      pipe.load_lora_weights(folder)
          attention projections (PEFT)
    textual inversion: one token embedding    learned_embeds.safetensors            pipe.load_textual_inversion(folder)
    ControlNet: a copy of the UNet's encoder  config.json +                         ControlNetModel.from_pretrained(folder)
          joined by zero convolutions         diffusion_pytorch_model.safetensors
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from diffedu.course.captions import TEMPLATES, caption
from diffedu.latents import encode
from diffedu.sd import adaptation, mini
from diffedu.train import TrainConfig, TrainResult, train

LORA_RANK = 8  # r in (9.1)
LORA_ALPHA = 8.0  # alpha in (9.1): the update is scaled by alpha / r
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # the attention projections, as Diffusers' LoRA example
NEW_TOKEN = "<slanted>"
INIT_WORD = "handwritten"  # the new token's embedding starts as this word's
CONTROL_EMBEDDING_CHANNELS = (16, 32, 64)  # the condition's encoder: two stride-2 convolutions, 32 x 32 -> 8 x 8
CONTROL_CHANNELS = 3  # the condition is RGB, as the pipeline makes every PIL image it is given: a grey outline 3 times
LORA_FILE = "pytorch_lora_weights.safetensors"
TOKEN_FILE = "learned_embeds.safetensors"
LORA_TEMPLATE = "a bold handwritten {digit}"  # the captions of the LoRA's training digits (bold ones)
TOKEN_TEMPLATE = f"a {NEW_TOKEN} handwritten {{digit}}"  # the captions of textual inversion's (slanted ones)


def digit_latents(vae, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance (N, 4, 8, 8) of MNIST digits (N, 1, 28, 28) in [-1, 1],
    padded to 32 x 32 for the mini pipeline's VAE."""
    return encode(vae, mini.pad_to_32(images), batch_size)


def caption_ids(tokenizer, templates: tuple[str, ...] | list[str]) -> torch.Tensor:
    """Token ids (len(templates), 10, MAX_TOKENS): row [k, d] is digit d's caption with template k,
    e.g. caption_ids(tokenizer, ["a bold handwritten {digit}"])[0, 3] is "a bold handwritten 3"."""
    prompts = [caption(digit, template) for template in templates for digit in range(10)]
    return mini.tokenize(tokenizer, prompts).view(len(templates), 10, -1)


def caption_loss_fn(pipe, captions: torch.Tensor, drop: float = 0.0, empty: torch.Tensor | None = None):
    """mini.caption_loss_fn on Stable Diffusion's schedule and pipe's latent scaling: the loss (3.5)
    with each digit's caption drawn from `captions` (caption_ids)."""
    return mini.caption_loss_fn(mini.scaled_linear_schedule(), pipe.vae.config.scaling_factor, captions, drop, empty)


# --- LoRA (9.1) ----------------------------------------------------------------------------------

def add_lora(unet, rank: int = LORA_RANK, alpha: float = LORA_ALPHA, adapter_name: str = "default"):
    """Freeze the UNet and wrap its attention projections with PEFT's LoRA layers (9.1): only
    the adapters' A and B train; B starts at zero, so the UNet is unchanged until they do."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                target_modules=list(LORA_TARGETS)), adapter_name=adapter_name)
    return unet


def save_lora(unet, folder: Path) -> Path:
    """The UNet's LoRA weights, saved by StableDiffusionPipeline.save_lora_weights into folder
    (pytorch_lora_weights.safetensors), for pipe.load_lora_weights(folder)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(Path(folder), unet_lora_layers=layers, safe_serialization=True)
    return Path(folder) / LORA_FILE


# --- textual inversion (9.3) ---------------------------------------------------------------------

class LearnedToken(nn.Module):
    """A token embedding table with learned rows (9.3): the table (V, dim) stays frozen; the new
    token's rows token_ids[0]... are `vectors` (n, dim), the only numbers that train. n > 1 is
    Diffusers' "multi-vector" textual inversion: the token stands for n tokens in a row."""

    def __init__(self, table: nn.Embedding, first_id: int, init: torch.Tensor):
        super().__init__()
        self.table = table.requires_grad_(False)
        self.first_id = first_id
        self.vectors = nn.Parameter(init.detach().clone())  # (n, dim)

    @property
    def weight(self) -> torch.Tensor:  # what CLIP's text model reads for its dtype
        return self.table.weight

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, dim): the table's rows, with vectors[k] wherever token first_id + k appears."""
        embeddings = self.table(token_ids)  # (B, L, dim)
        offset = token_ids - self.first_id
        is_new = (offset >= 0) & (offset < len(self.vectors))
        learned = self.vectors.to(embeddings.dtype)[offset.clamp(0, len(self.vectors) - 1)]  # (B, L, dim)
        return torch.where(is_new[..., None], learned, embeddings)


def token_names(token: str, num_vectors: int) -> list[str]:
    """The tokenizer's names of a token's vectors, as Diffusers names them: <t>, <t>_1, <t>_2, ..."""
    return [token] + [f"{token}_{k}" for k in range(1, num_vectors)]


def add_token(tokenizer, text_encoder, token: str = NEW_TOKEN, init_word: str = INIT_WORD,
              num_vectors: int = 1) -> LearnedToken:
    """Add `token` (num_vectors tokens, token_names) to the tokenizer and as many rows to the text
    encoder's embeddings, each starting as init_word's; freeze the text encoder and put a
    LearnedToken in place of its embedding table (the other tokens' rows are copied unchanged).
    Returns the LearnedToken (its `vectors` are what trains)."""
    init_ids = tokenizer(init_word, add_special_tokens=False).input_ids
    if len(init_ids) != 1:
        raise ValueError(f"init_word must be one token of the tokenizer, {init_word!r} is {len(init_ids)}")
    names = token_names(token, num_vectors)
    if tokenizer.add_tokens(names) != num_vectors:
        raise ValueError(f"the tokenizer already has {token!r}: start from a fresh one")
    text_encoder.requires_grad_(False)
    table = text_encoder.get_input_embeddings()  # (V, dim)
    first_id = tokenizer.convert_tokens_to_ids(names[0])  # V: the new rows come last
    if first_id != table.num_embeddings:
        raise ValueError(f"the text encoder has {table.num_embeddings} token embeddings, the tokenizer {first_id}")
    init = table.weight[init_ids[0]].expand(num_vectors, -1)  # (n, dim)
    grown = nn.Embedding(first_id + num_vectors, table.embedding_dim).requires_grad_(False)
    grown.weight.copy_(torch.cat([table.weight, init]))  # (V + n, dim)
    learned = LearnedToken(grown, first_id, init)
    text_encoder.set_input_embeddings(learned)
    return learned


def spelled_out(template: str, token: str, num_vectors: int) -> str:
    """A template with a multi-vector token written as its num_vectors tokens, as the pipeline
    rewrites a prompt (maybe_convert_prompt) before tokenizing it."""
    return template.replace(token, " ".join(token_names(token, num_vectors)))


def save_token(learned: LearnedToken, token: str, folder: Path) -> Path:
    """{token: vectors (n, dim)} in learned_embeds.safetensors, the file pipe.load_textual_inversion(folder) reads."""
    from safetensors.torch import save_file

    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / TOKEN_FILE
    save_file({token: learned.vectors.detach().float().cpu().contiguous()}, path)
    return path


# --- ControlNet (9.4) ----------------------------------------------------------------------------

def make_controlnet(unet):
    """ControlNetModel.from_unet: a trainable copy of the UNet's down blocks and middle block, fed
    the condition (CONTROL_CHANNELS = 3, RGB) through a small encoder (32 x 32 -> 8 x 8,
    CONTROL_EMBEDDING_CHANNELS), and joined to the frozen UNet by zero-initialised 1 x 1
    convolutions (9.4). Three channels because StableDiffusionControlNetPipeline converts a PIL
    condition to RGB, as for Stable Diffusion's ControlNets; a grey outline is the same in all three."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONTROL_EMBEDDING_CHANNELS,
                                     conditioning_channels=CONTROL_CHANNELS)


def as_rgb(control: torch.Tensor) -> torch.Tensor:
    """A condition (B, 1, H, W) or (B, 3, H, W) as the ControlNet's (B, 3, H, W): a grey one repeated
    over the three channels (a view, no copy), as the pipeline's image processor does to a grey PIL image."""
    if control.ndim != 4 or control.shape[1] not in (1, CONTROL_CHANNELS):
        raise ValueError(f"a ControlNet condition must have shape (B, 1, H, W) or (B, 3, H, W), got {tuple(control.shape)}: "
                         "for one image, add the batch dimension with image[None]")
    return control.expand(-1, CONTROL_CHANNELS, -1, -1)


class ControlledUNet(nn.Module):
    """What trains in ControlNet, as one module for the training loop: the frozen text encoder and
    UNet, and the ControlNet whose outputs are added to the UNet's skip connections (9.4)."""

    def __init__(self, text_encoder, unet, controlnet):
        super().__init__()
        self.text_encoder = text_encoder.requires_grad_(False)
        self.unet = unet.requires_grad_(False)
        self.controlnet = controlnet

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, token_ids: torch.Tensor,
                control: torch.Tensor) -> torch.Tensor:
        """(B, 4, 8, 8) noisy latents, (B,) steps, (B, MAX_TOKENS) ids, (B, 1 or 3, 32, 32) condition in [0, 1] -> eps."""
        text_states = self.text_encoder(token_ids).last_hidden_state  # (B, MAX_TOKENS, 64)
        down, middle = self.controlnet(latents, timesteps, encoder_hidden_states=text_states,
                                       controlnet_cond=as_rgb(control), return_dict=False)
        return self.unet(latents, timesteps, encoder_hidden_states=text_states, down_block_additional_residuals=down,
                         mid_block_additional_residual=middle).sample


def control_images(images: torch.Tensor) -> torch.Tensor:
    """The ControlNet condition of MNIST digits (N, 1, 28, 28) in [-1, 1]: the outline traced around
    each stroke (adaptation.edges), padded to 32 x 32, (N, 3, 32, 32) in [0, 1] as the pipeline wants:
    the grey outline in each of the three channels (as_rgb)."""
    return as_rgb((mini.pad_to_32(adaptation.edges(images)) + 1) / 2)


def controlnet_pipeline(pipe, controlnet):
    """StableDiffusionControlNetPipeline made of `pipe`'s parts and `controlnet`."""
    from diffusers import StableDiffusionControlNetPipeline

    components = {key: value for key, value in pipe.components.items() if key != "requires_safety_checker"}
    controlled = StableDiffusionControlNetPipeline(**components, controlnet=controlnet, requires_safety_checker=False)
    controlled.set_progress_bar_config(disable=True)
    return controlled


# --- generating and measuring --------------------------------------------------------------------

@torch.no_grad()
def generate(pipe, prompts: list[str], seed: int = 0, steps: int = 20, guidance: float = 3.0, batch_size: int = 100,
             **pipe_kwargs) -> torch.Tensor:
    """Images (N, 1, 28, 28) in [-1, 1] for N prompts, cropped from the pipeline's 32 x 32, in
    batches with seeds seed + offset. Tensors among pipe_kwargs (e.g. a ControlNet's image) are
    split into the same batches; a ControlNet's image may have 1 channel (as_rgb repeats it)."""
    parts = []
    for offset in range(0, len(prompts), batch_size):
        batch = slice(offset, offset + batch_size)
        extra = {key: value[batch] if torch.is_tensor(value) else value for key, value in pipe_kwargs.items()}
        if hasattr(pipe, "controlnet") and torch.is_tensor(extra.get("image")):
            extra["image"] = as_rgb(extra["image"])
        images = pipe(prompts[batch], num_inference_steps=steps, guidance_scale=guidance, output_type="pt",
                      generator=torch.Generator().manual_seed(seed + offset), **extra).images  # (b, 1, 32, 32) in [0, 1]
        parts.append(mini.crop_to_28(images.float().cpu() * 2 - 1))
    return torch.cat(parts)


def digit_prompts(template: str, per_digit: int) -> tuple[list[str], torch.Tensor]:
    """per_digit prompts for each digit 0-9 in turn (digit-major), and their labels (10 per_digit,)."""
    labels = torch.arange(10).repeat_interleave(per_digit)
    return [caption(d, template) for d in labels.tolist()], labels




# --- the three training runs (chapter 09; python -m diffedu train mini-sd-lora-bold, ...) -----------

def train_lora(pipe, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig, run_dir: Path | None = None,
               progress: bool = True) -> TrainResult:
    """Teach pipe's UNet a style with LoRA (9.1): `images` (N, 1, 28, 28) in [-1, 1] (e.g. bold
    digits) captioned LORA_TEMPLATE. Adds the adapters to pipe.unet (which then holds the live
    weights); result.ema.unet holds the averaged ones, for save_lora."""
    mean, log_var = digit_latents(pipe.vae, images)
    model = mini.TextConditionedUNet(pipe.text_encoder.requires_grad_(False), add_lora(pipe.unet))
    loss_fn = caption_loss_fn(pipe, caption_ids(pipe.tokenizer, [LORA_TEMPLATE]))
    return train(model, loss_fn, (mean, log_var, labels), config, run_dir, progress=progress)


def train_token(pipe, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig, run_dir: Path | None = None,
                progress: bool = True, num_vectors: int = 1, token: str = NEW_TOKEN, template: str = TOKEN_TEMPLATE,
                init_word: str = INIT_WORD) -> TrainResult:
    """Teach pipe a new word by textual inversion (9.3): `token`'s embedding (num_vectors rows),
    starting as init_word's, alone learns from `images` captioned `template` (e.g. slanted digits
    captioned "a <slanted> handwritten {digit}"). Adds the token to pipe's tokenizer and text
    encoder; result.ema.text_encoder's LearnedToken holds the averaged vectors, for save_token."""
    add_token(pipe.tokenizer, pipe.text_encoder, token, init_word, num_vectors)
    mean, log_var = digit_latents(pipe.vae, images)
    model = mini.TextConditionedUNet(pipe.text_encoder, pipe.unet.requires_grad_(False))
    captions = caption_ids(pipe.tokenizer, [spelled_out(template, token, num_vectors)])
    loss_fn = caption_loss_fn(pipe, captions)
    return train(model, loss_fn, (mean, log_var, labels), config, run_dir, progress=progress)


def train_controlnet(pipe, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig, run_dir: Path | None = None,
                     progress: bool = True, drop: float = mini.CAPTION_DROP, controlnet=None) -> TrainResult:
    """Teach pipe a layout with ControlNet (9.4): `controlnet` (default: a fresh one, make_controlnet)
    learns to draw `images` (N, 1, 28, 28) from their outlines (control_images), with the mini
    model's own random captions (empty with probability `drop`, so that guidance still works).
    result.model.controlnet is `controlnet`, trained; result.ema.controlnet the averaged one."""
    mean, log_var = digit_latents(pipe.vae, images)
    control = control_images(images)[:, :1] > 0.5  # (N, 1, 32, 32) bool, one of the 3 equal channels: a 24th of the
    # memory of 3 float channels; ControlledUNet repeats it
    controlnet = controlnet if controlnet is not None else make_controlnet(pipe.unet)
    model = ControlledUNet(pipe.text_encoder, pipe.unet, controlnet)
    empty = mini.tokenize(pipe.tokenizer, [""])[0]
    loss_fn = caption_loss_fn(pipe, caption_ids(pipe.tokenizer, TEMPLATES), drop, empty)
    return train(model, loss_fn, (mean, log_var, labels, control), config, run_dir, progress=progress)
