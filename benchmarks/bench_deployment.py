"""Chapter 11's measurements: where mnist-fast's time goes, what ONNX Runtime, int8, torch.compile and
bf16 change (speed and quality), the digit service under load, and the page in the browser. Not part
of the test suite.

    python benchmarks/bench_deployment.py --out benchmarks/results/deployment.json

One process, torch's 2 threads, the CPU this runs on (its description is recorded).
  profile    FLOPs of one UNet call per image (FlopCounterMode), the float32 FLOP/s of a 1024 x 1024
             matrix product, the roofline (11.2) for 1,000 digits, the operators that take the time, one
             call's seconds at batch sizes 1..256 with PyTorch and ONNX Runtime and their fit (11.3), and
             the parts of one mini-sd run (8 images, 20 steps, guidance 3)
  variants   1,000 digits (0-9 in turn, seed 0, batches of 500): seconds (best of 3 after a warm-up),
             speed-up over PyTorch, largest pixel difference from PyTorch, FID against the first 1,000
             test digits and the classifier's accuracy, and the model file's size
  load       `python -m diffedu serve` (backend torch, torch with --worker-thread, or onnx; batching on or
             off) against 1, 10 and 50 closed-loop clients asking one digit each: 15 s a run, 60 s for
             50 clients with batching on the default server (torch, batches on the event loop),
             each after 3 s of the same load, not measured; a 3 s run with 50 clients first (not counted)
  browser    the page of `python -m diffedu web` in headless Chromium: seconds for 100 digits (seeds
             0-2), and the classifier's accuracy on the three grids

Each finished section is written to --out at once; a rerun skips sections already there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.deploy import profiling
from diffedu.deploy.loadtest import closed_loop, running_server
from diffedu.deploy.onnx_export import FewStepSampler, OnnxSampler, draw_digits, export_sampler, file_megabytes, quantize_int8
from diffedu.metrics import accuracy, classifier_features, fid_from_features, load_classifier
from diffedu.models.checkpoints import hardware_description
from diffedu.zoo import mnist_fast

COUNT = 1000
BATCH_SIZES = (1, 4, 16, 64, 256)
LOAD_CLIENTS = (1, 10, 50)


def profile_section(unet, onnx_file: Path) -> dict:
    sampler = FewStepSampler(unet, mnist_fast.STUDENT_STEPS)
    x, labels = torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long)
    flops = profiling.count_flops(unet, x, torch.full((1,), 500.0), labels)
    peak = profiling.peak_flops()
    labels = torch.arange(COUNT) % 10
    measured = profiling.best_seconds(draw_digits, sampler, labels)
    floor = profiling.roofline_seconds(COUNT, mnist_fast.STUDENT_STEPS, flops, peak)
    by_batch = {"pytorch": profiling.seconds_by_batch(sampler, list(BATCH_SIZES)),
                "onnxruntime": profiling.seconds_by_batch(OnnxSampler(onnx_file), list(BATCH_SIZES))}
    noise, some = torch.randn(100, 1, 28, 28), torch.arange(100) % 10
    return {
        "flops_per_unet_call_and_image": flops, "peak_gflops_per_second": round(peak / 1e9, 1),
        "roofline_seconds_1000": round(floor, 3), "pytorch_seconds_1000": round(measured, 3),
        "share_of_peak": round(floor / measured, 3),
        "top_operators_batch_100": [(name, round(share, 3)) for name, share in profiling.top_operators(sampler, noise, some)],
        "seconds_by_batch": {name: {str(b): round(s, 5) for b, s in table.items()} for name, table in by_batch.items()},
        "fit": {name: dict(zip(("fixed_seconds", "per_image_seconds"), (round(v, 6) for v in profiling.fit_batch_cost(table))))
                for name, table in by_batch.items()},
        "mini_sd": mini_sd_parts(),
    }


def mini_sd_parts(images: int = 8, steps: int = 20, guidance: float = 3.0) -> dict:
    from diffedu.zoo import mini_sd

    pipe = mini_sd.load()
    parts = {"text encoder": pipe.text_encoder, "unet": pipe.unet, "vae decoder": pipe.vae.decoder}
    run = lambda: pipe(["a handwritten 3"] * images, num_inference_steps=steps, guidance_scale=guidance,  # noqa: E731
                       generator=torch.Generator().manual_seed(0), output_type="pt")
    run()  # warm-up
    with profiling.time_modules(parts) as totals:
        total = profiling.timed(run)
    unet_batch = images * (2 if guidance != 1.0 else 1)
    return {"images": images, "steps": steps, "guidance": guidance, "unet_batch": unet_batch, "total_seconds": round(total, 3),
            **{name: round(value, 3) if isinstance(value, float) else value for name, value in totals.items()},
            "other_seconds": round(total - sum(totals[name] for name in parts), 3)}


def variants_section(unet, folder: Path) -> dict:
    classifier = load_classifier()
    reference = classifier_features(classifier, load_mnist("test").images[:COUNT])
    labels = torch.arange(COUNT) % 10
    pytorch = FewStepSampler(unet, mnist_fast.STUDENT_STEPS)
    baseline = draw_digits(pytorch, labels)

    def bf16(noise, labels):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return pytorch(noise, labels).float()

    start = time.perf_counter()
    compiled = torch.compile(pytorch, dynamic=False)
    draw_digits(compiled, labels)
    compile_seconds = time.perf_counter() - start
    onnx_file = folder / "mnist-fast.onnx"
    int8_file = quantize_int8(onnx_file, folder / "mnist-fast-int8.onnx")
    int8_matmul_file = quantize_int8(onnx_file, folder / "mnist-fast-int8-matmul.onnx", operators=("MatMul", "Gemm"))
    variants = {"pytorch": (pytorch, None), "onnxruntime": (OnnxSampler(onnx_file), onnx_file),
                "onnxruntime_int8": (OnnxSampler(int8_file), int8_file),
                "onnxruntime_int8_matmul_only": (OnnxSampler(int8_matmul_file), int8_matmul_file),
                "torch_compile": (compiled, None), "bf16_autocast": (bf16, None)}
    rows = {}
    for name, (sampler, file) in variants.items():
        seconds = profiling.best_seconds(draw_digits, sampler, labels)
        images = draw_digits(sampler, labels)
        rows[name] = {"seconds": round(seconds, 3), "speedup": round(rows["pytorch"]["seconds"] / seconds, 2) if rows else 1.0,
                      "max_abs_difference": float(f"{(images - baseline).abs().max().item():.2g}"),
                      "fid": round(fid_from_features(classifier_features(classifier, images), reference), 2),
                      "accuracy": round(accuracy(classifier, images, labels), 3),
                      "model_mb": round(file_megabytes(file), 2) if file else None}
        print(name, rows[name], flush=True)
    rows["torch_compile"]["compile_seconds"] = round(compile_seconds, 1)
    return rows


def load_section() -> dict:
    runs = []
    for backend, thread in (("torch", False), ("torch", True), ("onnx", False)):
        for batching in (True, False):
            flags = ["--backend", backend] + ([] if batching else ["--no-batching"]) + (["--worker-thread"] if thread else [])
            with running_server(*flags) as url:
                closed_loop(url, 50, 3)  # warm-up: the first batches of each size allocate their memory
                for clients in LOAD_CLIENTS:
                    seconds = 60 if (batching and clients == 50 and backend == "torch" and not thread) else 15
                    result = closed_loop(url, clients, seconds, warmup=3.0)
                    runs.append(dict(result, backend=backend, worker_thread=thread))
                    print(backend, thread, batching, clients, {k: result[k] for k in ("requests_per_second", "latency_ms", "errors")},
                          flush=True)
    return {"runs": runs}


def browser_section(onnx_file: Path) -> dict:
    from diffedu.deploy.web import build_web, draw_in_chromium

    classifier = load_classifier()
    labels = torch.arange(10).repeat_interleave(10)  # row d holds ten d's
    with tempfile.TemporaryDirectory() as folder:
        build_web(folder, model_file=onnx_file)
        results = draw_in_chromium(folder, seeds=(0, 1, 2))
    grids = [torch.tensor(r["pixels"], dtype=torch.float32).reshape(100, 1, 28, 28) / 127.5 - 1 for r in results]
    return {"seconds_100_digits": [round(r["seconds"], 3) for r in results], "threads": results[0]["threads"],
            "accuracy": [round(accuracy(classifier, grid, labels), 3) for grid in grids],
            "outside_requests": sum(len(r["outside"]) for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/deployment.json"))
    parser.add_argument("--only", choices=("profile", "variants", "load", "browser"), help="measure this section again")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.only:
        results.pop(args.only, None)
    results.update(count=COUNT, hardware=hardware_description(), torch_threads=torch.get_num_threads(),
                   measured_on=time.strftime("%Y-%m-%d"))
    unet = mnist_fast.load()
    with tempfile.TemporaryDirectory() as folder:
        onnx_file = export_sampler(unet, Path(folder) / "mnist-fast.onnx", mnist_fast.STUDENT_STEPS)
        sections = {"profile": lambda: profile_section(unet, onnx_file), "variants": lambda: variants_section(unet, Path(folder)),
                    "load": load_section, "browser": lambda: browser_section(onnx_file)}
        for name, measure in sections.items():
            if name in results:
                continue
            print(f"== {name}", flush=True)
            results[name] = measure()
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
