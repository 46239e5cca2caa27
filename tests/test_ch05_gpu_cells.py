"""Chapter 05's optional real-SD cells, run against a stand-in so that they cannot rot on machines without a GPU.

The detection (diffedu.sd.hub.choose_backend) is made to say "online", and every Diffusers pipeline's
from_pretrained returns the course's mini Stable Diffusion instead of downloading SD v1.5. Then the cells
tagged "real-sd" (the setup cell, the hand-written loop, and each section's real-SD cell) run in order,
taking their online branch.
"""

import json
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "chapters" / "05_stable_diffusion.ipynb"
MINI_SD = ROOT / "data" / "checkpoints" / "mini-sd"


def tagged_cells(tag: str = "real-sd") -> list[str]:
    cells = json.loads(CHAPTER.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and tag in c["metadata"].get("tags", [])]


def test_the_real_sd_cells_are_tagged():
    sources = tagged_cells()
    online = [s for s in sources if s.lstrip().startswith(("if real.online", "sd_inpaint"))]
    assert len(online) >= 6  # section 1, 2, 3, 4, 5, 6 (img2img) and the inpainting cell
    for source in online:
        assert "else:" in source and "print(" in source.split("else:")[-1]  # offline: one line, and on


@pytest.fixture
def stand_in(monkeypatch):
    """Detection says online; from_pretrained of any pipeline class loads the mini SD from disk."""
    from diffusers import DiffusionPipeline

    import diffedu.sd.hub as hub

    requested = []
    original = DiffusionPipeline.from_pretrained.__func__

    def from_pretrained(cls, model_id, *args, **kwargs):
        requested.append((cls.__name__, str(model_id)))
        pipe = original(cls, MINI_SD, local_files_only=True, safety_checker=None, requires_safety_checker=False,
                        low_cpu_mem_usage=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr(hub, "choose_backend", lambda *args, **kwargs: ("online", "a stand-in for the test"))
    monkeypatch.setenv("DIFFEDU_FAST", "1")
    monkeypatch.setenv("DIFFEDU_SD", "auto")
    return requested


def test_the_real_sd_cells_run_on_a_stand_in(stand_in, capsys):
    namespace = {"__name__": "__chapter05__"}
    for source in tagged_cells():
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
        exec(compile(code, str(CHAPTER), "exec"), namespace)
    out = capsys.readouterr().out
    assert namespace["real"].online, out
    assert any(name == "StableDiffusionPipeline" and model_id.startswith("stable-diffusion-v1-5/") for name, model_id in stand_in)
    assert any(name == "StableDiffusionInpaintPipeline" for name, _ in stand_in)  # the inpainting cell loaded its model
    assert "skipped" not in out and "not loaded" not in out, out
    assert "default scheduler:" in out and "seconds per image:" in out and "of the input left at strength 1" in out
    assert namespace["sd_edits"].shape[0] == 4 and namespace["sd_reference"].shape[0] == 1
    assert torch.isfinite(namespace["fixed"]).all()
