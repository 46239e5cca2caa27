"""The course's named models: one module each, one registry of them all.

    mnist_classifier.py   mnist-classifier   the CNN behind accuracy and FID        (chapter 03)
    mnist_unet.py         mnist-unet         class-conditional pixel-space UNet     (chapter 03)
    mnist_vae.py          mnist-vae          4 x 7 x 7-latent VAE                    (chapter 04)
    mnist_ldm.py          mnist-ldm          latent diffusion on mnist-vae's latents (chapter 04)
    mini_sd.py            mini-sd            text-to-digit Stable Diffusion          (chapter 05)
    mnist_flow.py         mnist-flow         chapter 03's UNet trained as a flow     (chapter 08)
    mnist_fast.py         mnist-fast         mnist-flow distilled to 4 steps         (chapter 08)
    mini_sd_lora_bold.py  mini-sd-lora-bold  LoRA on mini-sd: bold digits            (chapter 09)
    mini_sd_ti_slanted.py mini-sd-ti-slanted textual inversion on mini-sd: <slanted> (chapter 09)
    mini_sd_controlnet_edges.py  mini-sd-controlnet-edges  ControlNet: digits along outlines (chapter 09)

Each module ends with one declaration, `MODEL = NamedModel(...)`: the model's name, chapter,
training config and its `train`, `load` and, where they apply, `sample` and `evaluate`. A
model's name is its module's name with "-" for "_", so the command line can list the names
without importing PyTorch. Adding a model is adding one module here.

    from diffedu import zoo
    unet, schedule = zoo.load("mnist-unet")               # what load returns depends on the model
    images = zoo.sample("mnist-unet", 16, labels=torch.arange(16) % 10, guidance=1.5)
    zoo.train("mnist-unet")                               # python -m diffedu train mnist-unet

Training writes to runs/NAME/ (resumable checkpoints and the model so far); a finished run is
copied into data/checkpoints only when asked (`publish`), atomically.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pkgutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class NamedModel:
    """What a named model is: the declaration at the end of each module in diffedu/zoo/.

    train(run_dir, out_folder, measure, **overrides) -> model card: trains (resuming from run_dir) with
        train_config changed by `overrides` (TrainConfig fields), saves into out_folder; measures the
        finished model into the card's metrics unless measure=False.
    load(device, folder) -> the model, from folder (default: data/checkpoints).
    sample(model, n, **options) -> images (n, 1, 28, 28) in [-1, 1]; options as samplers.sample
        (diffusion models) or flow.sample_flow (flows); `samplers` lists the samplers it takes.
    evaluate(model, n) -> metrics, which `zoo.evaluate` writes into the model card.
    """

    name: str
    chapter: int
    summary: str  # what it is, in a line
    train_config: Any  # a diffedu.train.TrainConfig (for a model trained in stages: its last stage)
    train: Callable[..., dict]
    load: Callable[..., Any]
    sample: Callable[..., Any] | None = None
    evaluate: Callable[..., dict] | None = None
    files: tuple[str, ...] = ()  # what it is on disk, relative to its folder (default: NAME.safetensors, NAME.json)
    recommended_guidance: float | None = None  # for `sample`: the w with the lowest FID in its evaluation
    samplers: tuple[str, ...] = ("ddim", "ancestral", "ddpm", "heun")  # what `sample` can use; the first is the default
    default_steps: int = 50  # `sample`'s steps when none are asked for
    configs: tuple[str, ...] = ("default",)  # sizes `train` offers (config_name=...; --config on the command line)
    headline: dict[str, tuple[str, ...]] = field(default_factory=dict)  # label -> path into card["metrics"]

    @property
    def saved_files(self) -> tuple[str, ...]:
        return self.files or (f"{self.name}.safetensors", f"{self.name}.json")


def names() -> list[str]:
    """Every named model, from the module names alone (no import: quick, no PyTorch)."""
    return sorted(info.name.replace("_", "-") for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def get(name: str) -> NamedModel:
    """The declaration of a named model; a ValueError that lists the names for an unknown one."""
    if name not in names():
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(names())}")
    model = importlib.import_module(f"{__name__}.{name.replace('-', '_')}").MODEL
    if model.name != name:
        raise ValueError(f"diffedu/zoo/{name.replace('-', '_')}.py declares the name {model.name!r}: rename one of them")
    return model


def all_models() -> list[NamedModel]:
    """Every declaration, in chapter order."""
    return sorted((get(name) for name in names()), key=lambda model: (model.chapter, model.name))


def sampleable() -> list[str]:
    return [model.name for model in all_models() if model.sample is not None]


def default_run_dir(name: str) -> Path:
    return Path("runs") / name


def train(name: str, run_dir: Path | None = None, out_folder: Path | None = None, config_name: str = "default",
          measure: bool = True, **overrides) -> dict:
    """Train a named model, resuming from run_dir (default runs/NAME), and save the model and its
    card into out_folder (default: run_dir). config_name picks one of the model's `configs` (e.g.
    mnist-unet's "big"); measure=False skips the metrics of the finished model (`evaluate` measures
    it later); overrides change TrainConfig fields, e.g. train_steps=100. Returns the model card;
    card["finished"] says whether all steps ran. Launched on several processes
    (diffedu.distributed), every process trains and only the first one prints, measures and saves."""
    from diffedu.distributed import is_main_process

    model = get(name)
    if config_name not in model.configs:
        raise ValueError(f"{name} has no config {config_name!r}: choose one of {', '.join(model.configs)}")
    options = {"config_name": config_name} if config_name != "default" else {}
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(name)
    out_folder = Path(out_folder) if out_folder is not None else run_dir
    if is_main_process():
        return model.train(run_dir, out_folder, measure=measure, **options, **overrides)
    # the launched processes after the first train alongside it, quietly, into a folder that is thrown away
    with tempfile.TemporaryDirectory(prefix=f"diffedu-{name}-") as scratch, contextlib.redirect_stdout(io.StringIO()):
        return model.train(run_dir, Path(scratch), measure=False, **options, **overrides)


def load(name: str, device="cpu", folder: Path | None = None):
    """A named model from folder (default: the shipped one in data/checkpoints), on `device`."""
    return get(name).load(device, folder)


def sample(name: str, n: int, *, device="cpu", folder: Path | None = None, **options):
    """n images (n, 1, 28, 28) in [-1, 1] from a named diffusion model; options as
    `diffedu.samplers.sample` (sampler, steps, labels, guidance, seed, batch_size, ...)."""
    model = get(name)
    if model.sample is None:
        raise ValueError(f"{name} does not sample digits this way: choose one of {', '.join(sampleable())}")
    return model.sample(model.load(device, folder), n, **options)


def card(name: str, folder: Path | None = None) -> dict:
    """The model card of a named model ({} if there is none)."""
    from diffedu.models.checkpoints import read_model_card

    return read_model_card(name, folder)


def evaluate(name: str, n: int = 1000, folder: Path | None = None, device="cpu") -> dict:
    """Re-measure a named model (default: the shipped one) and write the metrics, with the date,
    command and hardware, into its model card."""
    from diffedu.models.checkpoints import hardware_description, read_model_card, write_model_card

    model = get(name)
    if model.evaluate is None:
        raise ValueError(f"{name} has no evaluation")
    metrics = model.evaluate(model.load(device, folder), n)
    metrics.update(measured_with=f"python -m diffedu evaluate {name}", measured_on=time.strftime("%Y-%m-%d"),
                   hardware=hardware_description())
    model_card = read_model_card(name, folder)
    model_card["metrics"] = metrics
    write_model_card(name, model_card, folder)
    return metrics


def publish(name: str, source: Path, dest: Path | None = None) -> Path:
    """Copy a finished model from its run folder into dest (default data/checkpoints), atomically."""
    from diffedu.models.checkpoints import publish as publish_files

    return publish_files(list(get(name).saved_files), Path(source), dest)


def describe(folder: Path | None = None) -> list[dict]:
    """One row per named model for `python -m diffedu models`: name, chapter, what it is, size
    on disk, headline metrics and when they were measured (from its card), whether it is there."""
    from diffedu.models.checkpoints import checkpoint_dir

    folder = Path(folder) if folder is not None else checkpoint_dir()
    rows = []
    for model in all_models():
        paths = [folder / name for name in model.saved_files]
        present = all(path.exists() for path in paths)
        size = sum(p.stat().st_size for path in paths if path.exists()
                   for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
        model_card = card(model.name, folder) if present else {}
        metrics = model_card.get("metrics", {})
        shown = []
        for label, keys in model.headline.items():
            value = metrics
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                shown.append(f"{label} {value}")
        rows.append({"name": model.name, "chapter": model.chapter, "summary": model.summary,
                     "size": size_text(size),
                     "metrics": ", ".join(shown), "measured_on": metrics.get("measured_on", model_card.get("trained_on", "")),
                     "present": present})
    return rows


def size_text(size: int) -> str:
    """A size on disk for people: "2.63 MB", "97.1 kB", "336 bytes"."""
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB" if size >= 1000 else f"{size} bytes"


def markdown_table(rows: list[dict]) -> str:
    """`describe()`'s rows as the README's table of models."""
    lines = ["| model | chapter | what it is | size | headline metrics (measured on) |", "|---|---|---|---|---|"]
    for row in rows:
        when = f" ({row['measured_on']})" if row["measured_on"] else ""
        lines.append(f"| `{row['name']}` | {row['chapter']:02d} | {row['summary']} | {row['size']} | {row['metrics']}{when} |")
    return "\n".join(lines)
