"""Colab support: the course's repository address (kept here, and only here), the first code
cell every notebook starts with, and the "Open in Colab" badges.

    python -m diffedu.course.colab                                   rewrite install cells and badges
    DIFFEDU_REPO=https://github.com/me/diffedu python -m diffedu.course.colab   ... for a fork or mirror

The install cell installs the course without its `lab` extra, so it never replaces Colab's own
ipykernel, ipython, tornado or pyzmq (Colab warns that this crashes the runtime). It clones
$DIFFEDU_REPO when that is set in the Colab session, else the address written into it.
The notebooks are written in nbformat's own layout with JupyterLab's default kernelspec and the
cell ids nbstripout gives, so a notebook run and saved in JupyterLab shows no change once the git
filter that `./course.sh setup` installs (nbstripout) strips its outputs.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from diffedu.course.paths import REPO_ROOT

REPO_URL = "https://github.com/diffedu/diffedu"
REPO_ENV_VAR = "DIFFEDU_REPO"
COLAB_DIR = "/content/diffedu"
BRANCH = "main"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}  # JupyterLab's default


def repo_url() -> str:
    """The repository address: $DIFFEDU_REPO for forks and mirrors, else REPO_URL."""
    return os.environ.get(REPO_ENV_VAR, REPO_URL).rstrip("/")


def install_cell(url: str | None = None) -> str:
    url = url or repo_url()
    return f"""\
# On Colab: fetch the course (code, data, checkpoints) and install it. Elsewhere: nothing.
import sys
if "google.colab" in sys.modules:
    import os
    repo = os.environ.get("{REPO_ENV_VAR}", "{url}")
    !test -d {COLAB_DIR} || git clone --depth 1 {{repo}} {COLAB_DIR}
    !pip install -q -e {COLAB_DIR}
    sys.path.insert(0, "{COLAB_DIR}")"""


INSTALL_CELL = install_cell(REPO_URL)


def colab_url(chapter: str, url: str | None = None) -> str:
    """The address that opens chapters/`chapter` (e.g. "00_setup.ipynb") in Colab."""
    path = re.sub(r"^https://github\.com/", "", url or repo_url())
    return f"https://colab.research.google.com/github/{path}/blob/{BRANCH}/chapters/{chapter}"


def colab_badge(chapter: str, url: str | None = None) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(chapter, url)})"


BADGE_PATTERN = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def on_colab() -> bool:
    return "google.colab" in sys.modules


def first_code_cell(notebook) -> dict:
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            return cell
    raise ValueError("notebook has no code cell")


def with_badge(text: str, badge: str) -> str:
    """text with its badge replaced, or added on the line after the first heading."""
    if BADGE_PATTERN.search(text):
        return BADGE_PATTERN.sub(lambda _: badge, text, count=1)
    title, _, rest = text.partition("\n")
    return f"{title}\n\n{badge}\n{rest}" if rest else f"{title}\n\n{badge}\n"


def sync_chapters(chapters: Path, url: str | None = None) -> list[Path]:
    """Rewrite every chapter's install cell and badge for `url`, in nbformat's layout with
    JupyterLab's kernelspec; return the changed files."""
    import nbformat

    changed = []
    for path in sorted(chapters.glob("*.ipynb")):
        before = path.read_text()
        notebook = nbformat.reads(before, as_version=4)
        first_code_cell(notebook)["source"] = install_cell(url)
        notebook.cells[0]["source"] = with_badge(notebook.cells[0]["source"], colab_badge(path.name, url))
        notebook.metadata = {"kernelspec": dict(KERNELSPEC)}
        notebook.nbformat_minor = 5
        for index, cell in enumerate(notebook.cells):
            cell["id"] = str(index)  # the ids nbstripout gives (its git filter renumbers them)
        after = nbformat.writes(notebook) + "\n"
        if after != before:
            path.write_text(after)
            changed.append(path)
    return changed


def sync_readme(readme: Path, url: str | None = None) -> bool:
    text = readme.read_text()
    new = with_badge(text, colab_badge("00_setup.ipynb", url))
    if new != text:
        readme.write_text(new)
    return new != text


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit("usage: [DIFFEDU_REPO=URL] python -m diffedu.course.colab   "
                 "(rewrites the chapters' install cells and badges, and the README's badge)")
    root = REPO_ROOT
    for changed_path in sync_chapters(root / "chapters"):
        print(f"updated {changed_path}")
    if sync_readme(root / "README.md"):
        print("updated README.md")
