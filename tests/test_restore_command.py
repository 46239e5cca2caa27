"""`python -m diffedu restore` (chapter 10): it restores with the shipped models, keeps what the
observation fixes, writes uint8 images, and answers every mistake with one line and exit code 2;
plus the shipped upscaler against bicubic, the classical baselines and the UNet's condition input."""

import numpy as np
import pytest
import torch

from diffedu import classical, restoration, zoo
from diffedu.__main__ import main
from diffedu.course.data import load_mnist, to_uint8
from diffedu.models.unet import UNet, UNetConfig

TEST = load_mnist("test")


def write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_restore_upscales_with_mnist_sr_and_keeps_the_observation(tmp_path, capsys):
    originals = TEST.images[:6]
    small = restoration.Downsample(4)(originals)  # (6, 1, 7, 7) in [-1, 1]
    source = write(tmp_path / "small.npz", images=small[:, 0].numpy())
    assert main(["restore", "mnist-sr", "--task", "sr4", "--in", source, "--out", str(tmp_path / "big.npz"), "--steps", "5"]) == 0
    big = np.load(tmp_path / "big.npz")["images"]
    assert big.shape == (6, 28, 28) and big.dtype == np.uint8
    restored = torch.from_numpy(big).float()[:, None] / 127.5 - 1
    assert (restoration.Downsample(4)(restored) - small).abs().mean() < 0.1  # about the same block means
    assert "restored 6 images" in capsys.readouterr().out


def test_restore_inpaints_with_ddnm_keeping_every_observed_pixel(tmp_path):
    keep = (torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.5)
    pixels = to_uint8(TEST.images[:3])  # (3, 28, 28) uint8
    holes = np.where(keep[0, 0].numpy(), pixels, 0).astype(np.uint8)
    source = write(tmp_path / "holes.npz", images=holes, mask=keep[0, 0].numpy().astype(np.uint8))
    assert main(["restore", "mnist-unet", "--task", "inpaint", "--in", source, "--out", str(tmp_path / "f.npz"),
                 "--steps", "4"]) == 0
    filled = np.load(tmp_path / "f.npz")["images"]
    observed = keep[0, 0].numpy()
    assert np.abs(filled[:, observed].astype(int) - pixels[:, observed].astype(int)).max() <= 1  # DDNM keeps y exactly


@pytest.mark.parametrize("arguments, message", [
    (["mnist-unet", "--task", "sr4", "--in", "{big}"], "must have shape (N, 7, 7) for --task sr4"),
    (["mnist-unet", "--task", "inpaint", "--in", "{big}"], "inpaint needs a 'mask' array"),
    (["mnist-unet", "--task", "sr5", "--in", "{small}"], "invalid choice: 'sr5'"),
    (["mnist-sr", "--task", "denoise", "--in", "{big}"], "mnist-sr only upscales"),
    (["mnist-unet", "--task", "denoise", "--in", "{big}", "--noise-std", "0"], "--noise-std must be > 0"),
    (["mnist-unet", "--task", "sr4", "--in", "{small}", "--method", "denoise"], "takes --method ddnm or dps or sdedit"),
    (["mnist-unet", "--task", "sr4", "--in", "{missing}"], "no such file"),
    (["mnist-unet", "--task", "sr4", "--in", "{junk}"], "is not a readable .npz file"),
    (["mnist-unet", "--task", "sr4", "--in", "{wide}"], "float images must lie in [-1, 1]"),
    (["mnist-unet", "--task", "sr4", "--in", "{small}", "--steps", "0"], "--steps must be in 1..1000"),
    (["mnist-sr", "--task", "sr4", "--in", "{small}", "--noise-std", "0.25"], "mnist-sr knows --noise-std in"),
])
def test_mistakes_get_one_line_and_exit_code_2(arguments, message, tmp_path, capsys):
    files = {"big": write(tmp_path / "big.npz", images=np.zeros((2, 28, 28), np.uint8)),
             "small": write(tmp_path / "small.npz", images=np.zeros((2, 7, 7), np.uint8)),
             "wide": write(tmp_path / "wide.npz", images=np.full((2, 7, 7), 3.0)),
             "missing": str(tmp_path / "nothing.npz")}
    (tmp_path / "junk.npz").write_text("not a zip file")
    files["junk"] = str(tmp_path / "junk.npz")
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", *[a.format(**files) for a in arguments], "--out", str(tmp_path / "out.npz")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error and "Traceback" not in error


def test_the_shipped_upscaler_beats_bicubic():
    originals = TEST.images[3000:3064]  # digits the model card's measurement does not use
    y = restoration.Downsample(4)(originals)
    upscaler, schedule = zoo.load("mnist-sr")
    restored = restoration.upscale(upscaler, schedule, y, steps=10)
    error = (restored - originals).square().mean()
    assert error < 0.6 * (classical.bicubic_upsample(y) - originals).square().mean()
    # the same digit in a batch of one gives the same picture (noise drawn per batch from one CPU seed)
    assert torch.allclose(restoration.upscale(upscaler, schedule, y[:1], steps=10), restored[:1], atol=1e-5)


def test_classical_baselines():
    keep = torch.zeros(1, 1, 4, 4)
    keep[..., 0, 0] = 1
    y = torch.full((2, 1, 4, 4), 0.3) * keep
    assert torch.allclose(classical.nearest_fill(y, keep), torch.full((2, 1, 4, 4), 0.3))  # one observed pixel fills all
    with pytest.raises(ValueError, match="at least one observed pixel"):
        classical.nearest_fill(y, torch.zeros(1, 1, 4, 4))
    flat = torch.full((1, 1, 8, 8), -0.5)
    assert torch.allclose(classical.gaussian_denoise(flat, 1.0), flat, atol=1e-6)  # a constant image stays
    assert torch.allclose(classical.median_denoise(flat, 3), flat)
    assert classical.bicubic_upsample(torch.zeros(3, 1, 7, 7)).shape == (3, 1, 28, 28)


def test_the_unet_takes_a_condition_image_only_when_built_for_one():
    config = UNetConfig(base_channels=8, channel_mults=(1, 1), attention_heads=1, groups=2, patch_size=2, condition_channels=1)
    model, x, k = UNet(config), torch.zeros(2, 1, 28, 28), torch.tensor([5, 5])
    assert model(x, k, None, torch.zeros(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="takes a condition image of shape"):
        model(x, k)
    with pytest.raises(ValueError, match="takes no condition image"):
        UNet(UNetConfig(base_channels=8, channel_mults=(1, 1), attention_heads=1, groups=2))(x, k, None, x)


def test_restoration_metrics_take_the_reference_or_its_features_once():
    from diffedu.metrics import classifier_features, load_classifier, restoration_metrics

    classifier = load_classifier()
    restored, originals, reference = TEST.images[:20], TEST.images[20:40], TEST.images[1000:1200]
    features = classifier_features(classifier, reference)
    by_images = restoration_metrics(restored, originals, TEST.labels[20:40], reference, classifier)
    assert by_images == restoration_metrics(restored, originals, TEST.labels[20:40], classifier=classifier,
                                            reference_features=features)
    with pytest.raises(ValueError, match="not both"):
        restoration_metrics(restored, originals, reference=reference, reference_features=features)
