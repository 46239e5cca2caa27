"""Progress bars end in their final state in a notebook executed without a browser (nbclient)."""

import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from diffedu.course import progress

REPO = Path(__file__).resolve().parents[1]


def shown_lines(outputs) -> list[str]:
    """The text lines a viewer shows for a cell's saved outputs ('\\r' rewinds the line, as in a terminal)."""
    lines = []
    for output in outputs:
        if output["output_type"] == "stream":
            text = output["text"]
        elif "text/plain" in output.get("data", {}):
            text = output["data"]["text/plain"]
        else:
            continue
        lines += [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return [line for line in lines if line.strip()]


STUCK_AT_ZERO = re.compile(r"(?<!\d)0%\|")  # "  0%|" but not "100%|"


@pytest.fixture(scope="module")
def executed_cells():
    cells = [
        "import time\nfrom diffedu.course.progress import tqdm, write",
        "for _ in tqdm(range(20), desc='loop'):\n    time.sleep(0.01)",
        "bar = tqdm(total=20, desc='manual')\nfor step in range(20):\n    bar.update()\n    bar.set_postfix(loss=0.5)\n"
        "    time.sleep(0.01)\nbar.close()\nwrite('done')",
        "for _ in tqdm(range(20), desc='transient', leave=False):\n    time.sleep(0.01)\nprint('after')",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    start = time.perf_counter()
    NotebookClient(notebook, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(REPO)}}).execute()
    assert time.perf_counter() - start < 30, "executing the tiny notebook should take seconds"
    return [cell["outputs"] for cell in notebook.cells]


def test_saved_bar_shows_its_final_state(executed_cells):
    for outputs in executed_cells[1:3]:
        lines = shown_lines(outputs)
        bars = [line for line in lines if "|" in line]
        assert len(bars) == 1, f"expected one bar line, got {lines}"
        assert "100%" in bars[0] and "20/20" in bars[0], bars[0]
        assert not any(STUCK_AT_ZERO.search(line) for line in lines), lines
    assert "loss=0.5" in shown_lines(executed_cells[2])[0]
    assert "done" in shown_lines(executed_cells[2])


def test_transient_bar_leaves_no_line(executed_cells):
    lines = shown_lines(executed_cells[3])
    assert lines == ["after"], lines


def test_outside_a_kernel_it_is_the_plain_text_bar():
    assert not progress.in_jupyter_kernel()
    assert progress.bar_class() is progress.std_tqdm
    assert type(progress.tqdm(total=1, disable=True)) is progress.std_tqdm
