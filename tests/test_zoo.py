"""The registry of named models (diffedu/zoo/): one module per model, listed by
`python -m diffedu models`, and a new model is one new file."""

import sys
import textwrap

import numpy as np
import pytest
import torch

from diffedu import zoo
from diffedu.__main__ import main
from diffedu.course.paths import REPO_ROOT
from diffedu.generate import SAMPLERS

SHIPPED = ["mnist-classifier", "mnist-unet", "mnist-vae", "mnist-ldm", "mini-sd", "mnist-flow", "mnist-fast",
           "mnist-consistency", "mnist-meanflow", "mini-sd-lora-bold", "mini-sd-ti-slanted", "mini-sd-controlnet-edges", "mnist-sr"]


def test_every_shipped_model_is_declared_once_with_what_it_needs():
    assert sorted(zoo.names()) == sorted(SHIPPED)
    for model in zoo.all_models():
        assert model.name in SHIPPED and 0 <= model.chapter <= 11 and model.summary
        assert callable(model.train) and callable(model.load)
        assert model.train_config.train_steps > 0
    assert zoo.sampleable() == ["mnist-unet", "mnist-ldm", "mnist-consistency", "mnist-fast", "mnist-flow", "mnist-meanflow"]
    for model in zoo.all_models():
        assert set(model.samplers) <= set(SAMPLERS) and model.samplers and model.default_steps >= 1


def test_models_command_lists_name_chapter_size_metrics_and_presence(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert "MB" in out and "measured 20" in out and "missing" not in out
    assert "FID (w = 1.5)" in out and "prompt adherence" in out


def test_models_command_says_what_is_missing(tmp_path, capsys):
    assert main(["models", "--from", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("missing") >= len(SHIPPED) and "git checkout -- data/checkpoints" in out


def test_readme_table_of_models_is_the_registrys():
    table = zoo.markdown_table(zoo.describe())
    assert table in (REPO_ROOT / "README.md").read_text(), \
        "README's table of models is stale: paste the output of `python -m diffedu models --markdown`"


def test_command_line_offers_exactly_the_samplers_of_the_registry(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(SAMPLERS) + "}" in help_text.replace(" ", "")
    for sampler in SAMPLERS.values():
        assert " ".join(sampler.about.split()) in help_text


def test_unknown_or_unsampleable_model_explains(tmp_path, capsys):
    with pytest.raises(ValueError, match="choose one of .*mnist-unet"):
        zoo.get("mnist-gan")
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "mnist-vae", "--out", str(tmp_path / "x.npz")])
    assert exit_info.value.code == 2 and "choose one of mnist-unet, mnist-ldm" in capsys.readouterr().err


DUMMY = '''
"""tiny-dummy: a model that draws mid-grey digits, to show that a model is one file."""
import torch

from diffedu.models.checkpoints import read_checkpoint, save_checkpoint
from diffedu.train import TrainConfig
from diffedu.zoo import NamedModel

TRAIN = TrainConfig(train_steps=1)


def train(run_dir, out_folder, measure=True, **overrides):
    card = {"finished": True, "train_steps": 1, "metrics": {"brightness": 0.0, "measured_on": "2026-12-02"}}
    save_checkpoint(torch.nn.Linear(1, 1), "tiny-dummy", {}, card, out_folder)
    return card


def load(device="cpu", folder=None):
    state, _, _ = read_checkpoint("tiny-dummy", folder)
    model = torch.nn.Linear(1, 1)
    model.load_state_dict(state)
    return model


def sample(model, n, **options):
    return torch.zeros(n, 1, 28, 28)


MODEL = NamedModel(name="tiny-dummy", chapter=9, summary="mid-grey digits", train_config=TRAIN, train=train, load=load,
                   sample=sample, headline={"brightness": ("brightness",)})
'''


def test_a_new_model_is_one_new_file(tmp_path, monkeypatch, capsys):
    extra = tmp_path / "zoo_extra"
    extra.mkdir()
    (extra / "tiny_dummy.py").write_text(textwrap.dedent(DUMMY))
    monkeypatch.setattr(zoo, "__path__", [*zoo.__path__, str(extra)])
    monkeypatch.delitem(sys.modules, "diffedu.zoo.tiny_dummy", raising=False)
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    monkeypatch.setenv("DIFFEDU_DATA", str(data))

    assert "tiny-dummy" in zoo.names()
    assert main(["train", "tiny-dummy", "--publish"]) == 0  # trains into runs/tiny-dummy, publishes into data/checkpoints
    assert (data / "checkpoints" / "tiny-dummy.safetensors").is_file()
    assert main(["sample", "tiny-dummy", "--n", "3", "--out", str(tmp_path / "grey.npz")]) == 0
    assert np.load(tmp_path / "grey.npz")["images"].tolist() == np.full((3, 28, 28), 128, dtype=np.uint8).tolist()
    capsys.readouterr()
    assert main(["models"]) == 0
    assert "tiny-dummy" in capsys.readouterr().out


def test_sample_by_name_draws_the_named_model():
    images = zoo.sample("mnist-unet", 2, steps=2, labels=torch.tensor([3, 7]), guidance=1.5, progress=False)
    assert images.shape == (2, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    with pytest.raises(ValueError, match="choose one of mnist-unet, mnist-ldm"):
        zoo.sample("mnist-vae", 2)
