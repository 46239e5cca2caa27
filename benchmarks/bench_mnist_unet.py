"""Benchmark of the shipped chapter-03 UNet (not part of the test suite).

Prints training throughput (images/s), sampling time per image for DDPM (1000 steps) and
DDIM (50/20/10 steps), FID of the samples (classifier features, vs the MNIST test set) at
each, and conditional accuracy with and without guidance.

    python benchmarks/bench_mnist_unet.py                 # DDIM rows: 1,000 samples; DDPM: 200
    python benchmarks/bench_mnist_unet.py --ddpm-n 1000   # DDPM on 1,000 samples too (slow on a CPU)

FID grows as the sample set shrinks, so each row is printed next to the FID between two
sets of real test digits of the same size.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from diffedu.models.checkpoints import hardware_description
from diffedu.course.data import load_mnist
from diffedu.metrics import accuracy, fid, load_classifier
from diffedu import zoo
from diffedu.generate import generate
from diffedu.zoo.mnist_unet import TRAIN as MNIST_UNET_TRAIN

from bench_cpu_settings import throughput  # the same training-step timing, in the default CPU settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="samples per DDIM setting (default 1000)")
    parser.add_argument("--ddpm-n", type=int, default=200, help="samples for DDPM, 1000 steps each (default 200; 0 skips)")
    parser.add_argument("--guidance", type=float, default=2.0, help="guidance scale for the guided rows")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, schedule = zoo.load("mnist-unet")
    classifier = load_classifier()
    test_images = load_mnist("test").images
    results = {"hardware": hardware_description(), "rows": []}

    ips = throughput(torch.get_num_threads(), channels_last=False, compiled=False, steps=20)
    results["training_images_per_second"] = round(ips, 1)
    print(f"training throughput: {ips:.0f} images/s (batch {MNIST_UNET_TRAIN.batch_size})")
    real_fid = {}
    for n in sorted({args.n, args.ddpm_n} - {0}):
        real_fid[n] = round(fid(classifier, test_images[:n], test_images[n: 2 * n]), 3)
        print(f"FID real vs real ({n} vs {n} test digits): {real_fid[n]}")
    results["fid_real_vs_real"] = real_fid

    settings_to_run = [("ddim", 50, args.n), ("ddim", 20, args.n), ("ddim", 10, args.n), ("ddpm", 1000, args.ddpm_n)]
    print(f"{'sampler':>10} {'guidance':>8} {'n':>5} {'s/image':>8} {'total s':>8} {'FID':>7} {'real FID':>8} {'accuracy':>8}")
    for sampler, steps, n in settings_to_run:
        if n <= 0:
            continue
        labels = torch.arange(n) % 10
        for guidance in ((args.guidance,) if sampler == "ddpm" else (1.0, args.guidance)):
            start = time.perf_counter()
            images = generate(model, n, sampler, steps, schedule=schedule, seed=0, labels=labels, guidance=guidance, progress=False)
            seconds = time.perf_counter() - start
            row = {
                "sampler": f"{sampler}{steps}", "guidance": guidance, "n": n,
                "seconds_per_image": round(seconds / n, 4), "seconds_total": round(seconds, 1),
                "fid": round(fid(classifier, images, test_images[:n]), 3),
                "accuracy": round(accuracy(classifier, images, labels), 4),
            }
            results["rows"].append(row)
            print(f"{row['sampler']:>10} {guidance:>8} {n:>5} {row['seconds_per_image']:>8} {row['seconds_total']:>8} "
                  f"{row['fid']:>7} {real_fid[n]:>8} {row['accuracy']:>8}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
