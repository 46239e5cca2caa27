"""Command line: list, train, sample, evaluate and publish the course's named models (diffedu.zoo), and
restore images with them (chapter 10, diffedu.restore_command).

PyTorch is imported only once a command runs, so `python -m diffedu --help` answers at once.
Every mistake in the arguments gets one line and exit code 2, checked before any work starts
(output folders are tried for writing first); a missing or damaged model, or a file that cannot be
written, gets one line and exit code 1. Ctrl-C exits with 130 and keeps what was done (a training
checkpoint, the samples drawn so far). No command writes over the course's own files (data/,
tests/data) except `publish`, which checks the run's files against its card and keeps a better model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from diffedu import zoo
from diffedu.deploy import commands as deploy_commands
from diffedu.generate import SAMPLERS, check_steps
from diffedu.restore_command import METHODS as RESTORE_METHODS
from diffedu.restore_command import RESTORING_MODELS, TASKS

EXAMPLES = """examples:
  python -m diffedu models                                  the named models: chapter, size, metrics, present or not
  python -m diffedu sample mnist-unet --out digits.npz      64 digits, 0-9 in turn, with the recommended guidance
  python -m diffedu train mnist-unet                        train in runs/mnist-unet (run it again to resume)
  python -m diffedu train mnist-unet --publish              ... and, once finished, replace data/checkpoints/mnist-unet
  python -m diffedu restore mnist-unet --task sr4 --in small.npz --out restored.npz   x4 super-resolution (chapter 10)
