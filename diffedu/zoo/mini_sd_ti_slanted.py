"""mini-sd-ti-slanted: a new word, "<slanted>", learned by textual inversion (chapter 09).

One new token's embedding (9.3), 64 numbers, learns from MNIST digits sheared by 0.3 (tops to
the right), captioned "a <slanted> handwritten {digit}"; the text encoder, UNet and VAE stay
frozen. Saved as learned_embeds.safetensors; load it with
`pipe.load_textual_inversion("data/checkpoints/mini-sd-ti-slanted")`.

    python -m diffedu train mini-sd-ti-slanted     (needs mini-sd: the one beside it in --out, else the shipped one)
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

NAME = "mini-sd-ti-slanted"
SHEAR = 0.3  # the training digits' shear (adaptation.shear)
TRAIN = TrainConfig(train_steps=2000, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.995,
                    time_budget_minutes=15)


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Learn the token's embedding from slanted digits (resuming from run_dir), save it into out_folder/NAME, measure it."""
    from diffedu.sd import adaptation, finetune

    config = replace(TRAIN, **overrides)
    pipe = base_pipeline(out_folder)
    train_set = load_mnist("train")
    print(f"textual inversion: the embedding of {finetune.NEW_TOKEN} (starting as {finetune.INIT_WORD!r}) learns from "
          f"digits sheared by {SHEAR}, captioned {finetune.TOKEN_TEMPLATE!r}")
    result = finetune.train_token(pipe, adaptation.shear(train_set.images, SHEAR), train_set.labels, config, run_dir)
    stop_if_interrupted(result)
    learned = result.ema.text_encoder.get_input_embeddings()
    finetune.save_token(learned, finetune.NEW_TOKEN, Path(out_folder) / NAME)
    card = write_card(NAME, config, result, out_folder, result.model, {
        "token": finetune.NEW_TOKEN, "initialised_as": finetune.INIT_WORD, "caption": finetune.TOKEN_TEMPLATE,
        "data": f"the 60,000 MNIST training digits, adaptation.shear(images, {SHEAR})",
        "notes": "EMA of the token's embedding; everything else is mini-sd's, frozen.",
    })
    return add_metrics(NAME, card, evaluate(load(folder=out_folder), 0), out_folder) if result.finished and measure else card


def load(device="cpu", folder: Path | None = None):
    """mini-sd with the token loaded by pipe.load_textual_inversion."""
    path = adapter_folder(NAME, folder)
    pipe = base_pipeline(folder, device)
    pipe.load_textual_inversion(path)
    return pipe


@torch.no_grad()
def evaluate(pipe, n: int) -> dict:
    """PER_DIGIT images per digit of "a <slanted> handwritten {d}" and, with the same seeds, of the
    same prompt without the token, "a handwritten {d}": the mean slant (adaptation.slant) of each,
    their difference, and the classifier's accuracy (n is not used)."""
    from diffedu.course.captions import EVAL_TEMPLATE
    from diffedu.metrics import load_classifier, predict_labels
    from diffedu.sd import adaptation, finetune

    classifier = load_classifier()
    metrics = {}
    for setting, template in (("with_token", finetune.TOKEN_TEMPLATE), ("without_token", EVAL_TEMPLATE)):
        prompts, labels = finetune.digit_prompts(template, PER_DIGIT)
        images = finetune.generate(pipe, prompts, steps=STEPS, guidance=GUIDANCE)
        metrics[setting] = {"prompt": template, "slant": round(adaptation.slant(images).mean().item(), 4),
                            "accuracy": round((predict_labels(classifier, images) == labels).float().mean().item(), 4)}
    metrics["slant_added"] = round(metrics["with_token"]["slant"] - metrics["without_token"]["slant"], 4)
    metrics.update(training_shear=SHEAR, images_per_digit=PER_DIGIT, steps=STEPS, guidance=GUIDANCE)
    return metrics


MODEL = NamedModel(
    name=NAME, chapter=9, summary="textual inversion on mini-sd: the word `<slanted>`", train_config=TRAIN, train=train,
    load=load, evaluate=evaluate, files=(NAME, f"{NAME}.json"),
    headline={"slant added": ("slant_added",), "accuracy": ("with_token", "accuracy")},
)
