"""Build the course's website into site/: `./course.sh site [--fast]`.

    python tools/site/build.py            chapters with full-mode outputs where they exist, else fast-mode
    python tools/site/build.py --fast     fast-mode outputs only (what the browser test checks)
    python tools/site/build.py --learner  for learners: without the instructors' solution pages (a workshop's site)

The pages come from the executed copies that `./course.sh execute` writes into build/executed/
(notebooks in chapters/ are committed without outputs). The Sphinx source is assembled in
build/site-src/: the README as the home page, one page per chapter (with a note saying which
mode its outputs come from), the measured chapter times, the workshop guide (docs/), the
reference solutions for instructors (not in the --learner build: no page, link or search
entry gives them away), and the library's API reference from its docstrings.
Everything the pages need is on the site itself: it works without a network (file:// too).

The Chinese edition goes to site/zh/, built the same way from chapters/zh/ (written by `./course.sh
translate`), README.zh.md and docs/workshop.zh.md, into build/site-src-zh/. A Chinese chapter's code
is the English chapter's, so its page shows the outputs of its own executed copy
(build/executed/<mode>/zh/) if there is one, else those of the English copy, cell by cell. Every page
of both carries a link to the same page in the other language (diffedu.js).
"""

from __future__ import annotations

import argparse
import json
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXECUTED = ROOT / "build" / "executed"
SOURCE = ROOT / "build" / "site-src"
SITE = ROOT / "site"
HTML = ROOT / "build" / "site-html"  # where Sphinx builds
LEARNER = ROOT / "build" / "site-learner"  # the --learner build's own source and HTML: both builds can run at once
LANGUAGE_LINK = re.compile(r"^\[(简体中文|English)\]\([\w./]+\.md\)\n\n?", re.M)  # on the site, diffedu.js's switch
COLAB_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(([^)]*)\)")  # an image from the web: a text link offline
MODES = {"full": "full mode, as a learner runs it", "fast": "fast mode (`DIFFEDU_FAST=1`: shorter training, fewer "
                                                                 "samples), so some figures are rougher than in a full run"}
CHINESE_MODES = {"full": "完整模式（学习者运行的方式）",
                 "fast": "快速模式（`DIFFEDU_FAST=1`：训练更短、样本更少），所以有些图比完整运行的粗糙"}


def chapters() -> list[Path]:
    return sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")) + sorted((ROOT / "chapters").glob("appendix_*.ipynb"))


def executed_copy(chapter: Path, fast_only: bool) -> tuple[Path, str]:
    """The executed copy to show: full mode if there is one that ran without error, else fast mode."""
    for mode in (("fast",) if fast_only else ("full", "fast")):
        path = EXECUTED / mode / chapter.name
        if path.exists() and not nbformat.read(path, as_version=4).metadata.get("diffedu_execution", {}).get("error"):
            return path, mode
    sys.exit(f"site: no executed copy of {chapter.stem} without errors: run `./course.sh execute --fast` "
             "(a few minutes) or `./course.sh execute` (full mode) first")


PAGE_TEXT = {  # per language: the Colab badge's text link, and the note on where a page's outputs come from
    "en": ("[Open this chapter in Colab](\\1)", "The outputs on this page come from running the chapter in {mode}, on "
           "{date}, in {seconds} s on {machine}."),
    "zh": ("[在 Colab 中打开本章](\\1)", "本页的输出来自以{mode}运行本章的结果：{date}，用时 {seconds} 秒，机器：{machine}。"),
}


def chapter_page(chapter: Path, fast_only: bool, times: dict, language: str = "en", source: Path | None = None) -> str:
    """Copy one executed chapter into the source, with a note on where its outputs come from. A Chinese
    chapter shows the outputs of its own executed copy (build/executed/<mode>/zh/) or, cell by cell, those
    of the English one: its code is the same (tests/test_translation.py)."""
    path, mode = executed_copy(chapter, fast_only)
    notebook = nbformat.read(path, as_version=4)
    if language != "en":
        own = path.parent / language / chapter.name
        executed = nbformat.read(own, as_version=4) if own.exists() else notebook
        notebook = nbformat.read(ROOT / "chapters" / language / chapter.name, as_version=4)
        if len(executed.cells) != len(notebook.cells):
            sys.exit(f"site: chapters/{language}/{chapter.name} has {len(notebook.cells)} cells, its executed copy "
                     f"{len(executed.cells)}: run ./course.sh translate")
        for cell, ran in zip(notebook.cells, executed.cells):
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = ran.get("outputs", []), ran.get("execution_count")
        notebook.metadata["diffedu_execution"] = executed.metadata.get("diffedu_execution", {})
    badge, note = PAGE_TEXT[language]
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = COLAB_BADGE.sub(badge, cell.source)
    run = notebook.metadata.get("diffedu_execution", {})
    note = note.format(mode=(CHINESE_MODES if language == "zh" else MODES)[mode], date=run.get("date", "?"),
                       seconds=run.get("seconds", "?"), machine=times.get(chapter.stem, {}).get("machine", "?"))
    notebook.cells.insert(1, nbformat.v4.new_markdown_cell(f":::{{note}}\n{note}\n:::"))
    nbformat.write(notebook, (source or SOURCE) / "chapters" / chapter.name)
    return mode


