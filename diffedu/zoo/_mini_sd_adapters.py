"""What the three adaptations of mini-sd (chapter 09) share: where the base pipeline comes from, how
their folders are checked, and their model cards.

Each is saved as a folder data/checkpoints/NAME/ in the format Diffusers' loader for it reads,
with a card NAME.json beside it (how it was trained, the SHA-256 of its files, the base model's,
and its measurements).
"""

from __future__ import annotations

from pathlib import Path

from diffedu.models import count_parameters
from diffedu.models.checkpoints import (CheckpointError, checkpoint_dir, file_sha256, folder_beside, model_card,
                                        read_model_card, record_folder, verify_files, warn_if_unfinished,
                                        write_model_card)

BASE = "mini-sd"
PER_DIGIT = 50  # images per digit in the measurements
STEPS, GUIDANCE = 20, 3.0  # sampling settings of the measurements (as mini-sd's prompt adherence)


def base_pipeline(folder: Path | None = None, device="cpu"):
    """mini-sd: the one beside `folder` (a run that trained it too), else the shipped one."""
    from diffedu.sd.mini import load_pipeline

    return load_pipeline(device, folder_beside(BASE, folder))


def base_record(folder: Path | None = None) -> dict:
    """Which mini-sd an adaptation was trained on: the SHA-256 of its UNet weights."""
    from diffedu.sd.mini import pipeline_folder

    weights = pipeline_folder(folder_beside(BASE, folder)) / "unet" / "diffusion_pytorch_model.safetensors"
    return {"name": BASE, "unet_sha256": file_sha256(weights)}


def adapter_folder(name: str, folder: Path | None = None) -> Path:
    """folder/NAME (default data/checkpoints/NAME), its files checked against its card; a
    CheckpointError that says what to do if it is missing or damaged."""
    folder = Path(folder) if folder is not None else checkpoint_dir()
    card = read_model_card(name, folder)
    if not (folder / name).is_dir() or not card:
        raise CheckpointError(f"no {name} in {folder}: restore the course's copy with `git checkout -- data/checkpoints`, "
                              f"or train it with `python -m diffedu train {name}` (its card says how long that takes)")
    verify_files(name, card, folder)
    warn_if_unfinished(name, card, folder)
    return folder / name


def write_card(name: str, config, result, out_folder: Path, model, extra: dict) -> dict:
    """The card of an adaptation saved in out_folder/NAME: the training run, the trainable and
    total parameters of `model` (the module that trained), the base model, the files and their size."""
    out_folder = Path(out_folder)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    card = model_card(name, config, result, {
        "base": base_record(out_folder),
        "parameters": {"trainable": trainable, "total": count_parameters(model)},
        "first_loss_mean_first_100": round(sum(result.losses[:100]) / max(1, len(result.losses[:100])), 5),
        **extra,
    })
    record_folder(card, out_folder, name)
    write_model_card(name, card, out_folder)
    return card


def add_metrics(name: str, card: dict, metrics: dict, out_folder: Path) -> dict:
    card["metrics"] = metrics
    write_model_card(name, card, out_folder)
    return card
