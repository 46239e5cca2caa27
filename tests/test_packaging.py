"""environment.yml, pyproject.toml, the Colab cell and the notebooks' shape stay in sync."""

import json
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from diffedu.colab import INSTALL_CELL, REPO_URL, first_code_cell

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    pip_section = (ROOT / "environment.yml").read_text().split("- pip:", 1)[1]
    pip_lines = re.findall(r"^\s+- (\S.*)$", pip_section, flags=re.M)
    listed = {_name(line) for line in pip_lines if not line.startswith("-e")}
    assert listed == wanted
    assert "-e .[test]" in pip_lines
    assert "torch==2.13.0" in pip_lines  # the build CI installs


def test_repository_address_lives_in_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["urls"]["Homepage"] == REPO_URL
    hits = [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and REPO_URL in p.read_text() and p.name != "colab.py"]
    assert hits == [], f"the repository address is spelled out again in {hits}: import diffedu.colab.REPO_URL"


def test_there_are_chapters():
    assert [p.name for p in CHAPTERS][:3] == ["00_setup.ipynb", "01_forward_process.ipynb", "02_reverse_process.ipynb"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebook_follows_the_course_template(path):
    notebook = json.loads(path.read_text())
    cells = notebook["cells"]
    assert "".join(first_code_cell(notebook)["source"]) == INSTALL_CELL, "run `python -m diffedu.colab`"
    for cell in cells:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, "commit notebooks without outputs"
    intro = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and intro.startswith(f"# Chapter {path.name[:2]}")
    for heading in ("## What you'll learn", "## What you'll need", "## Time"):
        assert heading in intro, f"the first cell needs a '{heading}' section"
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for heading in ("## Summary", "## Exercises", "## Further reading"):
        assert heading in markdown
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "import *" not in code and ".cuda()" not in code
    assert "fast_or_full" in code, "the first code cell should name the settings fast mode shrinks"
    assert path.stat().st_size < 200_000, "notebooks stay small (no outputs, no embedded data)"
