"""mini-sd-lora-bold: a LoRA that teaches mini-sd to write bold digits (chapter 09).

PEFT's LoRA adapters (9.1) on the UNet's attention projections learn from MNIST digits thickened
by a 3 x 3 grey dilation, captioned "a bold handwritten {digit}"; everything else stays frozen.
Saved with StableDiffusionPipeline.save_lora_weights; load it with
`pipe.load_lora_weights("data/checkpoints/mini-sd-lora-bold")`.

    python -m diffedu train mini-sd-lora-bold      (needs mini-sd: the one beside it in --out, else the shipped one)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.models.checkpoints import stop_if_interrupted
from diffedu.train import TrainConfig
from diffedu.zoo import NamedModel
from diffedu.zoo._mini_sd_adapters import (GUIDANCE, PER_DIGIT, STEPS, adapter_folder, add_metrics, base_pipeline,
                                           write_card)

NAME = "mini-sd-lora-bold"
ADAPTER = "bold"  # the adapter's name in the pipeline (pipe.set_adapters, pipe.disable_lora)
TRAIN = TrainConfig(train_steps=2000, batch_size=128, lr=1e-3, warmup_steps=100, ema_decay=0.995,
                    time_budget_minutes=15)


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Train the LoRA on bold digits (resuming from run_dir), save it into out_folder/NAME, measure it."""
    from diffedu.sd import adaptation, finetune

    config = replace(TRAIN, **overrides)
    pipe = base_pipeline(out_folder)
    train_set = load_mnist("train")
    print(f"LoRA rank {finetune.LORA_RANK} on the UNet's {', '.join(finetune.LORA_TARGETS)}, "
          f"learning from bold digits captioned {finetune.LORA_TEMPLATE!r}")
    result = finetune.train_lora(pipe, adaptation.bold(train_set.images), train_set.labels, config, run_dir)
    stop_if_interrupted(result)
    finetune.save_lora(result.ema.unet, Path(out_folder) / NAME)
    card = write_card(NAME, config, result, out_folder, result.model, {
        "lora": {"rank": finetune.LORA_RANK, "alpha": finetune.LORA_ALPHA, "targets": list(finetune.LORA_TARGETS)},
        "caption": finetune.LORA_TEMPLATE, "data": "the 60,000 MNIST training digits, adaptation.bold (3 x 3 grey dilation)",
        "notes": "EMA of the adapter weights; the text encoder, the VAE and the UNet's own weights are mini-sd's, frozen.",
    })
    return add_metrics(NAME, card, evaluate(load(folder=out_folder), 0), out_folder) if result.finished and measure else card


def load(device="cpu", folder: Path | None = None):
    """mini-sd with the LoRA loaded by pipe.load_lora_weights, as the adapter "bold" at scale 1."""
    path = adapter_folder(NAME, folder)
    pipe = base_pipeline(folder, device)
    pipe.load_lora_weights(path, adapter_name=ADAPTER)
    return pipe


@torch.no_grad()
def evaluate(pipe, n: int) -> dict:
    """On "a bold handwritten {d}", PER_DIGIT images per digit with the same seeds with and without
    the LoRA: the ink fraction of each (and their ratio) and the classifier's accuracy (n is not used)."""
    from diffedu.metrics import load_classifier, predict_labels
    from diffedu.sd import adaptation, finetune

    prompts, labels = finetune.digit_prompts(finetune.LORA_TEMPLATE, PER_DIGIT)
    classifier = load_classifier()
    images = {}
    for setting, scale in (("with_lora", 1.0), ("without_lora", 0.0)):
        pipe.set_adapters([ADAPTER], [scale])
        images[setting] = finetune.generate(pipe, prompts, steps=STEPS, guidance=GUIDANCE)
    pipe.set_adapters([ADAPTER], [1.0])
    metrics = {setting: {"ink_fraction": round(adaptation.ink_fraction(x).mean().item(), 4),
                         "accuracy": round((predict_labels(classifier, x) == labels).float().mean().item(), 4)}
               for setting, x in images.items()}
    metrics["ink_ratio"] = round(metrics["with_lora"]["ink_fraction"] / metrics["without_lora"]["ink_fraction"], 3)
    metrics.update(prompt=finetune.LORA_TEMPLATE, images_per_digit=PER_DIGIT, steps=STEPS, guidance=GUIDANCE)
    return metrics


MODEL = NamedModel(
    name=NAME, chapter=9, summary="LoRA on mini-sd: bold digits", train_config=TRAIN, train=train, load=load,
    evaluate=evaluate, files=(NAME, f"{NAME}.json"),
    headline={"ink ratio": ("ink_ratio",), "accuracy": ("with_lora", "accuracy")},
)
