"""Where real Stable Diffusion comes from, and the offline fallback (chapter 05).

Model ids on the Hugging Face Hub move: `runwayml/stable-diffusion-v1-5` was deleted in 2024,
and courses that hard-code it break. The registry below lists, for each model the course
uses, the ids to try in order. `load_text_to_image` picks the real model only when it can
work (a CUDA GPU, the Hub reachable within a few seconds) and otherwise says so in one line
and loads the course's own mini Stable Diffusion from data/checkpoints: the same pipeline
class, the same calls.

    DIFFEDU_SD=offline   always the mini model (no network traffic)
    DIFFEDU_SD=online    try the real model even without a GPU (slow on a CPU: minutes per image)
    DIFFEDU_SD=auto      the default: online only with a CUDA GPU and a reachable Hub
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from diffedu.course.online import HUB_URL, can_reach

REGISTRY = {  # first id that loads wins; the mirrors hold the original weights
    "sd-v1.5": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "sd-legacy/stable-diffusion-v1-5"),
    "sd-v1.5-inpainting": ("stable-diffusion-v1-5/stable-diffusion-inpainting", "sd-legacy/stable-diffusion-inpainting"),
}
ADAPTERS = {  # public adaptations of SD v1.5 (chapter 09), kind -> (what it is, ids to try in order)
    "lcm-lora": ("lora", ("latent-consistency/lcm-lora-sdv1-5",)),  # a LoRA that samples in 4-8 steps
    "controlnet-canny": ("controlnet", ("lllyasviel/control_v11p_sd15_canny", "lllyasviel/sd-controlnet-canny")),
    "ti-cat-toy": ("textual_inversion", ("sd-concepts-library/cat-toy",)),  # the word <cat-toy>
}
EXAMPLE_PROMPT = "a photo of an astronaut riding a horse on the moon"
BACKEND_ENV_VAR = "DIFFEDU_SD"
BACKENDS = ("auto", "online", "offline")


@dataclass
class LoadedPipeline:
    """A pipeline, where it came from ("online: <model id>" or "offline: mini-sd"), and why."""

    pipe: object
    source: str
    message: str

    @property
    def online(self) -> bool:
        return self.source.startswith("online")


def model_ids(kind: str) -> tuple[str, ...]:
    """The Hub ids to try for a model kind, in order."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown model kind {kind!r}: choose one of {', '.join(REGISTRY)}")
    return REGISTRY[kind]


def choose_backend(device: torch.device, prefer: str | None = None, timeout: float = 3.0) -> tuple[str, str]:
    """("online" or "offline", the reason in one line). `prefer` defaults to $DIFFEDU_SD or "auto"."""
    device = torch.device(device)
    prefer = (prefer or os.environ.get(BACKEND_ENV_VAR, "auto")).strip().lower()
    if prefer not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV_VAR} / prefer must be one of {', '.join(BACKENDS)}, got {prefer!r}")
    if prefer == "offline":
        return "offline", "offline by choice (DIFFEDU_SD=offline)"
    if prefer == "auto" and device.type != "cuda":
        return "offline", f"no CUDA GPU ({device.type}): real Stable Diffusion would take minutes per image here"
    if not can_reach(HUB_URL, timeout=timeout):
        return "offline", f"the Hugging Face Hub is not reachable within {timeout:.0f} s"
    return "online", f"{device.type} and the Hub are available"


def load_text_to_image(kind: str = "sd-v1.5", device: torch.device | None = None, prefer: str | None = None,
                       timeout: float = 3.0) -> LoadedPipeline:
    """Real Stable Diffusion when it can work, else the course's mini model; never raises for
    a missing network, and prints one line saying which it loaded and why."""
    from diffedu.course.device import get_device
    from diffedu.sd.memory import apply_settings, choose_settings
    from diffedu.sd.mini import load_pipeline

    model_ids(kind)  # an unknown kind is an error online and offline
    device = torch.device(device) if device is not None else get_device()
    backend, reason = choose_backend(device, prefer, timeout)
    if backend == "online":
        pipeline_class = _pipeline_class(kind)
        settings = choose_settings(device)
        failures = []
        for model_id in model_ids(kind):
            try:
                pipe = pipeline_class.from_pretrained(model_id, dtype=settings.dtype, safety_checker=None,
                                                      requires_safety_checker=False)
            except Exception as error:  # a moved id, a timeout, a gated model: try the next one
                failures.append(f"{model_id}: {type(error).__name__}")
                continue
            apply_settings(pipe, settings)
            loaded = LoadedPipeline(pipe, f"online: {model_id}", f"loaded {model_id} ({settings.reason})")
            print(loaded.message)
            return loaded
        reason = "no registry id could be loaded (" + "; ".join(failures) + ")"
    pipe = load_pipeline(device)
    if kind.endswith("inpainting"):
        from diffusers import StableDiffusionInpaintPipeline

        pipe = StableDiffusionInpaintPipeline(**pipe.components, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
    loaded = LoadedPipeline(pipe, "offline: mini-sd", f"using the course's mini Stable Diffusion: {reason}")
    print(loaded.message)
    return loaded


def _pipeline_class(kind: str):
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    model_ids(kind)  # checks the kind
    return StableDiffusionInpaintPipeline if kind.endswith("inpainting") else StableDiffusionPipeline


def load_adapter(pipe, kind: str, adapter_name: str | None = None):
    """Load a public adaptation of SD v1.5 from the Hub (ADAPTERS), trying its ids in order, with
    the loader Diffusers has for it: pipe.load_lora_weights, pipe.load_textual_inversion, or
    ControlNetModel.from_pretrained (returned, for StableDiffusionControlNetPipeline). Returns
    (the id that loaded, the ControlNet or None). Online only: chapter 09 calls it when
    load_text_to_image loaded the real model."""
    if kind not in ADAPTERS:
        raise ValueError(f"unknown adapter {kind!r}: choose one of {', '.join(ADAPTERS)}")
    what, ids = ADAPTERS[kind]
    failures = []
    for model_id in ids:
        try:
            if what == "lora":
                pipe.load_lora_weights(model_id, adapter_name=adapter_name or kind.replace("-", "_"))
                return model_id, None
            if what == "textual_inversion":
                pipe.load_textual_inversion(model_id)
                return model_id, None
            from diffusers import ControlNetModel

            return model_id, ControlNetModel.from_pretrained(model_id, dtype=pipe.unet.dtype).to(pipe.device)
        except Exception as error:  # a moved id, a timeout: try the next one
            failures.append(f"{model_id}: {type(error).__name__}")
    raise RuntimeError(f"could not load {kind} from the Hub (" + "; ".join(failures) + "): check the connection, "
                       "or add a working id to diffedu/sd/hub.py's ADAPTERS")
