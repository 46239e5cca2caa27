"""The checkpoints in data/checkpoints: present, small, documented, as good as their cards say, and
drawing the same samples for the same seed as the code that made them (tests/data/reference_samples)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffedu.models.checkpoints import CheckpointError, checkpoint_paths, read_checkpoint
from diffedu.course.data import load_mnist
from diffedu.latents import decode, encode, reconstruction_metrics
from diffedu.metrics import accuracy, load_classifier
from diffedu.generate import generate
from diffedu import zoo

CARD_FIELDS = ("command", "train_config", "train_steps", "wall_time_minutes", "hardware", "metrics", "model_config", "trained_on")


@pytest.mark.parametrize("name", ["mnist-classifier", "mnist-unet", "mnist-vae", "mnist-ldm", "mnist-flow", "mnist-fast",
                                  "mnist-consistency", "mnist-meanflow"])
def test_checkpoint_is_small_and_has_a_model_card(name):
    weights, card_path = checkpoint_paths(name)
    assert weights.is_file() and card_path.is_file()
    assert weights.stat().st_size < 10_000_000  # data/ ships with every clone
    card = json.loads(card_path.read_text())
    for field in CARD_FIELDS:
        assert field in card, f"model card of {name} lacks {field}"
    assert card["command"] == f"python -m diffedu train {name}"
    assert card["weights_bytes"] == weights.stat().st_size


def test_classifier_reaches_99_percent_on_the_test_set():
    test = load_mnist("test")
    assert accuracy(load_classifier(), test.images, test.labels) >= 0.99


def test_unet_loads_and_samples_reproducibly():
    model, schedule = zoo.load("mnist-unet")
    labels = torch.arange(4)
    a = generate(model, 4, "ddim", 5, schedule=schedule, seed=1, labels=labels, guidance=2.0, progress=False)
    b = generate(model, 4, "ddim", 5, schedule=schedule, seed=1, labels=labels, guidance=2.0, progress=False)
    assert a.shape == (4, 1, 28, 28) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    x_init = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))  # the noise seed 1 draws
    c = generate(model, 4, "ddim", 5, schedule=schedule, seed=99, labels=labels, guidance=2.0, progress=False, x_init=x_init)
    assert torch.equal(a, c)  # given x_T, DDIM is deterministic: the seed no longer matters
    with pytest.raises(ValueError, match="x_init must have shape"):
        generate(model, 4, "ddim", 5, schedule=schedule, labels=labels, progress=False, x_init=x_init[:2])


def test_vae_meets_the_reconstruction_targets_on_test_digits():
    vae, card = zoo.load("mnist-vae"), zoo.card("mnist-vae")
    scaling_factor = vae.config.scaling_factor
    metrics = reconstruction_metrics(vae, load_mnist("test").images[:1000])
    assert metrics["psnr_db"] >= 20 and metrics["ssim"] >= 0.85  # chapter 04's targets
    assert abs(metrics["psnr_db"] - card["metrics"]["psnr_db"]) < 1.5  # the card's whole-test-set figure
    assert 0.5 < scaling_factor < 2  # eq. (4.8) for a beta = 0.01 VAE: latents of std near 1


def test_latent_model_loads_and_draws_the_digits_it_is_asked_for():
    ldm = zoo.load("mnist-ldm")
    labels = torch.arange(20) % 10
    a = ldm.sample(20, steps=10, seed=1, labels=labels, guidance=2.0, progress=False)
    b = ldm.sample(20, steps=10, seed=1, labels=labels, guidance=2.0, progress=False)
    assert a.shape == (20, 1, 28, 28) and torch.equal(a, b)
    assert accuracy(load_classifier(), a, labels) >= 0.8  # the card: 1,000 samples, DDIM 50


def test_unknown_checkpoint_explains(tmp_path):
    with pytest.raises(CheckpointError, match="python -m diffedu train nothing"):
        read_checkpoint("nothing", tmp_path)


REFERENCE = Path(__file__).parent / "data" / "reference_samples.safetensors"


def _draw_like_the_reference() -> dict[str, torch.Tensor]:
    """The calls that made tests/data/reference_samples.safetensors (with the library of commit
    1733843, before issue 15 reshaped it: recipes.sample_unet, "ddpm" on 25 steps, ...)."""
    out = {}
    unet, schedule = zoo.load("mnist-unet")
    labels = torch.arange(6) % 10
    for seed in (0, 1):
        out[f"unet_ddim20_s{seed}"] = generate(unet, 6, "ddim", 20, schedule=schedule, seed=seed, labels=labels, guidance=1.5,
                                               progress=False)
    out["unet_heun8_s0"] = generate(unet, 6, "pf-heun", 8, schedule=schedule, seed=0, labels=labels, guidance=1.5, progress=False)
    out["unet_ddpm25_s0"] = generate(unet, 6, "ancestral", 25, schedule=schedule, seed=0, labels=labels, progress=False)
    out["unet_uncond_ddim10_s0"] = generate(unet, 4, "ddim", 10, schedule=schedule, seed=0, progress=False)
    out["unet_ddpm1000_s0"] = generate(unet, 2, "ddpm", schedule=schedule, seed=0, labels=torch.tensor([3, 7]), progress=False)
    ldm = zoo.load("mnist-ldm")
    for seed in (0, 1):
        out[f"ldm_ddim20_s{seed}"] = ldm.sample(6, "ddim", 20, seed=seed, labels=labels, guidance=1.5, progress=False)
    out["ldm_heun8_s0"] = ldm.sample(6, "pf-heun", 8, seed=0, labels=labels, guidance=1.5, progress=False)
    test_digits = load_mnist("test").images[:32]
    vae = zoo.load("mnist-vae")
    out["vae_recon"] = decode(vae, encode(vae, test_digits)[0])
    with torch.no_grad():
        out["classifier_logits"] = zoo.load("mnist-classifier")(test_digits)
    pipe = zoo.load("mini-sd")
    for seed in (0, 1):
        out[f"minisd_s{seed}"] = pipe(["a handwritten 3", "the digit seven", "", "a handwritten 0"], num_inference_steps=10,
                                     guidance_scale=3.0, generator=torch.Generator().manual_seed(seed), output_type="pt").images
    return out


@pytest.mark.slow  # every shipped model at 200 digits: the chapters sample each of them in the suite
def test_shipped_models_draw_what_they_drew_before_the_library_was_reshaped():
    """Same seed, same samples, for every shipped model, through the new entry points. On the
    machine that made the reference they are bit-identical. Another CPU rounds differently (other
    vector instructions), and 8 Heun steps amplify that: on an AVX-512 Xeon the worst sample set
    (unet_heun8) differs by 1.4e-4 on average and 0.014 at most. The smallest real change tried
    moves far more: 19 DDIM steps instead of 20 gives 3.6e-3 and 0.2, guidance 1.6 instead of 1.5
    gives 1.1e-2 and 1.4. So: a mean below 1e-3 and a maximum below 0.1."""
    reference = load_file(REFERENCE)
    drawn = _draw_like_the_reference()
    assert sorted(drawn) == sorted(reference)
    for key, expected in reference.items():
        difference = (drawn[key].float() - expected.float()).abs()
        assert difference.mean() < 1e-3 and difference.max() < 0.1, \
            f"{key}: differs by {difference.mean():.1e} on average, {difference.max():.2e} at most"


def test_flow_models_draw_the_intended_digits_reproducibly_and_in_any_batch_size():
    labels = torch.arange(200) % 10
    classifier = load_classifier()
    fast = zoo.sample("mnist-fast", 200, steps=4, labels=labels, seed=1, progress=False)
    assert accuracy(classifier, fast, labels) >= 0.95  # the card: 4 steps, 1,000 digits
    again = zoo.sample("mnist-fast", 200, steps=4, labels=labels, seed=1, batch_size=64, progress=False)
    assert torch.allclose(fast, again, atol=1e-5)
    flow_digits = zoo.sample("mnist-flow", 100, steps=10, labels=labels[:100], guidance=1.25, seed=1, progress=False)
    assert accuracy(classifier, flow_digits, labels[:100]) >= 0.9


def test_flow_models_refuse_what_they_cannot_do(tmp_path, capsys):
    from diffedu.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "mnist-flow", "--sampler", "ddim", "--out", str(tmp_path / "x.npz")])
    assert exit_info.value.code == 2 and "mnist-flow cannot sample with --sampler ddim: it takes euler or heun" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", "mnist-unet", "--sampler", "euler", "--out", str(tmp_path / "x.npz")])
    assert "it takes ddim or ancestral or ddpm or pf-heun" in capsys.readouterr().err
    assert main(["sample", "mnist-fast", "--guidance", "2", "--n", "2", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "guidance w = 1.25 built into it" in err[0]
    assert main(["sample", "mnist-fast", "--unconditional", "--n", "2", "--out", str(tmp_path / "x.npz")]) == 2
    assert "draws given digits only" in capsys.readouterr().err
    assert main(["sample", "mnist-fast", "--n", "20", "--out", str(tmp_path / "fast.npz")]) == 0  # euler, 4 steps, 0-9
    assert "wrote 20 samples" in capsys.readouterr().out
    assert np.load(tmp_path / "fast.npz")["labels"].tolist() == [i % 10 for i in range(20)]


@pytest.mark.parametrize("name", ["mnist-consistency", "mnist-meanflow"])
def test_one_step_models_draw_the_intended_digits_in_one_call_and_in_any_batch_size(name, tmp_path, capsys):
    from diffedu.__main__ import main

    labels = torch.arange(200) % 10
    classifier = load_classifier()
    card = zoo.card(name)
    one_call = zoo.sample(name, 200, labels=labels, seed=1, progress=False)  # the default: one call
    assert accuracy(classifier, one_call, labels) >= card["metrics"]["steps_1"]["accuracy"] - 0.05
    two_calls = zoo.sample(name, 200, steps=2, labels=labels, seed=1, progress=False)
    assert torch.allclose(two_calls, zoo.sample(name, 200, steps=2, labels=labels, seed=1, batch_size=64, progress=False), atol=1e-5)
    assert main(["sample", name, "--n", "20", "--out", str(tmp_path / "x.npz")]) == 0  # its sampler, 1 call, 0-9
    assert np.load(tmp_path / "x.npz")["labels"].tolist() == [i % 10 for i in range(20)]
    capsys.readouterr()
    assert main(["sample", name, "--guidance", "2", "--n", "2", "--out", str(tmp_path / "x.npz")]) == 2
    assert "into it" in capsys.readouterr().err