def chinese_site(fast_only: bool, times: dict, out: Path) -> int:
    """The Chinese edition into out/ (build/site-src-zh/ its source): chapters, home page, workshop guide."""
    source, html_folder = SOURCE.parent / (SOURCE.name + "-zh"), HTML.parent / (HTML.name + "-zh")
    missing = [c.name for c in chapters() if not (ROOT / "chapters" / "zh" / c.name).exists()]
    if missing:
        print(f"site: no Chinese chapters {', '.join(missing)}: run ./course.sh translate", file=sys.stderr)
        return 1
    if source.exists():
        shutil.rmtree(source)
    (source / "chapters").mkdir(parents=True)
    for chapter in chapters():
        chapter_page(chapter, fast_only, times, "zh", source)
    (source / "workshop.md").write_text(LANGUAGE_LINK.sub("", (ROOT / "docs" / "workshop.zh.md").read_text()))
    readme = COLAB_BADGE.sub(r"[在 Colab 中打开课程](\1)", LANGUAGE_LINK.sub("", (ROOT / "README.zh.md").read_text()))
    toctree = "\n".join([f"chapters/{c.stem}" for c in chapters()] + ["workshop"])
    (source / "index.md").write_text(readme + f"\n\n```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toctree}\n```\n")
    copy_site_files(source)
    (source / "conf.py").write_text((HERE / "conf.py").read_text() + CHINESE_SETTINGS)
    return sphinx(source, html_folder, out, "the Chinese site")


CHINESE_SETTINGS = """

# The Chinese edition (site/zh/): tools/site/build.py writes these lines into its copy of this file
language = "zh_CN"
html_title = "diffedu：扩散模型，从第一个加噪公式到 Stable Diffusion"

# Sphinx 9's Chinese search stems Latin words with the English stemmer, whose script defines EnglishStemmer,
# but then asks for window.Stemmer = ChineseStemmer, an error on every page: name the stemmer it loads
from sphinx.search import zh as chinese_search  # noqa: E402

chinese_search.SearchChinese.language_name = "English"
"""


def copy_site_files(source: Path) -> None:
    """MathJax, the Sphinx settings and the site's own CSS, JavaScript and icon, into a source folder."""
    mathjax(source)
    for name in ("conf.py", "equations.py", "favicon.svg"):
        shutil.copy(HERE / name, source / name)
    for name in ("diffedu.css", "diffedu.js"):
        shutil.copy(HERE / name, source / "_static" / name)


def sphinx(source: Path, html_folder: Path, out: Path, which: str) -> int:
    """Build source into html_folder with Sphinx, then copy the pages to out."""
    log = html_folder.parent / f"{html_folder.name}-warnings.txt"
    # Sphinx writes into build/site-html, and MyST-NB its copies of the outputs beside it (into the output
    # folder's parent: build/ or build/site-learner/, not the repository's root); the finished pages are then
    # copied to out
    finished = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-w", str(log), str(source),
                               str(html_folder)], cwd=ROOT)
    if finished.returncode:
        print(f"site: Sphinx failed on {which} (its messages are above and in {log.relative_to(ROOT)})", file=sys.stderr)
        return 1
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(html_folder, out)
    warnings = [line for line in log.read_text().splitlines() if "WARNING" in line or "ERROR" in line]
    print(f"wrote {out / 'index.html'} ({which}; {len(warnings)} Sphinx warnings, in {log.relative_to(ROOT)})")
    return 0


def times_page() -> str:
    """The measured time of every chapter, in each mode that has been executed here."""
    table = {mode: json.loads((EXECUTED / mode / "times.json").read_text())
             for mode in ("fast", "full") if (EXECUTED / mode / "times.json").exists()}
    lines = ["# Chapter times", "",
             "Each chapter run top to bottom in a fresh kernel by `./course.sh execute` (full mode) and "
             "`./course.sh execute --fast` (fast mode), on the machine named below. GPU times were not measured "
             "here: each chapter's first cell gives an estimate.", "",
             "| chapter | " + " | ".join(f"{mode} mode" for mode in table) + " |",
             "|---|" + "---|" * len(table)]
    for chapter in chapters():
        cells = []
        for mode in table:
            record = table[mode].get(chapter.stem)
            cells.append("not run" if record is None else "failed" if record["error"] else seconds_text(record["seconds"]))
        lines.append(f"| [{chapter.stem}](chapters/{chapter.name}) | " + " | ".join(cells) + " |")
    machines = sorted({record["machine"] for mode in table for record in table[mode].values()})
    lines += ["", "Measured on: " + "; ".join(machines) + "."]
    return "\n".join(lines) + "\n"


