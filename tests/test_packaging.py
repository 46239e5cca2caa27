"""environment.yml, pyproject.toml, the lock files, the Colab cell, the badges and the
notebooks' shape stay in sync."""

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import nbformat
from packaging.requirements import Requirement
from packaging.version import Version

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from diffedu.course.colab import INSTALL_CELL, KERNELSPEC, REPO_URL, colab_badge, first_code_cell, install_cell

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
# What Colab installs itself and must not be replaced (Colab warns that it crashes the runtime).
COLAB_OWNED = {"ipykernel", "ipython", "tornado", "pyzmq", "jupyter-client", "jupyter-server", "notebook", "jupyterlab"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, Version]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {_canonical(line.split("==")[0]): Version(line.split("==")[1]) for line in lines}


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    wanted = {_name(r) for r in PROJECT["dependencies"] + EXTRAS["lab"] + EXTRAS["test"] + EXTRAS["site"]}
    pip_section = (ROOT / "environment.yml").read_text().split("- pip:", 1)[1]
    pip_lines = re.findall(r"^\s+- (\S.*)$", pip_section, flags=re.M)
    listed = {_name(line) for line in pip_lines if not line.startswith("-e")}
    assert listed == wanted
    assert "-e .[lab,test,site]" in pip_lines
    assert "torch==2.13.0" in pip_lines  # the build CI installs
    specs = {_name(r): r for r in PROJECT["dependencies"] + EXTRAS["lab"] + EXTRAS["test"] + EXTRAS["site"]}
    for line in pip_lines:
        if not line.startswith("-e") and _name(line) != "torch":
            assert line == specs[_name(line)], f"environment.yml says {line}, pyproject.toml {specs[_name(line)]}"


def test_hugging_face_libraries_have_upper_bounds_below_the_next_major():
    for requirement in map(Requirement, PROJECT["dependencies"]):
        if requirement.name in ("diffusers", "transformers", "huggingface-hub", "peft", "accelerate"):
            uppers = [s for s in requirement.specifier if s.operator == "<"]
            assert uppers and Version(uppers[0].version).minor == 0 and Version(uppers[0].version).micro == 0, requirement


def test_lock_file_satisfies_pyproject_and_leaves_torch_out():
    pins = _pins(ROOT / "requirements-lock.txt")
    assert "torch" not in pins and not any(name.startswith("nvidia") for name in pins)
    for requirement in map(Requirement, PROJECT["dependencies"] + EXTRAS["lab"] + EXTRAS["test"]):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        if requirement.name == "torch":
            continue
        name = _canonical(requirement.name)
        assert name in pins, f"requirements-lock.txt has no {name}: run ./course.sh lock"
        assert requirement.specifier.contains(pins[name]), f"the lock's {name}=={pins[name]} is outside pyproject's {requirement}"


def test_lowest_versions_are_the_lower_bounds():
    pins = _pins(ROOT / "requirements-lowest.txt")
    bounds = {}
    for requirement in map(Requirement, PROJECT["dependencies"]):
        lower = [s for s in requirement.specifier if s.operator == ">="]
        if lower:
            bounds[_canonical(requirement.name)] = Version(lower[0].version)
    for name, version in pins.items():
        assert version >= bounds[name] and (version.major, version.minor) == (bounds[name].major, bounds[name].minor), (
            f"requirements-lowest.txt tests {name} {version}, but pyproject.toml allows {bounds[name]}")


def test_library_and_command_line_need_no_jupyter():
    names = {_name(r) for r in PROJECT["dependencies"]}
    assert not names & (COLAB_OWNED | {"ipywidgets", "nbstripout"}), "Jupyter packages belong in the lab extra"
    assert {"jupyterlab", "ipykernel", "ipywidgets"} <= {_name(r) for r in EXTRAS["lab"]}


def test_colab_cell_installs_the_course_without_extras():
    pip_lines = [line.strip() for line in INSTALL_CELL.splitlines() if "pip install" in line]
    assert pip_lines == ["!pip install -q -e /content/diffedu"]  # no [lab] or [test]: nothing of Colab's replaced


def _pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=5)
        return True
    except OSError:
        return False