"""
SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit integer
SAMPLE_N_MAX = 100_000  # the samples are kept in memory as float32 until written: 0.3 GB at 100,000


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of minutes, got {text}")
    return value


def seed_int(text: str) -> int:
    value = int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be in 0..2**63-1 (a 64-bit seed), got {text}")
    return value


def threads_int(text: str) -> int:
    value, cores = int(text), os.cpu_count() or 1
    if not 1 <= value <= cores:
        raise argparse.ArgumentTypeError(f"must be in 1..{cores}, the CPU threads of this machine, got {value}")
    return value


def sample_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= SAMPLE_N_MAX:
        raise argparse.ArgumentTypeError(f"must be in 1..{SAMPLE_N_MAX}, got {value}: the samples are kept in memory "
                                         "until written; draw more as several files with different --seed")
    return value


def guidance_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (1.0 = no guidance), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffedu", description="Train, sample and evaluate the course's models.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    names = zoo.names()

    models = commands.add_parser("models", help="list the named models: chapter, what it is, size, headline metrics",
                                 description="List every named model (diffedu/zoo/): its chapter, what it is, its size "
                                             "on disk, headline metrics from its model card and when they were measured, "
                                             "and whether it is present.")
    models.add_argument("--from", dest="source", type=Path, help="a folder with models (default: data/checkpoints)")
    models.add_argument("--markdown", action="store_true", help="print the table in Markdown (as in the README)")

    train = commands.add_parser("train", help="train a model in runs/NAME (resumable); --publish copies it into data/checkpoints",
                                description="Train a model from scratch, or resume its run from the last checkpoint. "
                                            "Checkpoints and the model go to runs/NAME; the shipped model in "
                                            "data/checkpoints is replaced only by a finished run, and only with --publish.")
    train.add_argument("name", choices=names, help="which model")
    train.add_argument("--run-dir", type=Path, help="where checkpoints and the model go (default: runs/NAME); "
                       "run the same command again to resume from there")
    train.add_argument("--publish", action="store_true", help="once the run has finished, copy the model into data/checkpoints "
                       "(atomically; the previous files are kept as *.bak until the new ones are in place)")
    train.add_argument("--out", type=Path, help="like --publish, into this folder instead of data/checkpoints")
    train.add_argument("--force", action="store_true", help="publish even if the new model measures worse than the one "
                       "it replaces (or was not measured)")
    train.add_argument("--steps", type=positive_int, help="total optimizer steps, train_steps (default: the model's)")
    train.add_argument("--budget-minutes", type=positive_float, help="stop and save after this many minutes of this run; "
                       "run the command again to continue (default: the model's)")
    train.add_argument("--seed", type=seed_int, help="random seed, 0..2**63-1 (default: 0)")
    train.add_argument("--config", default="default", help="the model's size: default, or big (mnist-unet: a wider UNet "
                       "for several GPUs; see the README)")
    train.add_argument("--grad-accumulation", type=positive_int, help="micro-batches per process and step, whose "
                       "gradients add up: the same steps with less memory (default: 1)")
    train.add_argument("--no-metrics", action="store_true", help="skip measuring the finished model (FID, accuracy: "
                       "minutes on a CPU); `python -m diffedu evaluate NAME --from RUN_DIR` measures it later")
    train.add_argument("--threads", type=threads_int, help="CPU threads for PyTorch (default: PyTorch's choice)")
    train.add_argument("--processes", type=positive_int, default=1, help="train on this many processes of this machine, "
                       "data-parallel (diffedu/launch.py; one per GPU, or CPU processes sharing the cores); several "
                       "machines: torchrun, see the README (default: 1)")

    publish = commands.add_parser("publish", help="copy a finished run's model into data/checkpoints",
                                  description="Copy the finished model of runs/NAME into data/checkpoints (atomically), "
                                              "without training again. Its files must match the SHA-256s in its "
                                              "model card, and its headline metrics must be at least as good as "
                                              "those of the model it replaces (or --force).")
    publish.add_argument("name", choices=names, help="which model")
    publish.add_argument("--from", dest="source", type=Path, help="the run folder (default: runs/NAME)")
    publish.add_argument("--out", type=Path, help="into this folder instead of data/checkpoints")
    publish.add_argument("--force", action="store_true", help="publish even if it measures worse than the model it "
                         "replaces (or was not measured)")

    evaluate = commands.add_parser("evaluate", help="measure a model: print the metrics (into a run's card with --from, "
                                   "a file with --out)",
                                   description="Diffusion models: FID, conditional accuracy and time per guidance scale; "
                                               "the classifier: test accuracy; VAE: PSNR and SSIM of reconstructions of "
                                               "the whole test set. The metrics are printed; with --from RUN_DIR they go "
                                               "into that run's model card, with --out into a JSON file. The course's "
                                               "own cards in data/checkpoints are never rewritten.")
    evaluate.add_argument("name", choices=names, help="which model")
    evaluate.add_argument("--n", type=positive_int, help="samples per measurement, 2..5000, for mnist-unet, mnist-ldm, "
                          "mnist-flow, mnist-fast, mnist-consistency and mnist-meanflow (default: 1000); the others measure a fixed set")
    evaluate.add_argument("--from", dest="source", type=Path, help="a folder with the model, e.g. runs/NAME (default: "
                          "data/checkpoints); its model card gets the metrics")
    evaluate.add_argument("--out", type=Path, help="a .json file to write the metrics to")
    evaluate.add_argument("--device", help="cpu, cuda or mps (default: the fastest there is)")
    evaluate.add_argument("--threads", type=threads_int, help="CPU threads for PyTorch (default: PyTorch's choice)")

    sample = commands.add_parser("sample", help="draw samples from a model into an .npz file",
                                 description="Draw samples and write them to an .npz file: `images` uint8 (N, 28, 28) "
                                             "and, for conditional samples, `labels` int64 (N,). Same seed, same output. "
                                             "By default the digits 0-9 in turn, with the model's recommended guidance.")
    sample.add_argument("name", choices=names, help="which model (one that draws digits: mnist-unet, mnist-ldm, mnist-flow, mnist-fast, "
                        "mnist-consistency, mnist-meanflow)")
    sample.add_argument("--n", type=sample_count, default=64, help=f"how many samples, 1..{SAMPLE_N_MAX} (default: 64)")
    sample.add_argument("--sampler", choices=list(SAMPLERS), help="default: the model's own. " + sampler_help())
    sample.add_argument("--steps", type=int, help="sampler steps, 1..T for diffusion models (T = 1000 for the course's) "
                        "(default: the model's, 50 for diffusion models, 20 for mnist-flow, 4 for mnist-fast, 1 for mnist-consistency and "
                        "mnist-meanflow; ddpm takes all T)")
    sample.add_argument("--seed", type=seed_int, default=0, help="random seed, 0..2**63-1 (default: 0)")
    which = sample.add_mutually_exclusive_group()
    which.add_argument("--label", type=int, help="draw only this digit (0-9)")
    which.add_argument("--all-labels", action="store_true", help="draw the digits 0-9 in turn (the default)")
    which.add_argument("--unconditional", action="store_true", help="draw from the null class: any digit, no guidance")
    sample.add_argument("--guidance", type=guidance_float, help="classifier-free guidance scale w >= 0 (default: the "
                        "model's recommended one, the w with the lowest FID in its evaluation; 1.0 = none)")
    sample.add_argument("--batch-size", type=positive_int, default=500, help="samples computed at once (default: 500)")
    sample.add_argument("--out", type=Path, required=True, help="the .npz file to write (not inside the course's data/)")
    sample.add_argument("--from", dest="source", type=Path, help="a folder with the model, e.g. runs/NAME (default: data/checkpoints)")
    sample.add_argument("--device", help="cpu, cuda or mps (default: the fastest there is)")
    sample.add_argument("--threads", type=threads_int, help="CPU threads for PyTorch (default: PyTorch's choice)")
    restore = commands.add_parser("restore", help="restore images: x4 super-resolution, denoising or inpainting (chapter 10)",
                                  description="Restore observed images with a diffusion model used as a prior (chapter 10) "
                                              "and write them to an .npz file (`images`, uint8 (N, 28, 28)). The input .npz "
                                              "holds `images`: (N, 7, 7) for sr4, (N, 28, 28) for denoise and inpaint, uint8 "
                                              "0..255 or float in [-1, 1]; inpaint also needs `mask` (1 = observed pixel).")
    restore.add_argument("name", choices=RESTORING_MODELS, help="mnist-unet (zero-shot, any task) or mnist-sr "
                         "(the trained x4 upscaler)")
    restore.add_argument("--task", required=True, choices=list(TASKS), help="what happened to the images")
    restore.add_argument("--in", dest="input", type=Path, required=True, help="the .npz file of observations")
    restore.add_argument("--out", type=Path, required=True, help="the .npz file to write (not inside the course's data/)")
    restore.add_argument("--method", choices=RESTORE_METHODS, help="mnist-unet's method (default: "
                         "ddnm for sr4 and inpaint, denoise for denoise; dps works for all three, sdedit for sr4)")
    restore.add_argument("--noise-std", type=float, help="sigma_y of the observation's noise, pixels in [-1, 1] (default: "
                         "0.5 for denoise, 0 otherwise)")
    restore.add_argument("--steps", type=int, help="sampler steps (default: 50; 100 for dps; 20 for mnist-sr)")
    restore.add_argument("--seed", type=seed_int, default=0, help="random seed (default: 0)")
    restore.add_argument("--from", dest="source", type=Path, help="a folder with the model, e.g. runs/NAME (default: data/checkpoints)")
    restore.add_argument("--device", help="cpu, cuda or mps (default: the fastest there is)")
    restore.add_argument("--threads", type=threads_int, help="CPU threads for PyTorch (default: PyTorch's choice)")
    deploy_commands.add_parsers(commands)  # serve, loadtest, web (chapter 11)
    return parser


def cannot_write_in(folder: Path) -> str | None:
    """Why no file can be written in `folder` (made if missing), or None if one can: tried with a
    temporary file, which is what counts (permissions, a read-only disk, /proc)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".diffedu-write-test-"):
            pass
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def check_output_file(path: Path, parser: argparse.ArgumentParser, suffix: str = ".npz") -> None:
    """Fail before any work if `path` cannot be written: a wrong suffix, one of the course's own
    files, a folder in its place, a file where a folder of its path should be, or a folder that
    does not take files."""
    from diffedu.models.checkpoints import is_course_data

    if path.suffix != suffix:
        parser.error(f"--out must name a {suffix} file, got {path}")
    if is_course_data(path):
        parser.error(f"--out {path} is inside the course's own files (data/, tests/data), which commands do not "
                     f"overwrite: write somewhere else, e.g. --out {path.name}")
    if path.is_dir():
        parser.error(f"--out {path} is a folder: name a file inside it, e.g. {path / ('samples' + suffix)}")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            parser.error(f"--out {path} cannot be written: {parent} is a file, not a folder")
    problem = cannot_write_in(path.parent)
    if problem:
        parser.error(f"--out {path} cannot be written ({problem} in {path.parent}): choose a folder you can write to")


