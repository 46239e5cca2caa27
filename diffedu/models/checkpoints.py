"""Shipped model weights: safetensors files plus a JSON model card, in data/checkpoints/.

    data/checkpoints/mnist-unet.safetensors   the (EMA) weights; the model config in its metadata
    data/checkpoints/mnist-unet.json          the model card: command, configs, time, hardware,
                                              metrics, and the SHA-256 of every weights file

Training writes to runs/NAME/; `publish` copies a finished model into data/checkpoints
atomically, after checking its files against its card. Loading checks the SHA-256 that the card
records, so a damaged file is named instead of silently giving other samples, and warns when the
card says the run is unfinished or when there is no card to check against. No command writes over
the course's own files (`is_course_data`): data/, the checkpoints folder, tests/data.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from diffedu.course.data import MNIST_FILE, MNIST_SHA256, sha256_of as file_sha256  # noqa: F401 (also used by callers)
from diffedu.course.paths import REPO_ROOT, data_dir


class CheckpointError(RuntimeError):
    """A checkpoint is missing or does not fit the model; the message says what to do."""


def checkpoint_dir() -> Path:
    return data_dir() / "checkpoints"


def course_data_paths() -> list[Path]:
    """What the course ships and only `publish` may change: the repository's data/ and tests/data,
    and the data folder's checkpoints/ and MNIST file (DIFFEDU_DATA can move those two)."""
    return [REPO_ROOT / "data", REPO_ROOT / "tests" / "data", checkpoint_dir(), data_dir() / MNIST_FILE]


def is_course_data(path: Path) -> bool:
    """Whether `path` is one of the course's own files or folders, or inside one (symlinks followed)."""
    path = Path(path).expanduser().resolve()
    return any(path == protected or protected in path.parents
               for protected in (p.resolve() for p in course_data_paths()))


def is_course_checkpoints(folder: Path | None) -> bool:
    """Whether `folder` is the course's checkpoints folder (None stands for it)."""
    return folder is None or Path(folder).expanduser().resolve() == checkpoint_dir().resolve()


def checkpoint_paths(name: str, folder: Path | None = None) -> tuple[Path, Path]:
    """(weights, model card) paths of a named checkpoint."""
    folder = Path(folder) if folder is not None else checkpoint_dir()
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def folder_beside(name: str, folder: Path | None) -> Path | None:
    """Where a model saved in `folder` finds the named model it builds on (mnist-ldm's VAE, mnist-fast's
    teacher): `folder` itself when `name` is there too (a run that trained both into one folder), else
    None, the shipped one."""
    if folder is not None and checkpoint_paths(name, folder)[1].is_file():  # its model card
        return Path(folder)
    return None


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


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a named model's training; its checkpoint is saved in the run folder."""


def stop_if_interrupted(result) -> None:
    """After `train`: a Ctrl-C ends the recipe here (the run folder has the checkpoint to resume)."""
    if result.interrupted:
        raise TrainingInterrupted(f"interrupted at step {result.step}")


def data_record() -> dict:
    """Which MNIST file a model was trained on (for its model card)."""
    return {"file": MNIST_FILE, "sha256": MNIST_SHA256}


def model_card(name: str, config, result, extra: dict) -> dict:
    """The model card of a training run of a named model: command, TrainConfig, steps, time,
    hardware, data, plus `extra` (metrics, notes, ...). `result` is train()'s TrainResult."""
    recent = result.losses[-100:]
    return {
        "command": f"python -m diffedu train {name}",
        "train_config": config.to_dict(),
        "train_steps": result.step,
        "finished": result.finished,
        "wall_time_minutes": round(result.elapsed_seconds / 60, 2),
        "images_per_second": round(result.images_per_second, 1),
        "final_loss_mean_last_100": round(sum(recent) / max(1, len(recent)), 5),
        "hardware": hardware_description(),
        "processes": result.processes,  # launched on several (diffedu.distributed): the hardware is per process
        "trained_on": time.strftime("%Y-%m-%d"),
        "data": data_record(),
        **extra,
    }


def how_to_restore(name: str, folder: Path | None = None) -> str:
    """What to do about a missing or damaged model: the course's copy comes back from git; a run
    folder's model is saved again by its training command (which resumes from checkpoint.pt)."""
    if is_course_checkpoints(folder):
        return (f"restore the course's copy with `git checkout -- data/checkpoints` (in your clone), or make it again "
                f"with `python -m diffedu train {name}`")
    return (f"save it again with `python -m diffedu train {name} --run-dir {folder}` (it resumes from that run's "
            f"checkpoint.pt), or leave out --from for the course's copy")