def seconds_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def api_pages() -> list[str]:
    """One page per module of the library, from its docstrings."""
    import diffedu

    names = sorted(m.name for m in pkgutil.walk_packages(diffedu.__path__, "diffedu.") if not m.name.endswith("__main__"))
    (SOURCE / "api").mkdir()
    for name in names:
        (SOURCE / "api" / f"{name}.md").write_text(f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n```\n")
    toctree = "\n".join(f"{name}" for name in names)
    (SOURCE / "api" / "index.md").write_text(
        "# The library, module by module\n\nGenerated from the docstrings of `diffedu/`: each module is one concept, "
        "and each docstring names the equation it implements.\n\n"
        f"```{{toctree}}\n:maxdepth: 1\n\n{toctree}\n```\n")
    return names


def instructor_pages() -> None:
    """The reference solutions of the exercises, marked for instructors."""
    folder = SOURCE / "instructors"
    folder.mkdir()
    solutions = sorted((ROOT / "solutions").glob("ch[0-9][0-9].py"))
    for path in solutions:
        shutil.copy(path, folder / path.name)
        (folder / f"{path.stem}.md").write_text(
            f"# Solutions, chapter {path.stem[2:]}\n\n:::{{admonition}} For instructors\n:class: warning\n"
            "The reference solutions of the chapter's exercises. Learners get more from the checkers' hints first.\n:::\n\n"
            f"```{{literalinclude}} {path.name}\n:language: python\n```\n")
    toctree = "\n".join(path.stem for path in solutions)
    (folder / "index.md").write_text(
        "# For instructors: reference solutions\n\n:::{admonition} For instructors\n:class: warning\n"
        "These pages give away the exercises' answers.\n:::\n\n" + (ROOT / "solutions" / "README.md").read_text()
        .split("\n", 1)[-1] + f"\n\n```{{toctree}}\n:maxdepth: 1\n\n{toctree}\n```\n")


def home_page(extra_pages: list[str]) -> None:
    readme = COLAB_BADGE.sub(r"[Open the course in Colab](\1)", LANGUAGE_LINK.sub("", (ROOT / "README.md").read_text()))
    toctree = "\n".join([f"chapters/{c.stem}" for c in chapters()] + extra_pages)
    (SOURCE / "index.md").write_text(readme + f"\n\n```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toctree}\n```\n")


def mathjax(source: Path) -> None:
    """MathJax 3 (as the django-static-mathjax wheel ships it: data files only) into the site's own files:
    the TeX-to-HTML bundle, its fonts, and the TeX packages it loads on demand."""
    import mathjax as mathjax_files

    es5 = Path(mathjax_files.__file__).parent / "static" / "mathjax" / "es5"
    target = source / "_static" / "mathjax"
    target.mkdir(parents=True)
    shutil.copy(es5 / "tex-chtml.js", target)
    for folder in ("input", "output", "ui", "a11y"):
        shutil.copytree(es5 / folder, target / folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the course's website into site/.")
    parser.add_argument("--fast", action="store_true", help="use the fast-mode outputs only (build/executed/fast)")
    parser.add_argument("--learner", action="store_true",
                        help="leave out the instructors' pages with the exercises' reference solutions")
    parser.add_argument("--out", type=Path, default=SITE, help="where the site goes (default: site/)")
    args = parser.parse_args(argv)
    global SOURCE, HTML
    if args.learner:
        SOURCE, HTML = LEARNER / "src", LEARNER / "html"
    if SOURCE.exists():
        shutil.rmtree(SOURCE)
    (SOURCE / "chapters").mkdir(parents=True)
    times = {}
    for mode in ("fast", "full"):
        if (EXECUTED / mode / "times.json").exists():
            times.update(json.loads((EXECUTED / mode / "times.json").read_text()))
    modes = {chapter.stem: chapter_page(chapter, args.fast, times) for chapter in chapters()}
    (SOURCE / "times.md").write_text(times_page())
    extra = ["times"]
    for doc in sorted(path for path in (ROOT / "docs").glob("*.md") if not path.name.endswith(".zh.md")):
        (SOURCE / doc.name).write_text(LANGUAGE_LINK.sub("", doc.read_text()))
        extra.append(doc.stem)
    if not args.learner:
        instructor_pages()
        extra.append("instructors/index")
    api_pages()
    extra.append("api/index")
    home_page(extra)
    copy_site_files(SOURCE)
    which = "the learners' site (no solutions)" if args.learner else "the site"
    print(f"building {which} from {sum(m == 'full' for m in modes.values())} full-mode and "
          f"{sum(m == 'fast' for m in modes.values())} fast-mode chapters, and its Chinese edition")
    if sphinx(SOURCE, HTML, args.out, which):
        return 1
    return chinese_site(args.fast, times, args.out / "zh")


if __name__ == "__main__":
    sys.exit(main())
