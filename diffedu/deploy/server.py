"""A web service that draws digits: FastAPI under uvicorn, with dynamic batching (chapter 11).

    python -m diffedu serve                      http://127.0.0.1:8000 (a page to try it at /)
    curl -X POST localhost:8000/generate -H 'content-type: application/json' \\
         -d '{"digit": 7, "n": 8, "seed": 0}' -o sevens.png

Endpoints:
    POST /generate  {"model": "mnist-fast", "digit": 0-9, "n": 1-64, "seed": 0, "steps": 4}
                    or {"model": "mini-sd", "prompt": "a handwritten 3", ...}  ->  a PNG, the n images
                    side by side; headers X-Batch-Images (the model call it ran in) and X-Seconds
    GET  /health    status, models, batching counters, the process's memory
    GET  /          an HTML page that calls /generate

mnist-fast's requests go through a DynamicBatcher (diffedu/deploy/batching.py); mini-sd's prompts
run one at a time (it loads on the first prompt). A bad request gets a 4xx and one line
{"error": "..."}; nothing a client sends stops the server.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffedu.course.device import randn
from diffedu.deploy.batching import DynamicBatcher

MAX_IMAGES = 64  # per request
MAX_PROMPT_CHARACTERS = 200
MODELS = ("mnist-fast", "mini-sd")
ASSETS = Path(__file__).parent / "assets"


class GenerateRequest(BaseModel):
    """The body of POST /generate (unknown fields are refused, so a typo is not silently ignored)."""

    model_config = ConfigDict(extra="forbid")
    model: str = "mnist-fast"
    digit: int | None = Field(None, ge=0, le=9)
    prompt: str | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARACTERS)
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    seed: int = Field(0, ge=0, lt=2**63)
    steps: int | None = Field(None, ge=1, le=50)


@dataclass(frozen=True)
class DigitRequest:
    """One client's ask of mnist-fast: n images of `digit` from the noise of `seed`."""

    digit: int
    n: int
    seed: int
    steps: int


def request_noise(request: DigitRequest, image_shape=(1, 28, 28)) -> torch.Tensor:
    """The request's own x_1 (n, C, H, W), drawn from its seed on the CPU: the same images whatever
    batch it lands in, and the same as `diffedu.generate.generate(model, n, seed=seed)` draws."""
    return randn((request.n, *image_shape), torch.Generator().manual_seed(request.seed))


class DigitGenerator:
    """mnist-fast behind the service: lists of DigitRequests -> lists of images (n, 1, 28, 28) in [-1, 1].

    Args:
        backend: "torch" (the FewStepSampler module, any number of steps) or "onnx" (the same sampler
            exported and run by ONNX Runtime; only the exported number of steps).
        onnx_path: an exported sampler for backend "onnx" (default: export one now, into a temporary folder).
    """

    def __init__(self, backend: str = "torch", onnx_path: str | Path | None = None):
        from diffedu.deploy.onnx_export import FewStepSampler, OnnxSampler, export_sampler
        from diffedu.zoo import mnist_fast

        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        self.backend, self.default_steps = backend, mnist_fast.STUDENT_STEPS
        unet = mnist_fast.load()
        self.samplers = {steps: FewStepSampler(unet, steps) for steps in range(1, 9)}  # share one UNet
        if backend == "onnx":
            if onnx_path is None:  # the shipped model as it is now, never a stale export
                onnx_path = export_sampler(unet, Path(tempfile.mkdtemp(prefix="diffedu-serve-")) / "mnist-fast.onnx",
                                           self.default_steps)
            self.samplers = {self.default_steps: OnnxSampler(onnx_path)}

    def check(self, steps: int) -> None:
        if steps not in self.samplers:
            allowed = f"{min(self.samplers)}..{max(self.samplers)}" if len(self.samplers) > 1 else str(min(self.samplers))
            raise ValueError(f"steps: mnist-fast ({self.backend}) takes {allowed} steps, got {steps}")

    @torch.no_grad()
    def __call__(self, requests: list[DigitRequest]) -> list[torch.Tensor]:
        """One network call per number of steps in the batch (usually one)."""
        results: dict[int, torch.Tensor] = {}
        for steps in sorted({request.steps for request in requests}):
            indices = [i for i, request in enumerate(requests) if request.steps == steps]
            noise = torch.cat([request_noise(requests[i]) for i in indices])  # (sum n, 1, 28, 28)
            labels = torch.cat([torch.full((requests[i].n,), requests[i].digit) for i in indices])  # (sum n,)
            images = self.samplers[steps](noise, labels)
            for i, part in zip(indices, images.split([requests[i].n for i in indices])):
                results[i] = part
        return [results[i] for i in range(len(requests))]


