"""The speed/quality frontier of samplers for the shipped pixel (chapter 03) and latent
(chapter 04) models, and a guidance sweep (chapter 06). Not part of the test suite.

For each model, sampler and number of steps it draws n class-conditional samples (digits
0-9 in turn, seed 0) and records time per image, model calls per image, and on the MNIST
classifier's features: FID and KID against the first n test digits, precision and recall
(k = 3), Inception-Score-style score and accuracy. KID is the mean (and standard deviation)
over 20 random halves of each set.

    python benchmarks/bench_frontier.py --out benchmarks/results/frontier.json
    python benchmarks/bench_frontier.py --n 200 --models mnist-ldm --out /tmp/small.json

Samplers: "ancestral" (eta = 1 on strided steps; "ddpm" at 1000 steps is Ho et al.'s DDPM), "ddim" (eta = 0,
trailing spacing) and "pf-heun" (probability-flow ODE, chapter 07, Karras spacing; N steps
cost 2N - 2 model calls). The frontier is measured at guidance w = 1 (one model call per
step); the sweep varies w at DDIM 20. Each finished row is written to --out at once, and a
rerun skips rows already there, so an interrupted run loses at most one row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffedu.models.checkpoints import hardware_description
from diffedu.course.data import load_mnist
from diffedu import zoo
from diffedu.metrics import (
    class_probabilities,
    classifier_features,
    fid_from_features,
    inception_score_from_probs,
    kid_from_features,
    load_classifier,
    precision_recall,
)
from diffedu.generate import generate, model_calls as sampler_calls

DDIM_STEPS = (5, 10, 20, 50, 100, 250)
DDPM_STEPS = (5, 10, 20, 50, 100, 250, 1000)
HEUN_STEPS = (6, 11, 26, 51)  # 10, 20, 50 and 100 model calls
GUIDANCES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0)
SWEEP_STEPS = 20


def model_calls(sampler: str, steps: int, guidance: float) -> int:
    """Model evaluations per image: guidance w = 1 (conditional) and w = 0 (unconditional) take
    one pass per step, any other w two (eq. 3.3)."""
    return sampler_calls(sampler, steps) * (1 if guidance in (0.0, 1.0) else 2)


def load_draw(name: str):
    """draw(n, sampler, steps, guidance, labels) -> images (n, 1, 28, 28) for a shipped model."""
    if name == "mnist-unet":
        model, schedule = zoo.load("mnist-unet")

        def draw(n, sampler, steps, guidance, labels):
            spacing = "karras" if sampler == "pf-heun" else "trailing"
            return generate(model, n, sampler, steps, schedule=schedule, seed=0, labels=labels, guidance=guidance, progress=False,
                            spacing=spacing)
    else:
        ldm = zoo.load("mnist-ldm")

        def draw(n, sampler, steps, guidance, labels):
            spacing = "karras" if sampler == "pf-heun" else "trailing"
            return ldm.sample(n, sampler, steps, seed=0, labels=labels, guidance=guidance, progress=False, spacing=spacing)
    return draw


def measure(draw, classifier, real_features, sampler: str, steps: int, guidance: float, n: int) -> dict:
    labels = torch.arange(n) % 10
    start = time.perf_counter()
    images = draw(n, sampler, steps, guidance, labels)
    seconds = time.perf_counter() - start
    features = classifier_features(classifier, images)
    probs = class_probabilities(classifier, images)
    kid_mean, kid_std = kid_from_features(features, real_features, subset_size=n // 2, num_subsets=20)
    precision, recall = precision_recall(real_features, features)
    return {
        "sampler": sampler, "steps": steps, "guidance": guidance, "n": n,
        "model_calls": model_calls(sampler, steps, guidance),
        "seconds": round(seconds, 1), "ms_per_image": round(1000 * seconds / n, 2),
        "fid": round(fid_from_features(features, real_features), 3),
        "kid": float(f"{kid_mean:.4g}"), "kid_std": float(f"{kid_std:.3g}"),
        "precision": round(precision, 4), "recall": round(recall, 4),
        "inception_score": round(inception_score_from_probs(probs), 3),
        "accuracy": round((probs.argmax(1) == labels).double().mean().item(), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="samples per row (default 1000)")
    parser.add_argument("--models", nargs="+", default=["mnist-ldm", "mnist-unet"], choices=["mnist-unet", "mnist-ldm"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results (resumed if it exists)")
    parser.add_argument("--skip", nargs="*", default=[], metavar="MODEL:SAMPLER:STEPS",
                        help="frontier rows not to run, e.g. mnist-unet:ddim:250")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = json.loads(args.out.read_text()) if args.out.exists() else {"rows": []}
    if results.get("n", args.n) != args.n:
        raise SystemExit(f"{args.out} holds rows for n = {results['n']}; use another --out for n = {args.n}")
    results.update(n=args.n, threads=args.threads, hardware=hardware_description())
    classifier = load_classifier()
    test_images = load_mnist("test").images
    real_features = classifier_features(classifier, test_images[: args.n])
    other_real = classifier_features(classifier, test_images[args.n: 2 * args.n])
    precision, recall = precision_recall(real_features, other_real)
    results["real_vs_real"] = {"fid": round(fid_from_features(other_real, real_features), 3),
                               "kid": float(f"{kid_from_features(other_real, real_features, args.n // 2, 20)[0]:.4g}"),
                               "precision": round(precision, 4), "recall": round(recall, 4)}
    print("real vs real:", results["real_vs_real"], flush=True)

    plan = []
    for name in args.models:
        plan += [(name, "sweep", "ddim", SWEEP_STEPS, w) for w in GUIDANCES]
        runs = ([("ddim", s) for s in DDIM_STEPS] + [("pf-heun", s) for s in HEUN_STEPS]
                + [("ddpm" if s == 1000 else "ancestral", s) for s in DDPM_STEPS])
        plan += [(name, "frontier", sampler, steps, 1.0) for sampler, steps in sorted(runs, key=lambda r: model_calls(r[0], r[1], 1.0))]
    done = {(r["model"], r["table"], r["sampler"], r["steps"], r["guidance"]) for r in results["rows"]}
    skipped = {tuple(entry.split(":")[:2]) + (int(entry.split(":")[2]),) for entry in args.skip}
    draws = {}
    for name, table, sampler, steps, guidance in plan:
        if (name, table, sampler, steps, guidance) in done or (table == "frontier" and (name, sampler, steps) in skipped):
            continue
        if name not in draws:
            draws[name] = load_draw(name)
        row = {"model": name, "table": table, **measure(draws[name], classifier, real_features, sampler, steps, guidance, args.n)}
        results["rows"].append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
