"""The course's progress bar: tqdm that leaves its final state in a saved notebook.

Use it as `from diffedu.course.progress import tqdm`; it takes tqdm's usual arguments, and
`write(text)` prints a line without breaking a bar.

Which bar, where:
- In a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab, and notebooks executed by
  nbclient, nbconvert or nbval): one text line, shown as an output of its own and redrawn in
  place with IPython's `update_display`. It moves live in every front end, and a notebook
  executed without a browser saves the bar's last state ("100%|██████████| 20/20 ...").
- Anywhere else (a terminal, a script, pytest): tqdm's ordinary text bar on stderr.

Why not `tqdm.auto`: in a kernel it draws an ipywidgets bar, and a notebook executed headless
saves only the widget's text from the moment it appeared, "0%|          | 0/20", which is what
GitHub and nbconvert's HTML then show for ever. A text bar printed with carriage returns is no
better: nbclient saves every redraw as a separate output.
"""

from __future__ import annotations

import sys

from tqdm.std import tqdm as std_tqdm


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter kernel (any front end, or none), False in a terminal or script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookTextBar(std_tqdm):
    """tqdm drawn as one text/plain output that is updated in place (IPython display_id)."""

    def __init__(self, *args, **kwargs):
        kwargs = dict(kwargs)
        if kwargs.get("file") in (None, sys.stderr):
            kwargs["file"] = sys.stdout  # tqdm.write() goes to stdout, not to a red stderr block
        kwargs["gui"] = True  # tqdm.std keeps count but prints nothing; display() below draws
        kwargs["dynamic_ncols"] = False  # a kernel has no terminal width to follow
        kwargs["disable"] = bool(kwargs.get("disable", False))
        self._display_id = None
        super().__init__(*args, **kwargs)
        if self.disable:
            return
        from IPython.display import display

        handle = display({"text/plain": self._text()}, raw=True, display_id=True)
        self._display_id = handle.display_id

    def _text(self) -> str:
        return self.format_meter(**self.format_dict)

    def display(self, msg=None, pos=None):
        """Redraw the bar's output in place (called by tqdm on every refresh)."""
        if self._display_id is None:
            return False
        from IPython.display import update_display

        update_display({"text/plain": self._text() if msg is None else msg}, raw=True, display_id=self._display_id)
        return True

    def close(self):
        if self.disable:
            return
        super().close()  # marks the bar closed (disable = True); prints nothing in gui mode
        stopped_early = bool(self.total) and self.n < self.total
        # Keep the final line (or the line where a loop stopped early); leave=False clears it.
        self.display(msg=None if self.leave or stopped_early else "")

    def clear(self, *_, **__):
        pass  # the bar is its own output, so tqdm.write() needs nothing cleared


def bar_class() -> type[std_tqdm]:
    """The bar for where this runs, decided at each call (not once at import): NotebookTextBar in a Jupyter
    kernel, tqdm's text bar anywhere else."""
    return NotebookTextBar if in_jupyter_kernel() else std_tqdm


def tqdm(*args, **kwargs) -> std_tqdm:
    """A progress bar, as `tqdm.tqdm(...)`, of the class `bar_class()` chooses."""
    return bar_class()(*args, **kwargs)


def write(text: str) -> None:
    """Print a line without breaking an active bar (tqdm.write)."""
    bar_class().write(text)

