"""The offline MNIST copy and its loader."""

import shutil

import numpy as np
import pytest
import torch

from diffedu.course import data
from diffedu.course.data import MnistFileError, load_mnist, to_uint8


def test_file_matches_its_documented_checks():
    with np.load(data.verify_mnist_file()) as arrays:
        assert arrays["x_train"].shape == (60000, 28, 28) and arrays["x_train"].dtype == np.uint8
        assert arrays["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
        assert arrays["y_test"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
        assert int(arrays["x_train"].sum(dtype=np.int64)) == 1567298545
        assert int(arrays["x_test"].sum(dtype=np.int64)) == 264923200
        # exact pixels, not scaled by 255/256 (an earlier copy's maximum was 254)
        assert arrays["x_train"].max() == 255 and arrays["x_test"].max() == 255
        assert arrays["x_train"].mean() / 255 == pytest.approx(0.1306604762738429, abs=1e-15)


def test_load_scales_to_minus_one_one_and_filters():
    test = load_mnist("test")
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.float32
    assert test.labels.dtype == torch.int64 and len(test) == 10000
    assert test.images.min() == -1.0 and test.images.max() <= 1.0
    pixels = to_uint8(test.images[:5])
    with np.load(data.mnist_path()) as arrays:
        assert np.array_equal(pixels, arrays["x_test"][:5])  # exact round trip
    subset = load_mnist("train", digits=[3, 8], subset=500)
    assert len(subset) == 500 and set(subset.labels.tolist()) == {3, 8}


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(MnistFileError, match="git checkout -- data/mnist.npz"):
        load_mnist(path=tmp_path / "mnist.npz")


def test_corrupt_file_is_caught_by_checksum(tmp_path):
    bad = tmp_path / "mnist.npz"
    shutil.copy(data.mnist_path(), bad)
    with open(bad, "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(MnistFileError, match="damaged"):
        load_mnist(path=bad)


def test_data_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFEDU_DATA", str(tmp_path))
    with pytest.raises(MnistFileError, match=str(tmp_path)):
        load_mnist()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="validation"), "split must be 'train' or 'test'"),
        (dict(subset=0), "subset must be a positive int"),
        (dict(digits=[10]), "digits must be a non-empty list of classes 0..9"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_mnist(**kwargs)


def test_to_uint8_rejects_colour_images():
    with pytest.raises(ValueError, match="one channel"):
        to_uint8(torch.zeros(2, 3, 28, 28))
