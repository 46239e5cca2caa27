"""Chapter 09's data transforms and measurements (diffedu/sd/adaptation.py) on real digits."""

import pytest
import torch

from diffedu.course.data import load_mnist
from diffedu.sd import adaptation


@pytest.fixture(scope="module")
def digits():
    return load_mnist("test").images[:200]


def test_bold_thickens_every_digit(digits):
    thick = adaptation.bold(digits)
    assert thick.shape == digits.shape and (thick >= digits).all()
    ratio = adaptation.ink_fraction(thick) / adaptation.ink_fraction(digits)
    assert (ratio > 1.2).all() and 1.5 < ratio.mean() < 3


def test_shear_changes_the_slant_by_its_amount(digits):
    before = adaptation.slant(digits)
    after = adaptation.slant(adaptation.shear(digits, 0.3))
    change = after - before
    assert change.mean().item() == pytest.approx(0.3, abs=0.01)  # a shear by s adds s to mu_11 / mu_02 (0.2999 here)
    assert (change > 0.15).float().mean() > 0.95
    back = adaptation.slant(adaptation.shear(digits, -0.3)) - before
    assert back.mean().item() == pytest.approx(-0.3, abs=0.01)
    assert torch.allclose(adaptation.shear(digits, 0.0), digits, atol=1e-5)


def test_slant_of_a_drawn_italic_bar():
    image = -torch.ones(1, 1, 28, 28)
    for row in range(4, 24):  # a bar leaning right: one column further right every 2 rows upwards
        image[0, 0, row, 14 + (14 - row) // 2] = 1
    assert adaptation.slant(image).item() == pytest.approx(0.5, abs=0.05)


def test_outlines_lie_on_the_ink_and_keep_its_shape(digits):
    edges = adaptation.outlines(digits)
    assert edges.min() >= -1 and edges.max() <= 1
    edge_pixels, ink_pixels = adaptation.ink(edges), adaptation.ink(digits)
    assert (edge_pixels <= ink_pixels).all() and edge_pixels.flatten(1).any(1).all()
    ratio = adaptation.ink_fraction(edges) / adaptation.ink_fraction(digits)
    assert (ratio <= 1).all() and ratio.mean() < 0.95  # thin strokes are all edge (mean 0.90 on these 200); thick ones keep an inside


def test_ink_iou(digits):
    assert torch.equal(adaptation.ink_iou(digits, digits), torch.ones(len(digits)))
    assert (adaptation.ink_iou(digits, adaptation.bold(digits)) < 1).all()
    assert adaptation.ink_iou(digits[:1], -torch.ones(1, 1, 28, 28)).item() == 0
    with pytest.raises(ValueError, match="same shape"):
        adaptation.ink_iou(digits[:2], digits[:3])
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        adaptation.bold(digits[:, 0])
