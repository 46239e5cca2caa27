"""Chapter 08's measurements: the flow against the diffusion model at equal model calls, the time
grid's shift, and the speed/quality frontier of every digit-drawing course model, with the
few-step model's time for 1,000 digits. Not part of the test suite.

    python benchmarks/bench_flow.py --out benchmarks/results/flow.json

fid_real_vs_real: the next n test digits against the first n, the floor of every FID below.
Tables (each row: FID against the first n MNIST test digits on the course classifier's features,
accuracy of the intended digit, seconds for the n digits; digits 0-9 in turn, seed 0):
  side_by_side  mnist-unet (DDIM, trailing) and mnist-flow (Euler) at 5, 10, 20, 50 steps,
                guidance w = 1 and 1.25 (mnist-flow's recommended)
  shift         mnist-flow, Euler 5, 10 and 20 steps, w = 1.25, shift 1, 2 and 3 (eq. 8.10)
  frontier      every digit model at its recommended guidance: mnist-unet (w = 1.5) and mnist-ldm
                (w = 1.5) with DDIM, mnist-flow (w = 1.25: its side_by_side rows) with Euler, and
                mnist-fast at 1, 2 and 4 steps (no guidance: it is built in; its seconds are the speed
                table's best of 5, one run's time being noisier than these short runs are long)
                and the one-step models mnist-consistency and mnist-meanflow at 1 and 2 calls (likewise)
  speed         mnist-fast, 1,000 digits at 1, 2 and 4 steps, mnist-consistency and mnist-meanflow at 1 and 2:
                the best and the median of 5 timed runs
flop_limit: the UNet's FLOPs per call and image (FlopCounterMode), the CPU's float32 peak (a 1024^2 matrix
product) and their ratio for 1,000 digits at one call: the time no float32 implementation can beat (11.2).

"Steps" count sampler steps; with guidance each step evaluates the network on a batch twice as large.
All models sample in batches of 250 (guided: 500 network inputs), the fastest size on the 2-core CPU.
Each finished row is written to --out at once, and a rerun skips rows already there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from diffedu import zoo
from diffedu.course.data import load_mnist
from diffedu.metrics import accuracy, classifier_features, fid_from_features, load_classifier
from diffedu.models.checkpoints import hardware_description

STEPS = (5, 10, 20, 50)
SIDE_BY_SIDE_GUIDANCE = (1.0, 1.25)
BATCH_SIZE = 250
SHIFTS = (1.0, 2.0, 3.0)
FAST_STEPS = (1, 2, 4)
ONE_STEP = {"mnist-consistency": (1, 2), "mnist-meanflow": (1, 2)}
GUIDANCE_BUILT_IN = ("mnist-fast", *ONE_STEP)  # they take labels and no guidance


def plan() -> list[tuple]:
    """(table, model, steps, guidance, shift) for every row, cheapest tables first."""
    rows = [("speed", "mnist-fast", steps, 1.0, 1.0) for steps in FAST_STEPS]
    rows += [("frontier", "mnist-fast", steps, 1.0, 1.0) for steps in FAST_STEPS]
    rows += [("speed", name, steps, 1.0, 1.0) for name, calls in ONE_STEP.items() for steps in calls]
    rows += [("frontier", name, steps, 1.0, 1.0) for name, calls in ONE_STEP.items() for steps in calls]
    rows += [("frontier", "mnist-ldm", steps, 1.5, 1.0) for steps in STEPS]
    rows += [("frontier", "mnist-unet", steps, 1.5, 1.0) for steps in STEPS]
    rows += [("side_by_side", name, steps, w, 1.0) for w in SIDE_BY_SIDE_GUIDANCE for name in ("mnist-unet", "mnist-flow")
             for steps in STEPS]
    rows += [("shift", "mnist-flow", steps, 1.25, shift) for steps in (5, 10, 20) for shift in SHIFTS if shift != 1.0]
    return rows


def draw_fn(name: str):
    model = zoo.get(name)
    loaded = model.load("cpu", None)

    def draw(n: int, steps: int, guidance: float, shift: float) -> torch.Tensor:
        labels = torch.arange(n) % 10
        options = {"shift": shift} if shift != 1.0 else {}
        if name in GUIDANCE_BUILT_IN:
            return model.sample(loaded, n, steps=steps, labels=labels, seed=0, batch_size=BATCH_SIZE, progress=False)
        return model.sample(loaded, n, steps=steps, labels=labels, guidance=guidance, seed=0, batch_size=BATCH_SIZE,
                            progress=False, **options)

    return draw


def flop_limit(n: int) -> dict:
    """The float32 time limit of n digits at one network call each: FLOPs over the measured peak (11.2)."""
    from diffedu.deploy.profiling import count_flops, peak_flops, roofline_seconds

    unet = zoo.load("mnist-flow")  # the same UNet as every model of the frontier's pixel-space rows
    flops = count_flops(unet, torch.zeros(1, 1, 28, 28), torch.zeros(1), torch.zeros(1, dtype=torch.long))
    peak = peak_flops()
    return {"flops_per_call_and_image": flops, "peak_flops_per_second": round(peak), "digits": n,
            "seconds_at_one_call": round(roofline_seconds(n, 1, flops, peak), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="samples per row (default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results (resumed if it exists)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = json.loads(args.out.read_text()) if args.out.exists() else {"rows": []}
    results.update(n=args.n, threads=args.threads, batch_size=BATCH_SIZE, hardware=hardware_description())
    classifier = load_classifier()
    test_images = load_mnist("test").images
    real_features = classifier_features(classifier, test_images[: args.n])
    results["fid_real_vs_real"] = round(fid_from_features(classifier_features(classifier, test_images[args.n: 2 * args.n]),
                                                          real_features), 3)  # the next n test digits: FID's floor at this n
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    if "flop_limit" not in results:
        results["flop_limit"] = flop_limit(args.n)
        args.out.write_text(json.dumps(results, indent=1))
    done = {(r["table"], r["model"], r["steps"], r["guidance"], r["shift"]) for r in results["rows"]}
    draws = {}
    for table, name, steps, guidance, shift in plan():
        if (table, name, steps, guidance, shift) in done:
            continue
        draw = draws.setdefault(name, draw_fn(name))
        row = {"table": table, "model": name, "steps": steps, "guidance": guidance, "shift": shift, "n": args.n}
        if table == "speed":
            draw(args.n, steps, guidance, shift)  # warm-up
            times = []
            for _ in range(5):
                start = time.perf_counter()
                draw(args.n, steps, guidance, shift)
                times.append(time.perf_counter() - start)
            row.update(best_seconds=round(min(times), 2), median_seconds=round(statistics.median(times), 2))
        else:
            labels = torch.arange(args.n) % 10
            start = time.perf_counter()
            images = draw(args.n, steps, guidance, shift)
            row["seconds"] = round(time.perf_counter() - start, 2)
            if name in GUIDANCE_BUILT_IN:  # the frontier plots the speed table's best of 5 runs, the time chapter 08 quotes
                row["seconds"] = next(r["best_seconds"] for r in results["rows"]
                                      if r["table"] == "speed" and r["model"] == name and r["steps"] == steps)
            row["fid"] = round(fid_from_features(classifier_features(classifier, images), real_features), 3)
            row["accuracy"] = round(accuracy(classifier, images, labels), 4)
        results["rows"].append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
