"""Shipped model weights: safetensors files plus a JSON model card, in data/checkpoints/.

    data/checkpoints/mnist-unet.safetensors   the (EMA) weights; the model config in its metadata
    data/checkpoints/mnist-unet.json          the model card: command, configs, time, hardware, metrics
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from diffedu.paths import data_dir


class CheckpointError(RuntimeError):
    """A checkpoint is missing or does not fit the model; the message says what to do."""


def checkpoint_dir() -> Path:
    return data_dir() / "checkpoints"


def checkpoint_paths(name: str, folder: Path | None = None) -> tuple[Path, Path]:
    """(weights, model card) paths of a named checkpoint."""
    folder = Path(folder) if folder is not None else checkpoint_dir()
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def hardware_description() -> dict:
    """What a model card records about the machine that trained or measured something."""
    info = {
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        if names:
            info["processor"] = names[0]
            info["cpu_cores"] = len(names)
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def save_checkpoint(model: nn.Module, name: str, model_config: dict, card: dict, folder: Path | None = None) -> Path:
    """Write the model's weights (safetensors, config in its metadata) and its model card."""
    weights_path, card_path = checkpoint_paths(name, folder)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path), metadata={"name": name, "config": json.dumps(model_config)})
    card = {"name": name, "model_config": model_config, **card}
    card["weights_file"] = weights_path.name
    card["weights_bytes"] = weights_path.stat().st_size
    write_model_card(name, card, folder)
    return weights_path


def write_model_card(name: str, card: dict, folder: Path | None = None) -> None:
    """Write (or rewrite, e.g. with new metrics) the JSON model card of a named checkpoint."""
    _, card_path = checkpoint_paths(name, folder)
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def read_checkpoint(name: str, folder: Path | None = None) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(state_dict, model_config, model_card) of a named checkpoint."""
    weights_path, card_path = checkpoint_paths(name, folder)
    if not weights_path.is_file():
        raise CheckpointError(
            f"no checkpoint '{name}' at {weights_path}. The course ships it in data/checkpoints/: "
            f"restore it with `git checkout -- data/checkpoints`, or make it yourself with "
            f"`python -m diffedu train {name}`"
        )
    with safe_open(str(weights_path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "config" not in metadata:
        raise CheckpointError(f"{weights_path} has no model config in its metadata: was it saved by diffedu?")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return load_file(str(weights_path)), json.loads(metadata["config"]), card
