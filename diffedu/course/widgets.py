"""Interactive explorers (standard ipywidgets only) with a static fallback.

A widget needs a front end to draw it: JupyterLab and Notebook (with ipywidgets installed in
the kernel's environment), VS Code (its Jupyter extension draws them) or Colab. Where none
runs (nbval, nbconvert, a plain Python script), or ipywidgets is missing, the explorer shows a
static figure of a few representative settings and prints one line on how to get the slider.
DIFFEDU_WIDGETS=1 or 0 forces the choice (1 still needs ipywidgets installed).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from diffedu.course.plotting import show_images, show_noising
from diffedu.schedules import NoiseSchedule, q_sample

WIDGETS_ENV_VAR = "DIFFEDU_WIDGETS"
HOW_TO_ENABLE = (
    "for the slider: JupyterLab/Notebook need ipywidgets in the kernel's environment (pip install ipywidgets, then "
    "restart the kernel); VS Code's Jupyter extension draws widgets; in Colab run "
    "`from google.colab import output; output.enable_custom_widget_manager()`; DIFFEDU_WIDGETS=1 forces the slider"
)


def widget_support() -> tuple[bool, str]:
    """(True, "") if interactive widgets will be drawn in this session, else (False, why not)."""
    forced = os.environ.get(WIDGETS_ENV_VAR, "").strip()
    if forced == "0":
        return False, f"{WIDGETS_ENV_VAR}=0"
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False, "ipywidgets is not installed in this kernel's environment"
    if forced == "1":
        return True, ""
    try:
        from IPython import get_ipython
    except ImportError:
        return False, "not running in Jupyter"
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False, "not running in a Jupyter kernel (plain Python or terminal IPython)"
    # Jupyter Server (Lab, Notebook 7) names the session; Colab and VS Code leave their own marks.
    if (
        "JPY_SESSION_NAME" in os.environ
        or "google.colab" in sys.modules
        or "__vsc_ipynb_file__" in shell.user_ns
        or "VSCODE_PID" in os.environ
        or "VSCODE_CWD" in os.environ
    ):
        return True, ""
    return False, "no widget front end detected (e.g. the notebook is run by nbval or nbconvert)"


def _enable_colab_widgets() -> None:
    """Colab draws ipywidgets 8 only through its custom widget manager; switch it on there."""
    if "google.colab" not in sys.modules:
        return
    try:
        from google.colab import output

        output.enable_custom_widget_manager()
    except Exception:  # an older Colab draws standard widgets without it
        pass


def noise_explorer(x0: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor,
                   static_steps: Sequence[int] = (0, 100, 250, 500, 750, 999)):
    """A slider over the code index k showing x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (eq. 1.5), t = k + 1.

    Args:
        x0: a few clean images (N, 1, H, W) in [-1, 1].
        schedule: the noise schedule.
        noise: fixed eps, x0's shape (so moving the slider changes only the timestep).
        static_steps: the code indices k shown where no widget front end runs.

    Returns the ipywidgets `interactive` (already displayed), or the static matplotlib Figure.
    """
    available, reason = widget_support()
    if not available:
        print(f"Static figure ({reason}); {HOW_TO_ENABLE}.")
        return show_noising(x0, schedule, [k for k in static_steps if k < schedule.num_train_timesteps], noise)

    import ipywidgets as widgets
    from IPython.display import display

    _enable_colab_widgets()
    # redraws after a slider move keep the caller's rc_context (e.g. a smaller title size)
    style = {key: value for key, value in plt.rcParams.items() if key != "backend"}

    def draw(k: int):
        with plt.rc_context(style):
            x_t = q_sample(x0, k, noise, schedule)
            show_images(x_t, nrow=x0.shape[0], title=f"code k = {k} (paper t = {k + 1}), "
                                                     f"alpha_bar = {schedule.alpha_bar[k]:.4f}, SNR = {schedule.snr[k]:.3g}")
            plt.show()

    slider = widgets.IntSlider(value=0, min=0, max=schedule.num_train_timesteps - 1, step=1, description="code k", continuous_update=False)
    explorer = widgets.interactive(draw, k=slider)
    display(explorer)
    return explorer
