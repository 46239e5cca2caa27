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
    mnist_sr.py           mnist-sr           x4 upscaler (7 x 7 -> 28 x 28)          (chapter 10)

Each module ends with one declaration, `MODEL = NamedModel(...)`: the model's name, chapter,
training config and its `train`, `load` and, where they apply, `sample` and `evaluate`. A
model's name is its module's name with "-" for "_", so the command line can list the names
without importing PyTorch. Adding a model is adding one module here.

    from diffedu import zoo
    unet, schedule = zoo.load("mnist-unet")               # what load returns depends on the model
    images = zoo.sample("mnist-unet", 16, labels=torch.arange(16) % 10, guidance=1.5)
    zoo.train("mnist-unet")                               # python -m diffedu train mnist-unet

Training writes to runs/NAME/ (resumable checkpoints and the model so far); a finished run is
copied into data/checkpoints only when asked (`publish`), atomically, once its files match its
card, and only if it measures at least as well as the model it replaces (or with force=True).
`evaluate` never rewrites the course's cards: it returns the metrics, and writes them into a run
folder's card or a file of your choice.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
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
    sample(model, n, **options) -> images (n, 1, 28, 28) in [-1, 1]; options as `diffedu.generate.generate`.
    prediction: what its network predicts, "noise" or "velocity": it can use every sampler of
        diffedu.generate.SAMPLERS for that prediction, or only `only_samplers` when given (`samplers`).
    evaluate(model, n) -> metrics (`zoo.evaluate` adds when, how and on what they were measured).
        n is the number of samples per measurement for models with `evaluation_n`, their default;
        None means the evaluation has a fixed size (a test set, fixed prompts) and takes no n.
    headline: the metrics `models` shows and `publish` compares, as label -> path into card["metrics"];
        higher is better, except for labels that start with "FID".
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
    prediction: str = "noise"  # what the network predicts: "noise" (eps) or "velocity" (a flow)
    only_samplers: tuple[str, ...] = ()  # a subset of the registry's samplers for that prediction (empty: all of them)
    default_steps: int = 50  # `sample`'s steps when none are asked for
    configs: tuple[str, ...] = ("default",)  # sizes `train` offers (config_name=...; --config on the command line)
    headline: dict[str, tuple[str, ...]] = field(default_factory=dict)  # label -> path into card["metrics"]
    evaluation_n: int | None = None  # evaluate's default samples per measurement; None: a fixed-size evaluation

    @property
    def samplers(self) -> list[str]:
        """The samplers `sample` can use, from diffedu.generate.SAMPLERS; the first is the default."""
        from diffedu.generate import samplers_for

        return [name for name in samplers_for(self.prediction) if not self.only_samplers or name in self.only_samplers]

    @property
    def saved_files(self) -> tuple[str, ...]:
        return self.files or (f"{self.name}.safetensors", f"{self.name}.json")


# evaluate's n for models that take one: FID needs two samples, and the real-vs-real FID of a card
# compares the first n test digits with the next n, of 10,000 (diffedu.metrics.evaluate_samples)
EVALUATION_N_RANGE = (2, 5000)


class PublishRefused(RuntimeError):
    """`publish` would replace a model with one that measures worse (or cannot be compared); force=True overrides."""


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
    `diffedu.generate.generate` (sampler, steps, labels, guidance, seed, batch_size, ...)."""
    model = get(name)
    if model.sample is None:
        raise ValueError(f"{name} does not sample digits this way: choose one of {', '.join(sampleable())}")
    return model.sample(model.load(device, folder), n, **options)


def card(name: str, folder: Path | None = None) -> dict:
    """The model card of a named model ({} if there is none)."""
    from diffedu.models.checkpoints import read_model_card

    return read_model_card(name, folder)


def check_evaluation_n(name: str, n: int | None) -> None:
    """A ValueError (one line, what to do) when n does not apply to the model's evaluation or is out of range."""
    model = get(name)
    if model.evaluate is None:
        raise ValueError(f"{name} has no evaluation: choose one of "
                         f"{', '.join(m.name for m in all_models() if m.evaluate is not None)}")
    if n is None:
        return
    if model.evaluation_n is None:
        takes_n = ", ".join(m.name for m in all_models() if m.evaluation_n is not None)
        raise ValueError(f"{name}'s evaluation has a fixed size, so --n does not apply: leave it out "
                         f"(--n applies to {takes_n})")
    low, high = EVALUATION_N_RANGE
    if not low <= n <= high:
        raise ValueError(f"--n must be in {low}..{high} for {name}, got {n}: FID needs 2 samples, and its real-vs-real "
                         "baseline uses 2n of the 10,000 test digits")


