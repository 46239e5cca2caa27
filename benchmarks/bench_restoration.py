"""Chapter 10's measurements: restoring the first 500 MNIST test digits with the course's models used
as priors, against classical baselines, and editing them with the mini Stable Diffusion. Not part of
the test suite.

    python benchmarks/bench_restoration.py --out benchmarks/results/restoration.json

Each row: accuracy (the course classifier reads the restored digit as the original's label), FID
against test digits 1000..1999 (fid_real_vs_real: the first 500 against those, the floor), PSNR and
SSIM against the original, and seconds for the 500 digits on the CPU (one process, 2 threads).
Diffusion rows use mnist-unet without a label (its null class) unless named mnist-sr; seed 0.

  sr4       y = 4 x 4 block means (7 x 7), noiseless. psnr_mean_of_4: the PSNR of the average of four
            samples (seeds 0-3), an estimate of the posterior mean
  denoise   y = x_0 + 0.5 n
  inpaint   a random half of the pixels (inpaint50), or the bottom half of the image (inpaint_half), missing
  editing   mini-sd, 50 DDIM steps. round_trip: PSNR of inversion and regeneration under the digit's own
            prompt "a handwritten d" at guidance w, with the empty prompt or the source prompt as the
            negative prompt (vae_only: encoding and decoding alone). strength s, w: inversion at w = 1 up
            to s T, regeneration under the prompt of digit (d + 5) mod 10 (3 -> 8, 8 -> 3, 1 -> 6, ...) at w
            with the source prompt as the negative: the classifier's share of the new digit, and the
            correlation over the digits between source and edit of stroke width, slant and ink
            (diffedu.sd.adaptation)

Each finished row is written to --out at once, and a rerun skips rows already there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffedu import classical, editing, restoration, zoo
from diffedu.course.data import load_mnist
from diffedu.metrics import classifier_features, fid, load_classifier, predict_labels, psnr, restoration_metrics
from diffedu.models.checkpoints import hardware_description
from diffedu.sd.adaptation import ink_fraction, slant, stroke_width

COUNT = 500
NOISE_STD = 0.5
EDIT_SHIFT = 5  # the edit's target digit: (d + EDIT_SHIFT) mod 10
EDIT_STEPS = 50
EDIT_STRENGTHS = (1.0, 0.8)  # invert to s T: a smaller s keeps more of the source
EDIT_GUIDANCES = (1.0, 1.5, 2.0, 3.0)
ROUND_TRIP_GUIDANCES = (1.0, 3.0, 7.5)  # 7.5: Stable Diffusion's default


def masks(count: int) -> dict[str, torch.Tensor]:
    """keep (count or 1, 1, 28, 28): a random half of the pixels (seed 0), and the top half of the image."""
    random_half = (torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    top_half = torch.zeros(1, 1, 28, 28)
    top_half[..., :14, :] = 1
    return {"inpaint50": random_half, "inpaint_half": top_half}


def mean_psnr(images: torch.Tensor, originals: torch.Tensor) -> float:
    return round(psnr(images, originals).mean().item(), 2)  # as restoration_metrics rounds it


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1].item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/restoration.json"))
    parser.add_argument("--count", type=int, default=COUNT)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("rows", {})
    test = load_mnist("test")
    originals, labels, reference = test.images[: args.count], test.labels[: args.count], test.images[1000:2000]
    classifier = load_classifier()
    reference_features = classifier_features(classifier, reference)  # once, for every row's FID
    results.update(count=args.count, hardware=hardware_description(), measured_on=time.strftime("%Y-%m-%d"),
                   fid_real_vs_real=round(fid(classifier, originals, reference), 2))
    unet, schedule = zoo.load("mnist-unet")
    upscaler, upscaler_schedule = zoo.load("mnist-sr")

    def record(task: str, name: str, restore, samples: int = 1) -> None:
        key = f"{task}/{name}"
        if key in results["rows"]:
            return
        start = time.perf_counter()
        images = restore(0)
        seconds = time.perf_counter() - start
        row = restoration_metrics(images, originals, labels, classifier=classifier, reference_features=reference_features)
        row["seconds"] = round(seconds, 1)
        if samples > 1:
            mean = torch.stack([images] + [restore(seed) for seed in range(1, samples)]).mean(0)
            row["psnr_mean_of_4"] = mean_psnr(mean, originals)
        results["rows"][key] = row
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(key, row, flush=True)

    # x4 super-resolution
    down = restoration.Downsample(4)
    y = restoration.observe(originals, down)
    record("sr4", "bicubic", lambda seed: classical.bicubic_upsample(y))
    record("sr4", "nearest (A+ y)", lambda seed: down.pinv(y))
    record("sr4", "mnist-sr 20", lambda seed: restoration.upscale(upscaler, upscaler_schedule, y, 20, seed=seed), samples=4)
    record("sr4", "ddnm 50", lambda seed: restoration.restore(unet, schedule, y, down, "ddnm", 50, seed=seed, progress=False),
           samples=4)
    record("sr4", "sdedit 50 (k <= 500)", lambda seed: restoration.restore(unet, schedule, y, down, "sdedit", 50, seed=seed,
                                                                            progress=False))
    record("sr4", "dps 100", lambda seed: restoration.restore(unet, schedule, y, down, "dps", 100, seed=seed, progress=False),
           samples=4)

    # denoising
    noisy = restoration.observe(originals, restoration.Identity(), NOISE_STD, torch.Generator().manual_seed(1))
    identity = restoration.Identity()
    record("denoise", "noisy input", lambda seed: noisy.clamp(-1, 1))
    for sigma in (1.0, 1.5):
        record("denoise", f"gaussian {sigma}", lambda seed: classical.gaussian_denoise(noisy, sigma))
    record("denoise", "median 3", lambda seed: classical.median_denoise(noisy, 3))
    record("denoise", "denoise 20", lambda seed: restoration.restore(unet, schedule, noisy, identity, "denoise", 20,
                                                                      NOISE_STD, seed=seed, progress=False))
    record("denoise", "dps 100", lambda seed: restoration.restore(unet, schedule, noisy, identity, "dps", 100, seed=seed,
                                                                   progress=False))

    # inpainting
    for task, keep in masks(args.count).items():
        mask = restoration.Mask(keep)
        observed = restoration.observe(originals, mask)
        record(task, "nearest fill", lambda seed: classical.nearest_fill(observed, keep))
        record(task, "ddnm 50", lambda seed: restoration.restore(unet, schedule, observed, mask, "ddnm", 50, seed=seed,
                                                                  progress=False))
        record(task, "dps 100", lambda seed: restoration.restore(unet, schedule, observed, mask, "dps", 100, seed=seed,
                                                                  progress=False))

    # editing with mini-sd
    pipe = zoo.load("mini-sd")
    source = [f"a handwritten {d}" for d in labels.tolist()]
    targets = (labels + EDIT_SHIFT) % 10
    target = [f"a handwritten {d}" for d in targets.tolist()]
    key = "editing/round_trip"
    if key not in results["rows"]:
        vae_only = editing.decode_latents(pipe, editing.encode_images(pipe, originals))
        row = {"vae_only_psnr": mean_psnr(vae_only, originals), "guidances": list(ROUND_TRIP_GUIDANCES)}
        for guidance in ROUND_TRIP_GUIDANCES:
            for negative, name in ((None, "empty"), (source, "source")):
                if guidance == 1.0 and name == "source":
                    continue  # w = 1 uses no negative prompt
                noise = editing.invert(pipe, originals, source, EDIT_STEPS, guidance, negative)
                back = editing.regenerate(pipe, noise, source, EDIT_STEPS, guidance, negative)
                row[f"w{guidance}_negative_{name}_psnr"] = mean_psnr(back, originals)
        results["rows"][key] = row
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(key, row, flush=True)
    for strength, guidance in [(strength, w) for strength in EDIT_STRENGTHS for w in EDIT_GUIDANCES]:
        key = f"editing/strength {strength} w {guidance}"
        if key in results["rows"]:
            continue
        start = time.perf_counter()
        negative = source if guidance != 1.0 else None
        noise = editing.invert(pipe, originals, source, EDIT_STEPS, 1.0, None, strength)
        edited = editing.regenerate(pipe, noise, target, EDIT_STEPS, guidance, negative, strength)
        share = (predict_labels(classifier, edited) == targets).float().mean().item()
        row = {"strength": strength, "guidance": guidance, "edit_accuracy": round(share, 4),
               "stroke_width_correlation": round(correlation(stroke_width(originals), stroke_width(edited)), 3),
               "slant_correlation": round(correlation(slant(originals), slant(edited)), 3),
               "ink_correlation": round(correlation(ink_fraction(originals), ink_fraction(edited)), 3),
               "seconds": round(time.perf_counter() - start, 1)}
        results["rows"][key] = row
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(key, row, flush=True)

if __name__ == "__main__":
    main()
