"""The front door, `diffedu.generate`: one registry of samplers that the command line, the named
models and `model_calls` all read; batching, seeding and guidance the same for every model; and
the library's layering (no import cycle, no chapter's module importing a later chapter's)."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from diffedu import generate as front_door
from diffedu.__main__ import main
from diffedu.generate import SAMPLERS, Sampler, generate, model_calls
from diffedu.models.checkpoints import save_checkpoint
from diffedu.models.unet import UNet, UNetConfig
from diffedu.losses import DiffusionSettings
from diffedu.models import build_seeded
from diffedu.samplers import StepOutput
from diffedu.schedules import make_schedule

TINY = UNetConfig(base_channels=8, channel_mults=(1, 1), attention_heads=1, groups=2, patch_size=2)
LIBRARY = Path(__file__).resolve().parents[1] / "diffedu"


def tiny_unet(seed: int = 0, interval_input: bool = False) -> UNet:
    """interval_input: the second time input of a MeanFlow network (the "average-velocity" samplers)."""
    model = build_seeded(lambda: UNet(UNetConfig(**{**TINY.to_dict(), "interval_input": interval_input})), seed).eval()
    with torch.no_grad():  # the output layer starts at zero: give it weights so that predictions are not 0
        model.out_conv.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed))
    return model


class CountingModel(torch.nn.Module):
    """Wraps a UNet and counts forward passes (one per model call when unguided)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0
        self.config, self.null_class = model.config, model.null_class

    def forward(self, x, t, labels=None, **inputs):
        self.calls += 1
        return self.model(x, t, labels, **inputs)


def options_for(name: str) -> dict:
    return {"schedule": make_schedule("cosine", 10)} if SAMPLERS[name].prediction == "noise" else {}


def network_for(name: str, seed: int = 0) -> UNet:
    return tiny_unet(seed, interval_input=SAMPLERS[name].prediction == "average-velocity")


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_makes_exactly_the_model_calls_the_registry_says(name):
    model = CountingModel(network_for(name))
    steps = 10 if SAMPLERS[name].all_steps else 4
    generate(model, 3, name, steps, labels=torch.arange(3), progress=False, **options_for(name))
    assert model.calls == model_calls(name, steps)


@pytest.mark.parametrize("name", [name for name, sampler in SAMPLERS.items() if not sampler.random])
def test_deterministic_samplers_do_not_depend_on_the_batch_size(name):
    model, labels = network_for(name), torch.arange(7) % 10
    whole = generate(model, 7, name, 3, labels=labels, guidance=2.0, seed=3, progress=False, **options_for(name))
    in_pieces = generate(model, 7, name, 3, labels=labels, guidance=2.0, seed=3, batch_size=2, progress=False,
                         **options_for(name))
    assert torch.allclose(whole, in_pieces, atol=1e-6) and whole.shape == (7, 1, 28, 28)


def test_bad_requests_get_one_clear_line():
    model = tiny_unet()
    cases = [
        (dict(sampler="rk4", steps=4), "unknown sampler 'rk4': choose one of ddim"),
        (dict(sampler="ddim", steps=4), "pass the schedule it was trained with"),
        (dict(sampler="euler", steps=4, guidance=2.0), "guidance needs labels"),
        (dict(sampler="euler", steps=4, x_init=torch.zeros(2, 1, 8, 8)), "x_init must have shape"),
        (dict(sampler="euler", steps=0), "euler takes 1 or more steps, got 0"),
        (dict(sampler="pf-heun", steps=1, schedule=make_schedule("linear")), "pf-heun takes 2..1000 steps"),
        (dict(sampler="ddim", steps=1001, schedule=make_schedule("linear")), "ddim takes 1..1000 steps, got 1001"),
        (dict(sampler="ddpm", steps=50, schedule=make_schedule("linear")), "use 'ancestral'"),
        (dict(sampler="euler", steps=2, batch_size=0), "batch_size must be at least 1"),
    ]
    for request, message in cases:
        with pytest.raises(ValueError, match=message):
            generate(model, 2, progress=False, **request)


def test_mixed_precision_is_asked_for_and_changes_nothing_on_a_cpu():
    model, schedule = tiny_unet(), make_schedule("linear")
    plain = generate(model, 2, "ddim", 3, schedule=schedule, progress=False)
    mixed = generate(model, 2, "ddim", 3, schedule=schedule, mixed_precision=True, progress=False)
    assert torch.equal(plain, mixed)