def record_sha256(card: dict, folder: Path, files: list[str]) -> None:
    """Store the SHA-256 of each file (paths relative to folder) in card["sha256"]."""
    card["sha256"] = {name: file_sha256(Path(folder) / name) for name in files}


def record_folder(card: dict, folder: Path, name: str) -> None:
    """For a model saved as a folder, folder/name (a Diffusers pipeline or adapter): its size on disk
    in card["folder_bytes"] and each file's SHA-256 in card["sha256"] (paths relative to folder)."""
    files = sorted(str(p.relative_to(folder)) for p in (Path(folder) / name).rglob("*") if p.is_file())
    card["folder_bytes"] = sum((Path(folder) / f).stat().st_size for f in files)
    record_sha256(card, folder, files)


def warn_if_unchecked(name: str, card: dict, folder: Path) -> None:
    """One line on stderr when there is no card, or a card without SHA-256s: nothing was checked."""
    if not card.get("sha256"):
        card_path = checkpoint_paths(name, folder)[1]
        problem = f"has no model card ({card_path})" if not card else f"has a model card that lists no SHA-256 ({card_path})"
        print(f"warning: '{name}' in {folder} {problem}, so its files are loaded unchecked: "
              f"{how_to_restore(name, folder)}", file=sys.stderr)


def verify_files(name: str, card: dict, folder: Path, warn: bool = True, remedy: str | None = None) -> None:
    """Check every file the card lists under "sha256"; raise CheckpointError naming a damaged one and
    what to do (`remedy`, default `how_to_restore`). A card that lists none (or no card, {}) checks
    nothing: one warning line on stderr says so (warn=False leaves that to the caller,
    `warn_if_unchecked`, once the files have loaded)."""
    hashes = card.get("sha256")
    if not hashes:
        if warn:
            warn_if_unchecked(name, card, folder)
        return
    remedy = remedy or how_to_restore(name, folder)
    for relative, expected in hashes.items():
        path = Path(folder) / relative
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (the model card of '{name}' lists it): {remedy}")
        if file_sha256(path) != expected:
            raise CheckpointError(f"{path} is damaged: its SHA-256 differs from the one in the model card of "
                                  f"'{name}'. {remedy[0].upper() + remedy[1:]}")


def check_finished_run(name: str, files: list[str], folder: Path) -> dict:
    """The model card of a finished run of `name` in `folder` whose card lists the SHA-256 of every
    file of `files` (file or folder names) and whose files all match it: what `publish` needs. A
    one-line CheckpointError for anything else (no card, unfinished, a file missing, damaged or unlisted)."""
    folder = Path(folder)
    card = read_model_card(name, folder)
    card_path = checkpoint_paths(name, folder)[1]
    train_again = f"train it again with `python -m diffedu train {name} --run-dir {folder}`"
    if not card:
        raise CheckpointError(f"no model card {card_path}: there is no finished run of '{name}' in {folder}; {train_again}")
    if card.get("name", name) != name:
        raise CheckpointError(f"{card_path} is the card of '{card['name']}', not of '{name}': {train_again}")
    if card.get("finished") is not True:
        raise CheckpointError(f"the run in {folder} has not finished (step {card.get('train_steps')}): {train_again} "
                              "to continue it, then publish")
    hashes = card.get("sha256")
    if not isinstance(hashes, dict) or not hashes:
        raise CheckpointError(f"{card_path} lists no SHA-256 of the model's files, so they cannot be checked: {train_again}")
    for entry in files:
        path = folder / entry
        if path == card_path:
            continue
        if not path.exists():
            raise CheckpointError(f"{path} is missing: {train_again}")
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        unlisted = [p for p in found if str(p.relative_to(folder)) not in hashes]
        if unlisted:
            raise CheckpointError(f"{unlisted[0]} is not in the SHA-256 list of {card_path}, so it cannot be checked: "
                                  f"{train_again}")
    verify_files(name, card, folder, remedy=train_again)
    return card


def warn_if_unfinished(name: str, card: dict, where: Path) -> None:
    """One line on stderr when the model card says training stopped before its last step."""
    if card.get("finished") is False:
        config = card.get("train_config", {})
        total = config.get("train_steps", config.get("steps"))
        of = f" of {total}" if total else ""
        print(f"warning: '{name}' in {where} is from an unfinished run (step {card.get('train_steps', card.get('steps'))}{of}): "
              f"finish it with `python -m diffedu train {name} --run-dir {where}` (it resumes)", file=sys.stderr)


