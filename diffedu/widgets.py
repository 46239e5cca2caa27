"""Interactive explorers (ipywidgets) with a static fallback.

A widget needs a front-end to draw it (JupyterLab, Notebook, VS Code, Colab). Where none
runs (nbval, nbconvert, a plain Python script) the explorer shows a static figure of a few
representative settings instead. DIFFEDU_WIDGETS=1 or 0 forces either.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from diffedu.plotting import show_images, show_noising
from diffedu.schedules import NoiseSchedule, q_sample

WIDGETS_ENV_VAR = "DIFFEDU_WIDGETS"


def widget_frontend_available() -> bool:
    """Best guess whether interactive widgets will be drawn in this session."""
    forced = os.environ.get(WIDGETS_ENV_VAR, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or shell.__class__.__name__ != "ZMQInteractiveShell":
        return False  # plain Python or terminal IPython
    # Jupyter Server (Lab/Notebook) names the session; Colab and VS Code mark themselves.
    return (
        "JPY_SESSION_NAME" in os.environ
        or "google.colab" in sys.modules
        or "VSCODE_PID" in os.environ
        or "VSCODE_CWD" in os.environ
    )


def noise_explorer(x0: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor, static_steps: Sequence[int] = (0, 100, 250, 500, 750, 999)):
    """A slider over t showing x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (eq. 1.5).

    Args:
        x0: a few clean images (N, 1, H, W) in [-1, 1].
        schedule: the noise schedule.
        noise: fixed eps, x0's shape (so moving the slider changes only t).
        static_steps: the timesteps shown where no widget front-end runs.
    """
    if not widget_frontend_available():
        return show_noising(x0, schedule, [t for t in static_steps if t < schedule.num_steps], noise)

    import ipywidgets as widgets

    def draw(t: int):
        x_t = q_sample(x0, t, noise, schedule)
        show_images(x_t, nrow=x0.shape[0], title=f"code k = {t} (paper t = {t + 1}), alpha_bar = {schedule.alpha_bar[t]:.4f}, SNR = {schedule.snr[t]:.3g}")
        plt.show()

    slider = widgets.IntSlider(value=0, min=0, max=schedule.num_steps - 1, step=1, description="code k", continuous_update=False)
    return widgets.interact(draw, t=slider)