@pytest.mark.slow  # a full resolver run over the package index
def test_colab_install_would_not_touch_colabs_own_packages(tmp_path):
    """pip's resolver report for what the Colab cell installs (the course's dependencies, with
    the torch Colab has): none of Colab's kernel packages is among them."""
    if not _pypi_reachable():
        pytest.skip("PyPI cannot be reached: the resolver needs the package index")
    import torch

    torch_version = torch.__version__.split("+")[0]
    requirements = [f"torch=={torch_version}"] + [r for r in PROJECT["dependencies"] if _name(r) != "torch"]
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
                    str(report), *requirements], check=True, capture_output=True, timeout=600)
    installed = {_canonical(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    assert "diffusers" in installed and "transformers" in installed  # the report is real
    assert not installed & COLAB_OWNED, f"the Colab cell would replace {installed & COLAB_OWNED}"


def test_readme_and_every_chapter_have_an_open_in_colab_badge():
    assert colab_badge("00_setup.ipynb") in (ROOT / "README.md").read_text()
    for path in CHAPTERS:
        first_cell = "".join(json.loads(path.read_text())["cells"][0]["source"])
        assert colab_badge(path.name) in first_cell, f"run `python -m diffedu.course.colab` ({path.name})"
    assert colab_badge("00_setup.ipynb", "https://github.com/me/fork").startswith(
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/me/fork/blob/main/chapters/00_setup.ipynb)")


def test_repository_can_be_overridden_for_forks(monkeypatch):
    monkeypatch.setenv("DIFFEDU_REPO", "https://github.com/me/fork")
    assert "https://github.com/me/fork" in install_cell() and "/me/fork/" in colab_badge("01_forward_process.ipynb")
    assert 'os.environ.get("DIFFEDU_REPO"' in INSTALL_CELL  # and at run time on Colab


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebook_is_unchanged_by_nbformat_and_by_running_it_in_jupyterlab(path, tmp_path):
    """A notebook read and written by nbformat (as JupyterLab does) is byte-identical, has
    JupyterLab's default kernelspec, and once run (outputs, counts, language_info) the git
    filter that course.sh installs (nbstripout) gives back the committed file."""
    text = path.read_text()
    notebook = nbformat.reads(text, as_version=4)
    assert notebook.metadata.get("kernelspec") == KERNELSPEC
    assert nbformat.writes(notebook) + "\n" == text, "run `python -m diffedu.course.colab` to write it in nbformat's layout"
    for cell in notebook.cells:  # what running it in JupyterLab adds
        if cell.cell_type == "code":
            cell.execution_count = 3
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    notebook.metadata["language_info"] = {"name": "python", "version": "3.12.1", "mimetype": "text/x-python"}
    stripped = subprocess.run([sys.executable, "-m", "nbstripout", "--extra-keys", "metadata.language_info"],
                              input=nbformat.writes(notebook), capture_output=True, text=True, check=True).stdout
    assert stripped == text


def test_repository_address_lives_in_one_place():
    assert PROJECT["urls"]["Homepage"] == REPO_URL
    hits = [p for p in ROOT.rglob("*.py")
            if not any(part.startswith(".venv") for part in p.parts) and REPO_URL in p.read_text() and p.name != "colab.py"]
    assert hits == [], f"the repository address is spelled out again in {hits}: import diffedu.course.colab.REPO_URL"


def test_there_are_chapters():
    assert [p.name for p in CHAPTERS][:3] == ["00_setup.ipynb", "01_forward_process.ipynb", "02_reverse_process.ipynb"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebook_follows_the_course_template(path):
    notebook = json.loads(path.read_text())
    cells = notebook["cells"]
    assert "".join(first_code_cell(notebook)["source"]) == INSTALL_CELL, "run `python -m diffedu.course.colab`"
    for cell in cells:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, "commit notebooks without outputs"
    intro = "".join(cells[0]["source"])
    appendix = path.name.startswith("appendix_")  # optional reading: no exercises
    title = "# Appendix" if appendix else f"# Chapter {path.name[:2]}"
    assert cells[0]["cell_type"] == "markdown" and intro.startswith(title)
    for heading in ("## What you'll learn", "## What you'll need", "## Time"):
        assert heading in intro, f"the first cell needs a '{heading}' section"
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for heading in ("## Summary", "## Further reading") + (() if appendix else ("## Exercises",)):
        assert heading in markdown
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "import *" not in code and ".cuda()" not in code
    assert "fast_or_full" in code, "the first code cell should name the settings fast mode shrinks"
    assert path.stat().st_size < 200_000, "notebooks stay small (no outputs, no embedded data)"
    for cell in cells:  # a checker returns its verdict: Jupyter shows it only as the last line of its cell
        lines = [line for line in "".join(cell["source"]).splitlines() if line.strip()] if cell["cell_type"] == "code" else []
        for line in lines[:-1]:
            assert not re.match(r"ch\d\d\.check_\w+\(", line), f"{line!r} is not its cell's last line: its verdict would not show"