class PromptGenerator:
    """mini-sd behind the service, loaded on the first prompt; one prompt at a time."""

    def __init__(self):
        self.pipe, self.tokenizer, self.lock = None, None, asyncio.Lock()

    def check(self, prompt: str) -> None:
        from diffedu.sd.mini import MAX_TOKENS, load_tokenizer

        self.tokenizer = self.tokenizer or load_tokenizer()
        tokens = len(self.tokenizer(prompt).input_ids)
        if tokens > MAX_TOKENS:
            raise ValueError(f"prompt: {tokens} tokens, and mini-sd reads at most {MAX_TOKENS} (about 10 words)")

    def __call__(self, prompt: str, n: int, seed: int, steps: int) -> torch.Tensor:
        from diffedu.sd.mini import crop_to_28
        from diffedu.zoo import mini_sd

        if self.pipe is None:
            self.pipe = mini_sd.load()
        generator = torch.Generator().manual_seed(seed)
        images = self.pipe([prompt] * n, num_inference_steps=steps, guidance_scale=3.0, generator=generator,
                           output_type="pt").images  # (n, 1, 32, 32) in [0, 1]
        return crop_to_28(images * 2 - 1)


def png_strip(images: torch.Tensor) -> bytes:
    """Images (n, 1, H, W) in [-1, 1] side by side as one grey PNG (H, n W)."""
    from PIL import Image

    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (n, 1, H, W)
    strip = torch.cat(list(pixels[:, 0]), dim=1)  # (H, n W)
    buffer = io.BytesIO()
    Image.fromarray(strip.numpy(), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def memory_mb() -> float:
    """This process's resident memory in MB."""
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def create_app(backend: str = "torch", batching: bool = True, max_batch: int = 64, max_wait_ms: float = 5.0,
               worker_thread: bool = False, onnx_path: str | Path | None = None):
    """The FastAPI app: mnist-fast behind a DynamicBatcher (off with batching=False; each batch in a worker
    thread with worker_thread=True, else on the event loop), mini-sd on demand."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    digits = DigitGenerator(backend, onnx_path)
    prompts = PromptGenerator()
    batcher = DynamicBatcher(digits, size_of=lambda request: request.n, max_batch=max_batch, max_wait_ms=max_wait_ms,
                             enabled=batching, run_in_thread=worker_thread)
    app = FastAPI(title="diffedu", description="Digits from mnist-fast (and prompts through mini-sd), chapter 11.")
    settings = {"backend": backend, "batching": batching, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
                "worker_thread": worker_thread}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def one_line(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first["type"] in ("json_invalid", "model_attributes_type", "dict_type"):
            return error(400, "the body must be a JSON object, e.g. {\"digit\": 7, \"n\": 4} (content-type: application/json)")
        field = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
        if first["type"] == "extra_forbidden":
            return error(422, f"{field}: not a field of /generate (fields: {', '.join(GenerateRequest.model_fields)})")
        return error(422, f"{field}: {first['msg']}")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": {"mnist-fast": f"loaded ({backend})",
                                           "mini-sd": "loaded" if prompts.pipe is not None else "loads on the first prompt"},
                **settings, "counters": batcher.stats.to_dict(), "memory_mb": round(memory_mb(), 1)}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return (ASSETS / "service.html").read_text()

    @app.post("/generate")
    async def generate(body: GenerateRequest):
        start = time.perf_counter()
        if body.model not in MODELS:
            return error(404, f"unknown model {body.model!r}: this server has {', '.join(MODELS)}")
        try:
            if body.model == "mnist-fast":
                if body.digit is None or body.prompt is not None:
                    return error(422, "mnist-fast draws digits: give \"digit\" (0-9) and no \"prompt\"")
                steps = body.steps or digits.default_steps
                digits.check(steps)
                images, batch = await batcher.submit(DigitRequest(body.digit, body.n, body.seed, steps))
            else:
                if body.prompt is None or body.digit is not None:
                    return error(422, "mini-sd draws prompts: give \"prompt\" (e.g. \"a handwritten 3\") and no \"digit\"")
                prompts.check(body.prompt)
                async with prompts.lock:
                    images = await asyncio.to_thread(prompts, body.prompt, body.n, body.seed, body.steps or 20)
                batch = body.n
        except ValueError as bad:
            return error(422, str(bad))
        headers = {"X-Batch-Images": str(batch), "X-Seconds": f"{time.perf_counter() - start:.4f}"}
        return Response(png_strip(images), media_type="image/png", headers=headers)

    return app


def app_from_environment():
    """create_app with the settings `serve` put in DIFFEDU_SERVE (JSON): how each of several uvicorn
    worker processes builds its own app."""
    import json
    import os

    settings = json.loads(os.environ.get("DIFFEDU_SERVE", "{}"))
    threads = settings.pop("threads", None)
    if threads:  # each worker process sets its own
        torch.set_num_threads(threads)
    return create_app(**settings)


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, threads: int | None = None, **settings) -> None:
    """Run the service under uvicorn until Ctrl-C; settings go to create_app. Several workers are
    separate processes, each with its own model and batcher (and `threads` PyTorch threads), sharing the port."""
    import json
    import os

    import uvicorn

    os.environ["DIFFEDU_SERVE"] = json.dumps(dict(settings, threads=threads))
    print(f"serving mnist-fast ({settings.get('backend', 'torch')}, batching "
          f"{'on' if settings.get('batching', True) else 'off'}) at http://{host}:{port} (Ctrl-C stops)", flush=True)
    uvicorn.run("diffedu.deploy.server:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning")