def check_source(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """--from must be a folder holding the model's weights (a missing card only warns when loading)."""
    if args.source is None:
        return
    if not args.source.is_dir():
        parser.error(f"--from {args.source} is not a folder: give the run folder, e.g. runs/{args.name}")
    weights = args.source / zoo.get(args.name).saved_files[0]
    if not weights.exists():
        from diffedu.models.checkpoints import not_in_run_folder

        parser.error(f"--from {args.source}: {not_in_run_folder(args.name, weights)}")


def check_folder_to_write(path: Path, option: str, parser: argparse.ArgumentParser) -> None:
    """A folder that training or publishing writes into: a folder (or nothing yet) that takes files."""
    if path.exists() and not path.is_dir():
        parser.error(f"{option} {path} is a file, not a folder: give a folder")
    problem = cannot_write_in(path)
    if problem:
        parser.error(f"{option} {path} cannot be written ({problem}): choose a folder you can write to")


def sampler_help() -> str:
    """--sampler's help, from the registry: the samplers for noise predictors, then those for flows."""
    kinds = {"noise": "Diffusion models (noise predictors)", "velocity": "Flows (mnist-flow, mnist-fast)",
             "consistency": "Consistency models (mnist-consistency)", "average-velocity": "MeanFlow (mnist-meanflow)"}
    parts = []
    for kind, title in kinds.items():
        entries = [f"{name} ({sampler.about})" for name, sampler in SAMPLERS.items() if sampler.prediction == kind]
        parts.append(f"{title}: " + "; ".join(entries))
    return ". ".join(parts).replace("%", "%%")


def check_sample_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Validate and complete `sample`'s options (defaults that depend on other options)."""
    model = zoo.get(args.name)
    if model.sample is None:
        parser.error(f"{args.name} does not draw digits with `sample`: choose one of {', '.join(zoo.sampleable())}")
    if args.sampler is None:
        args.sampler = model.samplers[0]
    elif args.sampler not in model.samplers:
        parser.error(f"{args.name} cannot sample with --sampler {args.sampler}: it takes {' or '.join(model.samplers)}")
    if SAMPLERS[args.sampler].all_steps:
        if args.steps is not None:
            parser.error(f"--sampler {args.sampler} takes all the steps of the model's schedule: leave out --steps "
                         "(for fewer, strided steps use --sampler ancestral)")
    else:
        if args.steps is None:
            args.steps = model.default_steps
        try:  # the upper bound, the schedule's T, is checked once the model is loaded
            check_steps(args.sampler, args.steps)
        except ValueError as error:
            parser.error(f"--steps: {error}")
    if args.label is not None and not 0 <= args.label <= 9:
        parser.error(f"--label must be a digit 0-9, got {args.label}")
    if args.unconditional and args.guidance not in (None, 1.0):
        parser.error("--guidance needs digits to steer towards: drop --unconditional, or use --label or --all-labels")
    check_output_file(args.out, parser)
    check_source(args, parser)
    if not args.unconditional and args.label is None and not args.all_labels:
        args.all_labels = True
        if args.guidance is None and model.recommended_guidance is not None:
            args.guidance = model.recommended_guidance
            print(f"drawing the digits 0-9 in turn with guidance w = {args.guidance}, {args.name}'s recommended setting "
                  "(--guidance to change it, --unconditional for unconditional samples)")
    if args.guidance is None:
        args.guidance = 1.0


def check_train_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Where training and publishing write, tried before any work (training can take an hour)."""
    from diffedu.models.checkpoints import checkpoint_dir, is_course_checkpoints, is_course_data

    model = zoo.get(args.name)
    if args.config not in model.configs:
        parser.error(f"{args.name} has no --config {args.config}: it has {', '.join(model.configs)}")
    batch_size = model.train_config.batch_size
    if args.grad_accumulation and batch_size % args.grad_accumulation:
        parser.error(f"--grad-accumulation {args.grad_accumulation} does not split {args.name}'s batch of {batch_size} "
                     "images evenly: choose a divisor of it, e.g. 2 or 4")
    args.run_dir = args.run_dir or zoo.default_run_dir(args.name)
    if is_course_data(args.run_dir):
        parser.error(f"--run-dir {args.run_dir} is inside the course's own files (data/, tests/data), which training "
                     f"must not overwrite: leave it out (runs/{args.name}) or choose another folder")
    check_folder_to_write(args.run_dir, "--run-dir", parser)
    if args.out is not None:
        if is_course_data(args.out) and not is_course_checkpoints(args.out):
            parser.error(f"--out {args.out} is inside the course's own files: use --publish for data/checkpoints, "
                         "or choose another folder")
        check_folder_to_write(args.out, "--out", parser)
    elif args.publish:
        check_folder_to_write(checkpoint_dir(), "--publish: the checkpoints folder", parser)


def check_evaluate_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    try:
        zoo.check_evaluation_n(args.name, args.n)
    except ValueError as error:
        parser.error(str(error))
    check_source(args, parser)
    if args.out is not None:
        check_output_file(args.out, parser, suffix=".json")


def write_atomically(path: Path, write) -> None:
    """write(handle) into a temporary file beside `path`, then rename it: never a half-written file."""
    staged = path.with_name(f".{path.name}.tmp")
    try:
        with open(staged, "wb") as handle:
            write(handle)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def run_sample(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch

    from diffedu.course.data import to_uint8
    from diffedu.generate import SamplingInterrupted

    named = zoo.get(args.name)
    model = named.load(args.device, args.source)
    labels = None
    if args.label is not None:
        labels = torch.full((args.n,), args.label, dtype=torch.long)
    elif args.all_labels:
        labels = torch.arange(args.n, dtype=torch.long) % 10
    start = time.perf_counter()
    code = 0
    try:
        images = named.sample(model, args.n, sampler=args.sampler, steps=args.steps, seed=args.seed, labels=labels,
                              guidance=args.guidance, batch_size=args.batch_size)
    except SamplingInterrupted as interrupted:
        images, code = interrupted.samples, 130
    except ValueError as error:  # what this model cannot do (e.g. guidance for a model with guidance built in)
        print(f"error: {error}", file=sys.stderr)
        return 2
    arrays = {"images": to_uint8(images)}
    if labels is not None:
        arrays["labels"] = labels[: len(images)].numpy().astype(np.int64)
    if code and len(images) == 0:
        print("interrupted before the first batch finished: nothing saved", file=sys.stderr)
        return code
    write_atomically(args.out, lambda handle: np.savez_compressed(handle, **arrays))
    if code:
        print(f"interrupted: saved the {len(images)} of {args.n} samples drawn so far to {args.out}", file=sys.stderr)
    else:
        print(f"wrote {args.n} samples to {args.out} in {time.perf_counter() - start:.1f} s")
    return code


def run_restore(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from diffedu.course.data import to_uint8
    from diffedu.restore_command import restore

    start = time.perf_counter()
    images = restore(args.name, args.task, args.observation, args.method, args.steps, args.noise_std, args.seed,
                     args.device, args.source)
    write_atomically(args.out, lambda handle: np.savez_compressed(handle, images=to_uint8(images)))
    print(f"restored {len(images)} images ({args.task}, {args.name}, {args.method}, {args.steps} steps) into {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def refused(error: Exception, name: str, source: Path, out: Path | None) -> int:
    """One line for a publish that would replace a better model: what is wrong and how to go ahead."""
    into = f" --out {out}" if out is not None else ""
    print(f"error: not published: {error}. If you want it anyway: `python -m diffedu publish {name} --from {source}{into} "
          "--force`", file=sys.stderr)
    return 1


def run_train(args: argparse.Namespace) -> int:
    from diffedu.distributed import is_main_process
    from diffedu.models.checkpoints import TrainingInterrupted, checkpoint_dir

    run_dir = args.run_dir
    target = args.out or (checkpoint_dir() if args.publish else None)
    overrides = {k: v for k, v in {"train_steps": args.steps, "time_budget_minutes": args.budget_minutes, "seed": args.seed,
                                   "grad_accumulation_steps": args.grad_accumulation}.items() if v is not None}
    try:
        card = zoo.train(args.name, run_dir, run_dir, args.config, measure=not args.no_metrics, **overrides)
    except TrainingInterrupted:  # the training loop has said where it stopped and what it saved
        return 130
    except KeyboardInterrupt:  # before or after the training loop (loading data, measuring)
        if is_main_process():
            saved = (run_dir / "checkpoint.pt").is_file()
            print(f"interrupted: {'the last checkpoint is in ' + str(run_dir) if saved else 'nothing was saved yet'}; "
                  "run the same command again to continue", file=sys.stderr)
        return 130
    if not is_main_process():  # launched with several processes: the first one reports and publishes
        return 0
    if not card.get("finished"):
        print(f"not finished (step {card.get('train_steps')}): the model so far is in {run_dir} (sample it with --from {run_dir}); "
              "run the same command again to continue")
        return 0
    print(f"finished: {card['train_steps']} steps; the model and its card are in {run_dir}")
    if card.get("metrics"):
        print(json.dumps(card["metrics"], indent=2))
    if args.no_metrics:
        print(f"not measured (--no-metrics): `python -m diffedu evaluate {args.name} --from {run_dir}` measures it")
    if target is not None:
        try:
            zoo.publish(args.name, run_dir, target, force=args.force)
        except zoo.PublishRefused as error:
            return refused(error, args.name, run_dir, args.out)
        print(f"published to {target}")
    else:
        print(f"the course's copy in data/checkpoints is unchanged; `python -m diffedu publish {args.name}` replaces it")
    return 0


def run_publish(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from diffedu.models.checkpoints import checkpoint_dir, read_model_card

    source = args.source or zoo.default_run_dir(args.name)
    if not source.is_dir():
        parser.error(f"--from {source} is not a folder: give the run folder of a finished training, e.g. runs/{args.name}")
    card = read_model_card(args.name, source)
    if not card:
        parser.error(f"no finished model '{args.name}' in {source}: train it with `python -m diffedu train {args.name}`")
    if not card.get("finished"):
        parser.error(f"the run in {source} has not finished (step {card.get('train_steps')}): run "
                     f"`python -m diffedu train {args.name}` again to continue it, then publish")
    dest = args.out or checkpoint_dir()
    check_folder_to_write(dest, "--out" if args.out else "the checkpoints folder", parser)
    try:
        zoo.publish(args.name, source, dest, force=args.force)
    except zoo.PublishRefused as error:
        return refused(error, args.name, source, args.out)
    print(f"published {args.name} from {source} to {dest}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from diffedu.models.checkpoints import is_course_data

    metrics = zoo.evaluate(args.name, args.n, args.source, args.device, out=args.out)
    print(json.dumps(metrics, indent=2))
    written = [str(args.out)] if args.out else []
    if args.source is not None and not is_course_data(args.source):
        written.insert(0, f"the model card in {args.source}")
    if written:
        print(f"metrics written to {' and '.join(written)}")
    else:
        print("metrics printed only: the course's model cards are not rewritten (--out FILE.json keeps them)")
    return 0


def run_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.source is not None and not args.source.is_dir():
        parser.error(f"--from {args.source} is not a folder")
    rows = zoo.describe(args.source)
    if args.markdown:
        print(zoo.markdown_table(rows))
    else:
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            where = f"{row['size']:>10}" if row["present"] else "   missing"
            when = f" (measured {row['measured_on']})" if row["measured_on"] else ""
            print(f"{row['name']:{width}} ch. {row['chapter']:02d}  {where}  {row['summary']}")
            if row["metrics"] or row["error"]:
                print(f"{'':{width}}                    {row['metrics'] or 'model card damaged'}{when}")
        if not all(row["present"] for row in rows):
            print("missing models: restore them with `git checkout -- data/checkpoints`, or train them with "
                  "`python -m diffedu train NAME`")
    damaged = [row["error"] for row in rows if row["error"]]
    for error in damaged:
        print(f"error: {error}", file=sys.stderr)
    return 1 if damaged else 0


def without_processes(argv: list[str]) -> list[str]:
    """The command line with its --processes option taken out: what each launched process runs."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "models":
        return run_models(args, parser)
    if args.command in ("serve", "loadtest", "web"):
        try:
            return deploy_commands.run(args)
        except (ValueError, OSError, RuntimeError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    if args.command == "sample":
        check_sample_args(args, parser)
    if args.command == "train":
        check_train_args(args, parser)
        if args.processes > (os.cpu_count() or 1):
            parser.error(f"--processes {args.processes} is more than this machine's {os.cpu_count()} cores: one process "
                         "per GPU, or at most one per core")
        if args.processes > 1 and "RANK" not in os.environ:  # this is the launcher: start the processes
            from diffedu.launch import launch

            return launch([sys.executable, "-m", "diffedu", *without_processes(argv if argv is not None else sys.argv[1:])],
                          args.processes)
    if args.command == "evaluate":
        check_evaluate_args(args, parser)
    if args.command == "restore":
        from diffedu.restore_command import check_restore_args

        check_restore_args(args, parser)
        check_output_file(args.out, parser)
        check_source(args, parser)

    import torch

    from diffedu.models.checkpoints import CheckpointError
    from diffedu.course.data import MnistFileError
    from diffedu.course.device import get_device

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if hasattr(args, "device"):
        try:
            args.device = get_device(args.device)
        except ValueError as error:
            parser.error(str(error))
    try:
        if args.command == "train":
            return run_train(args)
        if args.command == "publish":
            return run_publish(args, parser)
        if args.command == "evaluate":
            return run_evaluate(args)
        if args.command == "restore":
            return run_restore(args)
        return run_sample(args)
    except (CheckpointError, MnistFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a disk that fills up or goes read-only half-way
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error} (free some space or choose another folder)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
