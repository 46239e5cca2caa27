"""Figures and widgets draw without a screen, and the explorer falls back to a static figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffedu.plotting import animate_images, image_grid, plot_points, plot_schedules, show_images  # noqa: E402
from diffedu.schedules import make_schedule  # noqa: E402
from diffedu.widgets import noise_explorer, widget_frontend_available  # noqa: E402


def test_image_grid_layout_and_range():
    images = torch.full((5, 1, 4, 4), -1.0)
    images[1] = 1.0
    grid = image_grid(images, nrow=3, padding=1)
    assert grid.shape == (2 * 5 - 1, 3 * 5 - 1)
    assert grid[0, 0] == 0.0 and grid[0, 5] == 1.0  # image 0 black, image 1 white
    assert grid[0, 4] == 1.0  # padding is white
    uint8 = image_grid(np.full((2, 4, 4), 255, dtype=np.uint8), nrow=2)
    assert uint8.max() == 1.0
    with pytest.raises(ValueError, match="expected images of shape"):
        image_grid(torch.zeros(2, 3, 4, 4, 5))


def test_figures_draw():
    show_images(torch.rand(8, 1, 28, 28) * 2 - 1, nrow=4, title="x")
    plot_schedules([make_schedule("linear"), make_schedule("cosine")])
    plot_points({"a": torch.randn(100, 2), "b": torch.randn(100, 2)})
    anim = animate_images([torch.rand(4, 1, 8, 8) for _ in range(3)], labels=["a", "b", "c"])
    assert "<script" in anim.to_jshtml()
    plt.close("all")


def test_explorer_falls_back_to_static_figure_without_a_frontend(monkeypatch):
    monkeypatch.delenv("DIFFEDU_WIDGETS", raising=False)
    assert not widget_frontend_available()  # plain Python: no widget front-end
    fig = noise_explorer(torch.zeros(2, 1, 8, 8), make_schedule("linear"), torch.randn(2, 1, 8, 8), static_steps=(0, 500, 999))
    assert len(fig.axes) == 3
    monkeypatch.setenv("DIFFEDU_WIDGETS", "1")
    assert widget_frontend_available()
    plt.close("all")
