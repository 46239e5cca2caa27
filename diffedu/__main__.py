"""Command line: `python -m diffedu train NAME` and `python -m diffedu sample NAME`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from diffedu.checkpoints import CheckpointError
from diffedu.data import MnistFileError, to_uint8
from diffedu.recipes import SAMPLERS
from diffedu.catalog import EVALUABLE, RECIPES, SAMPLEABLE, evaluate_recipe, load_sampler, train_recipe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffedu", description="Train and sample the course's models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and write data/checkpoints/NAME.{safetensors,json}",
                                description="Train a model from scratch, or resume its run from the last checkpoint.")
    train.add_argument("name", choices=RECIPES, help="which model")
    train.add_argument("--run-dir", type=Path, help="where periodic checkpoints go (default: runs/NAME); "
                       "run the same command again to resume from there")
    train.add_argument("--out", type=Path, help="folder for the finished weights and model card (default: data/checkpoints)")
    train.add_argument("--steps", type=int, help="total optimizer steps (default: the recipe's)")
    train.add_argument("--budget-minutes", type=float, help="stop and save after this many minutes of training")
    train.add_argument("--seed", type=int, help="random seed (default: 0)")
    train.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's choice)")

    evaluate = commands.add_parser("evaluate", help="re-measure a shipped model into its model card",
                                   description="Diffusion models: FID, conditional accuracy and time per guidance scale. "
                                               "VAE: PSNR and SSIM of reconstructions of the whole test set.")
    evaluate.add_argument("name", choices=EVALUABLE, help="which model")
    evaluate.add_argument("--n", type=int, default=1000, help="samples per measurement for diffusion models (default: 1000)")
    evaluate.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's choice)")

    sample = commands.add_parser("sample", help="draw samples from a shipped model into an .npz file",
                                 description="Draw samples and write them to an .npz file: `images` uint8 (N, 28, 28) "
                                             "and, for conditional samples, `labels` int64 (N,). Same seed, same output.")
    sample.add_argument("name", choices=SAMPLEABLE, help="which model")
    sample.add_argument("--n", type=int, default=64, help="how many samples (default: 64)")
    sample.add_argument("--sampler", choices=SAMPLERS, default="ddim",
                        help="ddim (fast, --steps), heun (probability-flow ODE, chapter 07: 2 x steps - 2 model calls) or ddpm (ancestral: all 1000 steps by default, or --steps strided ones)")
    sample.add_argument("--steps", type=int, help="sampler steps (default: 50 for DDIM and Heun, 1000 for DDPM)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    which = sample.add_mutually_exclusive_group()
    which.add_argument("--label", type=int, help="draw only this digit (0-9)")
    which.add_argument("--all-labels", action="store_true", help="draw the digits 0-9 in turn")
    sample.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale w (needs --label or --all-labels; default: 1.0 = none)")
    sample.add_argument("--batch-size", type=int, default=500, help="samples computed at once (default: 500)")
    sample.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    return parser


def run_sample(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    if args.steps is None:
        args.steps = 1000 if args.sampler == "ddpm" else 50
    if not 1 <= args.steps <= 1000:
        parser.error(f"--steps must be in 1..1000, got {args.steps}")
    if args.label is not None and not 0 <= args.label <= 9:
        parser.error(f"--label must be a digit 0-9, got {args.label}")
    if args.guidance != 1.0 and args.label is None and not args.all_labels:
        parser.error("--guidance needs --label or --all-labels (guidance steers towards a class)")
    if args.guidance < 0:
        parser.error(f"--guidance must be >= 0, got {args.guidance}")
    if args.out.suffix != ".npz":
        parser.error(f"--out must name an .npz file, got {args.out}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")

    draw = load_sampler(args.name)
    labels = None
    if args.label is not None:
        labels = torch.full((args.n,), args.label, dtype=torch.long)
    elif args.all_labels:
        labels = torch.arange(args.n, dtype=torch.long) % 10
    start = time.perf_counter()
    images = draw(args.n, args.sampler, args.steps, args.seed, labels, args.guidance, args.batch_size)
    arrays = {"images": to_uint8(images)}
    if labels is not None:
        arrays["labels"] = labels.numpy().astype(np.int64)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.n} samples to {args.out} in {time.perf_counter() - start:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):  # train and evaluate take --threads
        torch.set_num_threads(args.threads)
    try:
        if args.command == "train":
            overrides = {k: v for k, v in {"steps": args.steps, "time_budget_minutes": args.budget_minutes, "seed": args.seed}.items() if v is not None}
            card = train_recipe(args.name, args.run_dir, args.out, **overrides)
            print(f"done: {card['steps']} steps in {card['wall_time_minutes']} min; model card in {(args.out or 'data/checkpoints')}/{args.name}.json")
        elif args.command == "evaluate":
            evaluate_recipe(args.name, args.n)
        else:
            run_sample(args, parser)
    except (CheckpointError, MnistFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