def evaluate(name: str, n: int | None = None, folder: Path | None = None, device="cpu", out: Path | None = None) -> dict:
    """Measure a named model (default: the shipped one; n samples per measurement, default the
    model's `evaluation_n`) and return the metrics with the date, command and hardware. They are
    written into the model card of `folder` when it is a run folder (never into the course's
    data/checkpoints) and into the JSON file `out` when given."""
    from diffedu.models.checkpoints import (hardware_description, is_course_data, read_model_card,
                                            write_model_card)

    check_evaluation_n(name, n)
    model = get(name)
    n = n if n is not None else (model.evaluation_n or 0)  # 0: a fixed-size evaluation, which ignores it
    command = f"python -m diffedu evaluate {name}" + (f" --n {n}" if n != (model.evaluation_n or 0) else "")
    metrics = model.evaluate(model.load(device, folder), n)
    metrics.update(measured_with=command, measured_on=time.strftime("%Y-%m-%d"), hardware=hardware_description())
    if folder is not None and not is_course_data(folder):
        model_card = read_model_card(name, folder)
        model_card["metrics"] = metrics
        write_model_card(name, model_card, folder)
    if out is not None:
        Path(out).write_text(json.dumps({"name": name, "folder": str(folder) if folder else "data/checkpoints",
                                         "metrics": metrics}, indent=2) + "\n")
    return metrics


def headline_values(name: str, card: dict, numbers_only: bool = False) -> dict:
    """The headline metrics a model card has: label -> value (numbers_only: those that are numbers)."""
    values = {}
    for label, keys in get(name).headline.items():
        value = card.get("metrics", {})
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and (is_number or not numbers_only):
            values[label] = value
    return values


def lower_is_better(label: str) -> bool:
    return label.upper().startswith("FID")


def why_not_better(name: str, new_card: dict, old_card: dict) -> str | None:
    """Why the model of new_card should not replace the one of old_card without force: a headline
    metric is worse, or the new one has none to compare with. None when it may replace it (no
    better, or nothing to compare against)."""
    old, new = headline_values(name, old_card, numbers_only=True), headline_values(name, new_card, numbers_only=True)
    if not old:
        return None
    shown = ", ".join(f"{label} {value}" for label, value in old.items())
    common = [label for label in old if label in new]
    if not common:
        return f"the new {name} has no metrics to compare with the one it would replace ({shown})"
    worse = [label for label in common
             if (new[label] > old[label] if lower_is_better(label) else new[label] < old[label])]
    if not worse:
        return None
    new_n, old_n = new_card.get("metrics", {}).get("n"), old_card.get("metrics", {}).get("n")
    samples = f"; measured on {new_n} samples against {old_n}" if new_n and old_n and new_n != old_n else ""
    return (f"the new {name} is worse than the one it would replace ("
            + ", ".join(f"{label} {new[label]} against {old[label]}" for label in worse) + samples + ")")


def publish(name: str, source: Path, dest: Path | None = None, force: bool = False) -> Path:
    """Copy a finished model from its run folder into dest (default data/checkpoints), atomically.
    Its files must match the SHA-256s its card lists (CheckpointError otherwise), and it must
    measure at least as well as the model it replaces (PublishRefused otherwise, unless force)."""
    from diffedu.models.checkpoints import CheckpointError, check_finished_run, checkpoint_dir, read_model_card
    from diffedu.models.checkpoints import publish as publish_files

    model = get(name)
    source, dest = Path(source), Path(dest) if dest is not None else checkpoint_dir()
    if source.resolve() == dest.resolve():
        raise CheckpointError(f"{source} is where {name} would be published to: give the run folder, e.g. runs/{name}")
    new_card = check_finished_run(name, list(model.saved_files), source)
    if not force:
        try:
            old_card = read_model_card(name, dest)
        except CheckpointError:  # a damaged card: nothing to compare with, and replacing it is a repair
            old_card = {}
        reason = why_not_better(name, new_card, old_card)
        if reason and not headline_values(name, new_card, numbers_only=True):
            reason += f"; `python -m diffedu evaluate {name} --from {source}` measures it"
        if reason:
            raise PublishRefused(reason)
    return publish_files(list(model.saved_files), source, dest)


def describe(folder: Path | None = None) -> list[dict]:
    """One row per named model for `python -m diffedu models`: name, chapter, what it is, size
    on disk, headline metrics and when they were measured (from its card), whether it is there, and
    "error": what is wrong with its card if it cannot be read ("" if nothing)."""
    from diffedu.models.checkpoints import CheckpointError, checkpoint_dir

    folder = Path(folder) if folder is not None else checkpoint_dir()
    rows = []
    for model in all_models():
        paths = [folder / name for name in model.saved_files]
        present = all(path.exists() for path in paths)
        size = sum(p.stat().st_size for path in paths if path.exists()
                   for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
        error = ""
        try:
            model_card = card(model.name, folder) if present else {}
        except CheckpointError as damaged:
            model_card, error = {}, str(damaged)
        metrics = model_card.get("metrics", {})
        if not isinstance(metrics, dict):
            metrics = {}
        shown = [f"{label} {value}" for label, value in headline_values(model.name, model_card).items()]
        rows.append({"name": model.name, "chapter": model.chapter, "summary": model.summary,
                     "size": size_text(size),
                     "metrics": ", ".join(shown), "measured_on": metrics.get("measured_on", model_card.get("trained_on", "")),
                     "present": present, "error": error})
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
