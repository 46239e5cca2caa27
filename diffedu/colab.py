"""Colab support: the course's repository address (kept here, and only here) and the
first code cell every notebook starts with.

`python -m diffedu.colab` rewrites that cell in every chapter from INSTALL_CELL; a test
checks that all chapters match it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_URL = "https://github.com/diffedu/diffedu"
COLAB_DIR = "/content/diffedu"

INSTALL_CELL = f"""\
# On Colab: fetch the course (code, data, checkpoints) and install it. Elsewhere: nothing.
import sys
if "google.colab" in sys.modules:
    !test -d {COLAB_DIR} || git clone --depth 1 {REPO_URL} {COLAB_DIR}
    !pip install -q -e {COLAB_DIR}
    sys.path.insert(0, "{COLAB_DIR}")"""


def on_colab() -> bool:
    return "google.colab" in sys.modules


def first_code_cell(notebook: dict) -> dict:
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            return cell
    raise ValueError("notebook has no code cell")


def sync_install_cells(chapters: Path) -> list[Path]:
    """Rewrite the first code cell of every chapter to INSTALL_CELL; return changed files."""
    changed = []
    for path in sorted(chapters.glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        cell = first_code_cell(notebook)
        if "".join(cell["source"]) != INSTALL_CELL:
            cell["source"] = INSTALL_CELL.splitlines(keepends=True)
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit("usage: python -m diffedu.colab   (rewrites the first code cell of every chapter to INSTALL_CELL)")
    root = Path(__file__).resolve().parent.parent
    for changed_path in sync_install_cells(root / "chapters"):
        print(f"updated {changed_path}")