# --- adding a sampler is one registry entry ---------------------------------------------------------

def toy_states(model, x, schedule, timesteps, clip_x0=None, shrink=0.5):
    """A toy sampler: each step calls the model once and moves x towards 0 by a fixed factor."""
    for t in timesteps:
        model(x, torch.full((x.shape[0],), t, dtype=torch.long))
        yield StepOutput(x * shrink, x, t)
        x = x * shrink


def test_a_sampler_added_in_one_place_reaches_the_command_line(tmp_path, monkeypatch):
    module = types.ModuleType("toy_sampler_module")
    module.toy_states = toy_states
    monkeypatch.setitem(sys.modules, "toy_sampler_module", module)
    # the one entry:
    monkeypatch.setitem(SAMPLERS, "toy", Sampler("noise", "toy_sampler_module:toy_states", "a toy: x shrinks by half a step",
                                                 options={"shrink": 0.5}))
    save_checkpoint(tiny_unet(), "mnist-unet", {"unet": TINY.to_dict(), "diffusion": DiffusionSettings().to_dict()},
                    {"notes": "test"}, tmp_path / "checkpoints")
    monkeypatch.setenv("DIFFEDU_DATA", str(tmp_path))
    out = tmp_path / "toy.npz"
    assert main(["sample", "mnist-unet", "--sampler", "toy", "--steps", "3", "--n", "2", "--seed", "5",
                 "--out", str(out)]) == 0
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    expected = ((x_T * 0.125).clamp(-1, 1) + 1) * 127.5  # three halvings, then to pixels
    assert np.abs(np.load(out)["images"].astype(float) - expected.squeeze(1).round().numpy()).max() <= 1
    assert model_calls("toy", 3) == 3
    assert "toy" in __import__("diffedu.zoo", fromlist=["get"]).get("mnist-unet").samplers


# --- layering -----------------------------------------------------------------------------------------

# the chapter whose lesson each math module is; a module may import those of its own or earlier chapters.
# (metrics.py is used from chapter 03 on and explained in 06: a tool, like course/ and models/, not a lesson.)
CHAPTER_OF = {"schedules": 1, "samplers": 2, "losses": 2, "toy": 2, "guidance": 3, "train": 3, "latents": 4,
              "sde": 7, "flow": 8, "distill": 8, "restoration": 10}


def library_imports() -> dict[str, set[str]]:
    """module (dotted, under diffedu) -> the diffedu modules it imports, at any depth of its code."""
    graph = {}
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("diffedu"):
                found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}".replace(".", "/") in MODULE_PATHS
                          else node.module for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("diffedu")}
        graph[name] = found - {name}
    return graph


MODULE_PATHS = {str(p.relative_to(LIBRARY.parent).with_suffix("")).removesuffix("/__init__") for p in LIBRARY.rglob("*.py")}


def test_no_import_cycle_among_the_library_modules():
    graph = {name: {d for d in deps if d in graph_names()} for name, deps in library_imports().items()}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dependency in sorted(graph.get(name, ())):
            if dependency == "diffedu" or name == "diffedu":
                continue
            if state.get(dependency) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path + [name, dependency]))
            if dependency not in state:
                visit(dependency, path + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def graph_names() -> set[str]:
    return {name.replace("/", ".") for name in MODULE_PATHS}


def test_no_chapter_module_imports_a_later_chapter():
    graph = library_imports()
    for module, chapter in CHAPTER_OF.items():
        for dependency in graph[f"diffedu.{module}"]:
            later = CHAPTER_OF.get(dependency.removeprefix("diffedu."))
            assert later is None or later <= chapter, f"diffedu/{module}.py (chapter {chapter}) imports {dependency} " \
                                                      f"(chapter {later}): move what it needs down, or up into diffedu/generate.py"


def test_the_layering_check_sees_a_backwards_import(tmp_path, monkeypatch):
    graph = library_imports()
    graph["diffedu.samplers"] = graph["diffedu.samplers"] | {"diffedu.sde"}
    monkeypatch.setattr(sys.modules[__name__], "library_imports", lambda: graph)
    with pytest.raises(AssertionError, match="samplers.py .chapter 2. imports diffedu.sde"):
        test_no_chapter_module_imports_a_later_chapter()


def test_front_door_help_needs_no_pytorch():
    assert "torch" not in front_door.__dict__  # the registry is importable without PyTorch (--help)