def publish(files: list[str], source: Path, dest: Path | None = None) -> Path:
    """Copy a finished model's files or folders (names relative to source) into dest (default
    data/checkpoints) so that a reader never sees a half-written model: each is copied to a
    temporary name first, the old one is kept as NAME.bak until every new one is in place,
    then the backups are removed."""
    dest = Path(dest) if dest is not None else checkpoint_dir()
    dest.mkdir(parents=True, exist_ok=True)

    def remove(path: Path) -> None:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    for name in files:  # 1. stage every copy beside its target
        staged = dest / f".{name}.tmp"
        remove(staged)
        if (Path(source) / name).is_dir():
            shutil.copytree(Path(source) / name, staged)
        else:
            shutil.copy2(Path(source) / name, staged)
    backups = []
    for name in files:  # 2. old -> NAME.bak, staged -> NAME (each a rename)
        target, backup = dest / name, dest / f"{name}.bak"
        if target.exists():
            remove(backup)
            os.replace(target, backup)
            backups.append(backup)
        os.replace(dest / f".{name}.tmp", target)
    for backup in backups:  # 3. all new files are in place: drop the backups
        remove(backup)
    return dest


def save_checkpoint(model: nn.Module, name: str, model_config: dict, card: dict, folder: Path | None = None) -> Path:
    """Write the model's weights (safetensors, config in its metadata) and its model card."""
    weights_path, card_path = checkpoint_paths(name, folder)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # one metadata key: safetensors keeps metadata in a hash map, whose order (and so the file's bytes and
    # SHA-256) differed from run to run with two keys. The name is in the file's name and in the card.
    save_file(state, str(weights_path), metadata={"config": json.dumps(model_config)})
    card = {"name": name, "model_config": model_config, **card}
    card["weights_file"] = weights_path.name
    card["weights_bytes"] = weights_path.stat().st_size
    record_sha256(card, weights_path.parent, [weights_path.name])
    write_model_card(name, card, folder)
    return weights_path


def write_model_card(name: str, card: dict, folder: Path | None = None) -> None:
    """Write (or rewrite, e.g. with new metrics) the JSON model card of a named checkpoint."""
    _, card_path = checkpoint_paths(name, folder)
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def not_in_run_folder(name: str, weights_path: Path) -> str:
    """What to say when a run folder (not the course's) has no weights file of the named model."""
    return (f"no model '{name}' in {weights_path.parent} ({weights_path.name} is missing): a run folder holds it once "
            f"`python -m diffedu train {name} --run-dir {weights_path.parent}` has finished or stopped at its budget; "
            "leave out --from for the course's copy")


def read_checkpoint(name: str, folder: Path | None = None) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(state_dict, model_config, model_card) of a named checkpoint."""
    weights_path, card_path = checkpoint_paths(name, folder)
    if not weights_path.is_file() and is_course_checkpoints(folder):
        raise CheckpointError(
            f"no checkpoint '{name}' at {weights_path}. The course ships it in data/checkpoints/: "
            f"restore it with `git checkout -- data/checkpoints`, or make it yourself with "
            f"`python -m diffedu train {name}`"
        )
    if not weights_path.is_file():
        raise CheckpointError(not_in_run_folder(name, weights_path))
    card = read_model_card(name, folder)
    verify_files(name, card, weights_path.parent, warn=False)
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path} is damaged and cannot be read ({str(error).splitlines()[0]}): "
                              f"{how_to_restore(name, folder)}") from None
    if "config" not in metadata:
        raise CheckpointError(f"{weights_path} has no model config in its metadata: was it saved by diffedu?")
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{weights_path} has a damaged model config in its metadata: "
                              f"{how_to_restore(name, folder)}") from None
    warn_if_unchecked(name, card, weights_path.parent)
    warn_if_unfinished(name, card, weights_path.parent)
    return state, config, card


def read_model_card(name: str, folder: Path | None = None) -> dict:
    """The JSON model card of a named checkpoint ({} if it has none)."""
    _, card_path = checkpoint_paths(name, folder)
    if not card_path.is_file():
        return {}
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{card_path} is damaged ({error}): {how_to_restore(name, folder)}") from None
    except OSError as error:
        raise CheckpointError(f"{card_path} cannot be read ({error.strerror}): {how_to_restore(name, folder)}") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{card_path} is damaged (not a JSON object): {how_to_restore(name, folder)}")
    return card
