"""Figures and widgets draw without a screen, animations carry a static film strip, and the explorer falls back to a static figure."""

import base64
import io
import json
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from PIL import Image  # noqa: E402

from diffedu.course.plotting import FilmStripAnimation, animate_images, image_grid, plot_points, plot_schedules, show_images  # noqa: E402
from diffedu.schedules import make_schedule  # noqa: E402
from diffedu.course.widgets import noise_explorer, widget_support  # noqa: E402


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


def trajectory(num_frames: int = 25, seed: int = 0) -> list[torch.Tensor]:
    """Like chapter 03's: 20 digits (x_t above pred_x0) going from pure noise to clean shapes."""
    gen = torch.Generator().manual_seed(seed)
    clean = (torch.rand(10, 1, 28, 28, generator=gen) > 0.8).float() * 2 - 1
    noise, noise2 = torch.randn(2, 10, 1, 28, 28, generator=gen)
    frames = []
    for i in range(num_frames):
        a = i / (num_frames - 1)  # 0 at pure noise, 1 at the end
        x_t = a * clean + (1 - a) * noise
        pred_x0 = clean + (1 - a) * noise2  # the guess is noisy early on
        frames.append(torch.cat([x_t, pred_x0]).clamp(-1, 1))
    return frames


def test_animation_carries_a_film_strip_and_stays_under_a_megabyte():
    frames = trajectory()
    anim = animate_images(frames, labels=[f"code k = {k}" for k in range(999, -1, -40)][:25], nrow=10)
    assert isinstance(anim, FilmStripAnimation)
    html = anim.to_jshtml()
    assert anim._player_html is not None and anim._player_html in anim.to_jshtml()  # frames drawn once
    bundle = anim._repr_mimebundle_()
    assert set(bundle) == {"text/html", "image/png", "text/plain"}
    strip = base64.b64decode(bundle["image/png"])
    assert strip[:8] == b"\x89PNG\r\n\x1a\n"
    # the strip sits in the HTML as an <img> that needs no script, before the player's script
    assert f'src="data:image/png;base64,{bundle["image/png"]}"' in html
    assert html.index("data:image/png;base64," + bundle["image/png"][:40]) < html.index("<script")
    assert html.count("_anim_img") >= 1  # matplotlib's player is there too
    # offline, as in a workshop: nothing fetched from the web, and every button has its symbol
    assert "https://" not in html and 'class="fa' not in html and "&#x25B6;" in html
    image = Image.open(io.BytesIO(strip))
    assert image.width <= 700 and image.height > 100
    size = len(json.dumps(bundle))  # what the output adds to the .ipynb file
    assert size < 1_000_000, f"animation output is {size} bytes"
    plt.close("all")


def test_long_animations_are_subsampled_keeping_first_and_last():
    frames = [torch.full((1, 1, 4, 4), -1.0 + 2 * i / 99) for i in range(100)]
    anim = animate_images(frames, labels=[str(i) for i in range(100)], max_frames=10)
    assert anim._labels[0] == "0" and anim._labels[-1] == "99" and len(anim._labels) == 10
    assert anim._total == 100 and "10 of 100 frames" in anim._repr_mimebundle_()["text/plain"]
    with pytest.raises(ValueError, match="one label per frame"):
        animate_images(frames[:3], labels=["a"])
    plt.close("all")


def explore(static_steps=(0, 500, 999)):
    return noise_explorer(torch.zeros(2, 1, 8, 8), make_schedule("linear"), torch.randn(2, 1, 8, 8), static_steps=static_steps)


def test_explorer_falls_back_to_static_figure_without_a_frontend(monkeypatch, capsys):
    monkeypatch.delenv("DIFFEDU_WIDGETS", raising=False)
    assert not widget_support()[0]  # plain Python: no widget front-end
    fig = explore()
    assert len(fig.axes) == 3
    message = capsys.readouterr().out
    assert message.count("\n") == 1 and message.startswith("Static figure (not running in a Jupyter kernel")
    assert "pip install ipywidgets" in message and "enable_custom_widget_manager()" in message and "VS Code" in message
    monkeypatch.setenv("DIFFEDU_WIDGETS", "0")
    assert widget_support() == (False, "DIFFEDU_WIDGETS=0")
    plt.close("all")


def test_explorer_falls_back_when_ipywidgets_is_missing(monkeypatch, capsys):
    monkeypatch.setenv("DIFFEDU_WIDGETS", "1")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # makes `import ipywidgets` fail
    assert widget_support() == (False, "ipywidgets is not installed in this kernel's environment")
    fig = explore(static_steps=(0, 999, 5000))  # steps past the schedule are skipped
    assert len(fig.axes) == 2
    assert "ipywidgets is not installed" in capsys.readouterr().out
    plt.close("all")


def test_explorer_builds_a_standard_slider_when_widgets_are_on(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setenv("DIFFEDU_WIDGETS", "1")
    assert widget_support()[0]
    explorer = explore()
    slider = explorer.children[0]
    assert type(slider).__name__ == "IntSlider" and type(slider).__module__.startswith("ipywidgets")
    assert (slider.min, slider.max, slider.description) == (0, 999, "code k")
    slider.value = 499  # redraws without error
    plt.close("all")
