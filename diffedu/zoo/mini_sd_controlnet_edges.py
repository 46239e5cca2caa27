"""mini-sd-controlnet-edges: a ControlNet that makes mini-sd draw a digit along a given outline (chapter 09).

ControlNetModel.from_unet copies the UNet's encoder; the copy learns (9.4), joined to the frozen
UNet by zero convolutions, to draw MNIST digits from the outlines traced around their strokes
(adaptation.edges), with the mini model's own random captions. Saved with save_pretrained; use it
with `StableDiffusionControlNetPipeline(**pipe.components, controlnet=ControlNetModel.from_pretrained(
"data/checkpoints/mini-sd-controlnet-edges"))`, and give the pipeline the outline as Diffusers' documentation
does: a PIL image (grey or RGB, white lines on black, 32 x 32) or a (B, 3, 32, 32) tensor in [0, 1].

    python -m diffedu train mini-sd-controlnet-edges   (needs mini-sd: the one beside it in --out, else the shipped one)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.models.checkpoints import stop_if_interrupted
from diffedu.train import TrainConfig
from diffedu.zoo import NamedModel
from diffedu.zoo._mini_sd_adapters import GUIDANCE, STEPS, adapter_folder, add_metrics, base_pipeline, write_card

NAME = "mini-sd-controlnet-edges"
EVAL_DIGITS = 500  # the first test digits, whose outlines the measurement draws from
TRAIN = TrainConfig(train_steps=1800, batch_size=128, lr=1e-3, warmup_steps=100, ema_decay=0.995,
                    time_budget_minutes=15)


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Train the ControlNet on outlines (resuming from run_dir), save it into out_folder/NAME, measure it."""
    from diffedu.sd import finetune, mini

    config = replace(TRAIN, **overrides)
    pipe = base_pipeline(out_folder)
    train_set = load_mnist("train")
    print("ControlNet from mini-sd's UNet, learning to draw digits from the outlines around their strokes")
    result = finetune.train_controlnet(pipe, train_set.images, train_set.labels, config, run_dir)
    stop_if_interrupted(result)
    result.ema.controlnet.save_pretrained(Path(out_folder) / NAME, safe_serialization=True)
    card = write_card(NAME, config, result, out_folder, result.model, {
        "condition": "adaptation.edges: the outline around each stroke (outline of the 3 x 3-dilated digit), "
                     "padded to 32 x 32, in [0, 1], repeated over 3 channels (RGB, as the pipeline makes of a PIL image)",
        "captions": "mini-sd's templates (diffedu.course.captions), empty with probability "
                    f"{mini.CAPTION_DROP}",
        "conditioning_embedding_out_channels": list(finetune.CONTROL_EMBEDDING_CHANNELS),
        "notes": "EMA of the ControlNet's weights; the text encoder, the UNet and the VAE are mini-sd's, frozen. "
                 "parameters.total counts them with the ControlNet.",
    })
    return add_metrics(NAME, card, evaluate(load(folder=out_folder), 0), out_folder) if result.finished and measure else card


def load(device="cpu", folder: Path | None = None):
    """StableDiffusionControlNetPipeline: mini-sd's parts and the ControlNet from ControlNetModel.from_pretrained."""
    from diffusers import ControlNetModel

    from diffedu.sd.finetune import controlnet_pipeline

    path = adapter_folder(NAME, folder)
    controlnet = ControlNetModel.from_pretrained(path, local_files_only=True)
    return controlnet_pipeline(base_pipeline(folder, device), controlnet.to(device))


@torch.no_grad()
def evaluate(pipe, n: int) -> dict:
    """The outlines of the first EVAL_DIGITS test digits with "a handwritten {label}": the IoU of the
    drawn digit's ink with the source digit's, the classifier's accuracy, and the same without the
    ControlNet (mini-sd alone: the overlap a digit gets by chance). Then the outlines with the prompt of
    the next digit ((label + 1) mod 10): which of the two the classifier reads (n is not used)."""
    from diffedu.course.captions import EVAL_TEMPLATE, caption
    from diffedu.metrics import load_classifier, predict_labels
    from diffedu.sd import adaptation, finetune
    from diffedu.sd.mini import make_pipeline

    test_set = load_mnist("test")
    sources, labels = test_set.images[:EVAL_DIGITS], test_set.labels[:EVAL_DIGITS]
    control = finetune.control_images(sources)
    classifier = load_classifier()
    prompts = [caption(d, EVAL_TEMPLATE) for d in labels.tolist()]

    def measure(images: torch.Tensor) -> dict:
        return {"ink_iou": round(adaptation.ink_iou(images, sources).mean().item(), 4),
                "accuracy": round((predict_labels(classifier, images) == labels).float().mean().item(), 4)}

    metrics = {"with_controlnet": measure(finetune.generate(pipe, prompts, steps=STEPS, guidance=GUIDANCE, image=control))}
    plain = make_pipeline(pipe.vae, pipe.text_encoder, pipe.unet, pipe.tokenizer)
    metrics["without_controlnet"] = measure(finetune.generate(plain, prompts, steps=STEPS, guidance=GUIDANCE))
    other = (labels + 1) % 10
    disagreeing = finetune.generate(pipe, [caption(d, EVAL_TEMPLATE) for d in other.tolist()], steps=STEPS,
                                    guidance=GUIDANCE, image=control)
    read = predict_labels(classifier, disagreeing)
    metrics["prompt_disagrees"] = {"prompt": "a handwritten {(label + 1) mod 10}",
                                   "reads_as_outline": round((read == labels).float().mean().item(), 4),
                                   "reads_as_prompt": round((read == other).float().mean().item(), 4),
                                   "ink_iou": round(adaptation.ink_iou(disagreeing, sources).mean().item(), 4)}
    metrics.update(digits=EVAL_DIGITS, steps=STEPS, guidance=GUIDANCE)
    return metrics


MODEL = NamedModel(
    name=NAME, chapter=9, summary="ControlNet on mini-sd: digits along an outline", train_config=TRAIN, train=train,
    load=load, evaluate=evaluate, files=(NAME, f"{NAME}.json"),
    headline={"ink IoU": ("with_controlnet", "ink_iou"), "accuracy": ("with_controlnet", "accuracy")},
)
