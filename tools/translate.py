"""The Chinese edition (简体中文): translations kept as gettext PO files, the Chinese files written from them.

    ./course.sh translate           update the PO files from the English sources, write the Chinese files,
                                    list every translation that is missing or stale
    ./course.sh translate --check   write nothing: exit 1 if a translation is missing or stale, or a Chinese
                                    file differs from what the command would write (what the tests run)

The English files are the only source. Every translation unit is keyed by its English text (the PO
entry's msgid), so changing an English cell makes its translation stale:

- chapters/NN_*.ipynb: each markdown cell and each code comment -> i18n/zh/chapters/NN_*.po
  -> chapters/zh/NN_*.ipynb
- README.md and docs/workshop.md: each paragraph (code blocks stay as they are) -> i18n/zh/README.po
  and i18n/zh/workshop.po -> README.zh.md and docs/workshop.zh.md
- diffedu/exercises/*.py, the checkers: each message, with {0}, {1}, ... for its values ->
  diffedu/exercises/locale/zh.po, read when a checker answers (diffedu/exercises/language.py)

When an English unit changes, its old translation is kept as a "fuzzy" (stale) entry with the old
English beside it (#| msgid), for the translator to revise and un-fuzzy. A missing or stale unit is
shown in English in the Chinese file, and listed here and by tests/test_translation.py.
Code cells are shared: only comments are translated, so a Chinese chapter's code equals the English
code token for token; its first code cell also switches the checkers' feedback to Chinese.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import io
import re
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat
import polib

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE = "zh"
I18N = ROOT / "i18n" / LANGUAGE
CHAPTERS = ROOT / "chapters"
CHINESE_CHAPTERS = CHAPTERS / LANGUAGE
DOCUMENTS = {"README.md": "README.zh.md", "docs/workshop.md": "docs/workshop.zh.md"}  # English -> Chinese
FEEDBACK_PO = ROOT / "diffedu" / "exercises" / "locale" / f"{LANGUAGE}.po"
COMMENT = "code comment"  # the msgctxt of a comment, so it never shares an entry with a markdown cell
LANGUAGE_LINES = (  # appended to a Chinese chapter's first code cell
    "from diffedu.exercises import use_language\n"
    f'use_language("{LANGUAGE}")  # 练习检查器用中文回答'
)
LANGUAGE_LINKS = {  # the line under a document's first heading that links the two editions
    "README.md": ("[简体中文](README.zh.md)", "[English](README.md)"),
    "docs/workshop.md": ("[简体中文](workshop.zh.md)", "[English](workshop.md)"),
}
STALE_MATCH = 0.5  # an old translation is offered for a changed English unit when they are this similar (difflib)


@dataclass(frozen=True)
class Unit:
    """One piece of English to translate: its text, its PO context (None or COMMENT), and where it is."""

    text: str
    context: str | None
    where: str  # "03_unet_mnist, cell 7" or "README.md, line 40"


# -- finding the units --------------------------------------------------------------------------


def english_chapters() -> list[Path]:
    return sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb")) + sorted(CHAPTERS.glob("appendix_*.ipynb"))


def has_words(text: str) -> bool:
    return re.search(r"[A-Za-z]{3,}", text) is not None


def code_tokens(source: str) -> list[tokenize.TokenInfo]:
    """The Python tokens of a code cell, its shell (!) and magic (%) lines read as `pass` (same rows and
    indentation), which tokenize cannot read."""
    masked = "\n".join(line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("!", "%"))
                       else line for line in source.split("\n"))
    return list(tokenize.generate_tokens(io.StringIO(masked + "\n").readline))


def comment_groups(source: str) -> list[tuple[list[int], int, str]]:
    """The comments of a code cell worth translating: (line numbers, column, text), where a run of
    full-line comments at one indentation is one group (one sentence across lines) and a comment after
    code is a group of its own. Shell (!) and magic (%) lines are left alone."""
    lines = source.split("\n")
    comments = []  # (row, column, text, full_line)
    for token in code_tokens(source):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            full_line = not lines[row - 1][:column].strip()
            comments.append((row - 1, column, token.string[1:].strip(), full_line))
    groups: list[tuple[list[int], int, str]] = []
    for row, column, text, full_line in comments:
        previous = groups[-1] if groups else None
        if (full_line and previous and previous[0][-1] == row - 1 and previous[1] == column
                and not lines[previous[0][0]][:column].strip()):
            previous[0].append(row)
            groups[-1] = (previous[0], column, previous[2] + "\n" + text)
        else:
            groups.append(([row], column, text))
    return [group for group in groups if has_words(group[2])]


def chapter_units(path: Path) -> list[Unit]:
    notebook = nbformat.read(path, as_version=4)
    units = []
    for index, cell in enumerate(notebook.cells):
        where = f"{path.stem}, cell {index}"
        if cell.cell_type == "markdown":
            units.append(Unit(cell.source, None, where))
        elif cell.cell_type == "code":
            units += [Unit(text, COMMENT, f"{where}, line {rows[0] + 1}") for rows, _, text in comment_groups(cell.source)]
    return units


def markdown_blocks(text: str) -> list[tuple[str, bool]]:
    """A markdown document as (block, translate?) pieces that join with newlines into the document:
    paragraphs (runs of non-blank lines) are translated; blank lines, code fences and lines without
    words are kept as they are."""
    blocks: list[tuple[str, bool]] = []
    paragraph: list[str] = []
    fence: list[str] | None = None

    def flush():
        if paragraph:
            joined = "\n".join(paragraph)
            blocks.append((joined, has_words(joined)))
            paragraph.clear()

    for line in text.split("\n"):
        if fence is not None:
            fence.append(line)
            if line.lstrip().startswith("```"):
                blocks.append(("\n".join(fence), False))
                fence = None
        elif line.lstrip().startswith("```"):
            flush()
            fence = [line]
        elif not line.strip():
            flush()
            blocks.append((line, False))
        else:
            paragraph.append(line)
    flush()
    if fence is not None:
        blocks.append(("\n".join(fence), False))
    return blocks


def document_units(name: str) -> list[Unit]:
    text = (ROOT / name).read_text()
    units, line = [], 1
    for block, translate in markdown_blocks(text):
        if translate and block not in LANGUAGE_LINKS.get(name, ()):
            units.append(Unit(block, None, f"{name}, line {line}"))
        line += block.count("\n") + 1
    return units


def fstring_template(node: ast.JoinedStr) -> str:
    """An f-string as a message template: its text, with {0}, {1}, ... where values go."""
    parts, count = [], 0
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        else:
            parts.append("{" + str(count) + "}")
            count += 1
    return "".join(parts)


def feedback_units() -> list[Unit]:
    """Every message a checker can show: the strings and f-strings of diffedu/exercises/ with words
    in them (docstrings left out), as templates with {0}, {1}, ... for the values."""
    units = []
    for path in sorted((ROOT / "diffedu" / "exercises").glob("*.py")):
        if path.name == "language.py":  # the translating itself: its one error message stays English
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        inside_fstring = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
        for node in ast.walk(tree):
            if id(node) in docstrings or id(node) in inside_fstring:
                continue
            if isinstance(node, ast.JoinedStr):
                text = fstring_template(node)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            if " " in text.strip() and has_words(text) and not text.lstrip().startswith("<"):  # not HTML
                units.append(Unit(text, None, f"diffedu/exercises/{path.name}, line {node.lineno}"))
    return sorted(units, key=lambda unit: (unit.where.split(",")[0], int(unit.where.rsplit(" ", 1)[1])))


# -- the PO files -------------------------------------------------------------------------------


def catalog_path(source: str) -> Path:
    """The PO file of an English source: a chapter's stem, a document's name, or "feedback"."""
    if source == "feedback":
        return FEEDBACK_PO
    if source in DOCUMENTS:
        return I18N / f"{Path(source).stem}.po"
    return I18N / "chapters" / f"{source}.po"


def sources() -> dict[str, list[Unit]]:
    """Every English source and its units, in reading order."""
    found = {path.stem: chapter_units(path) for path in english_chapters()}
    found.update({name: document_units(name) for name in DOCUMENTS})
    found["feedback"] = feedback_units()
    return found


def updated_catalog(source: str, units: list[Unit]) -> polib.POFile:
    """The PO file of `source` brought up to date with its English units (not written): kept
    translations stay, changed units get their old translation marked fuzzy, new ones are empty,
    and translations no unit uses any more are kept as obsolete entries (#~) for reuse."""
    path = catalog_path(source)
    old = polib.pofile(str(path)) if path.exists() else polib.POFile()
    current = {(entry.msgctxt, entry.msgid): entry for entry in old if not entry.obsolete}
    wanted = {(unit.context, unit.text) for unit in units}
    spare = [entry for entry in old if entry.msgstr and (entry.obsolete or (entry.msgctxt, entry.msgid) not in wanted)]
    catalog = polib.POFile(wrapwidth=0)
    catalog.metadata = {"Project-Id-Version": "diffedu", "Language": LANGUAGE, "MIME-Version": "1.0",
                        "Content-Type": "text/plain; charset=UTF-8", "Content-Transfer-Encoding": "8bit"}
    catalog.header = f"The Chinese translation of {source} (written by ./course.sh translate; edit the msgstr lines)"
    entries: dict[tuple, polib.POEntry] = {}
    for unit in units:
        key = (unit.context, unit.text)
        if key in entries:
            entries[key].occurrences.append((unit.where, ""))
            continue
        entry = polib.POEntry(msgctxt=unit.context, msgid=unit.text, msgstr="", occurrences=[(unit.where, "")])
        kept = current.get(key)
        if kept is not None:
            entry.msgstr, entry.flags = kept.msgstr, list(kept.flags)
            entry.previous_msgid = kept.previous_msgid if "fuzzy" in kept.flags else None  # (revised: the old English goes)
        else:
            scores = [(difflib.SequenceMatcher(None, old_entry.msgid, unit.text, autojunk=False).ratio(), index)
                      for index, old_entry in enumerate(spare) if old_entry.msgctxt == unit.context]
            similarity, index = max(scores, default=(0.0, None))
            if index is not None and similarity >= STALE_MATCH:
                best = spare.pop(index)
                entry.msgstr, entry.flags, entry.previous_msgid = best.msgstr, ["fuzzy"], best.msgid
        entries[key] = entry
        catalog.append(entry)
    for entry in spare:
        entry.obsolete, entry.occurrences = True, []
        catalog.append(entry)
    return catalog


def translated(catalog: polib.POFile, text: str, context: str | None = None) -> str | None:
    """The current translation of `text`, or None if it is missing or stale."""
    entry = catalog.find(text, msgctxt=context)
    if entry is None or entry.obsolete or not entry.msgstr or "fuzzy" in entry.flags:
        return None
    return entry.msgstr


def problems(catalog: polib.POFile) -> list[str]:
    """Every missing or stale translation, by where its English is."""
    found = []
    for entry in catalog:
        if entry.obsolete:
            continue
        state = "stale (the English changed: see #| msgid)" if "fuzzy" in entry.flags else "missing" if not entry.msgstr else None
        if state:
            found.append(f"{entry.occurrences[0][0]}: {state}")
    return found


# -- checks: what a translation must keep (tests/test_translation.py runs them) ----------------

DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:[^`\n]|\n(?!\n)|(?!\1)`+)+?)(?<!`)\1(?!`)")  # `x`, ``a `b` c``
FENCE = re.compile(r"```.*?```", re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$")
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\([^)\s]*\)")
URL = re.compile(r"\]\(([^)\s]+)\)|(?<![(<\"])(https?://[^\s)>\"]+)")
EQUATION_REFERENCE = re.compile(r"\((\d{1,2}\.\d{1,2}[a-z]?)\)")
FIGURE_REFERENCE = re.compile(r"(?:Figure|Fig\.|图)\s*(\d+(?:\.\d+)?)")
HTML_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9]*)[^>]*>")
PLACEHOLDER = re.compile(r"\{\d+\}")


def without_code(text: str) -> str:
    return CODE_SPAN.sub(" ", FENCE.sub(" ", text))


def without_math(text: str) -> str:
    return INLINE_MATH.sub(" ", DISPLAY_MATH.sub(" ", without_code(text)))


def headings(text: str) -> list[str]:
    return [line.split(" ", 1)[0] for line in without_code(text).split("\n") if re.match(r"#{1,6} ", line)]


def structure_problems(english: str, chinese: str, feedback: bool = False) -> list[str]:
    """What a translation changed that it must keep: equations and their \\tag numbers, inline math,
    code, links, equation and figure references, headings, HTML tags, and a message's {0}, {1}, ..."""
    found = []

    def compare(what, pick, as_set=False):
        english_items, chinese_items = pick(english), pick(chinese)
        if as_set:
            english_items, chinese_items = sorted(set(english_items)), sorted(set(chinese_items))
        if english_items != chinese_items:
            missing = [item for item in english_items if item not in chinese_items]
            extra = [item for item in chinese_items if item not in english_items]
            found.append(f"{what} differ: missing {missing[:3]}, not in the English {extra[:3]}")

    compare("equations ($$...$$)", lambda text: DISPLAY_MATH.findall(without_code(text)))
    compare("inline math ($...$)", lambda text: INLINE_MATH.findall(DISPLAY_MATH.sub(" ", without_code(text))), as_set=True)
    compare("code spans (`...`)", lambda text: [" ".join(span.group(0).split()) for span in CODE_SPAN.finditer(FENCE.sub(" ", text))],
            as_set=True)
    compare("code blocks (```)", lambda text: FENCE.findall(text))
    compare("links", lambda text: [a or b for a, b in URL.findall(without_math(text))], as_set=True)
    compare("equation references (N.M)", lambda text: EQUATION_REFERENCE.findall(without_math(text)), as_set=True)
    compare("figure references", lambda text: FIGURE_REFERENCE.findall(without_math(text)), as_set=True)
    compare("headings", headings)
    compare("HTML tags", lambda text: sorted(HTML_TAG.findall(without_code(text))))
    if feedback:
        compare("placeholders {N}", lambda text: sorted(PLACEHOLDER.findall(text)))
    return found


@functools.lru_cache(maxsize=1)
def glossary() -> tuple[tuple[str, str, bool], ...]:
    """The glossary's rows: (English, Chinese, checked), read once."""
    rows = []
    for line in (I18N / "glossary.md").read_text().split("\n"):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and cells[0] not in ("English", "---"):
            rows.append((cells[0], cells[1], cells[2] == "checked"))
    return tuple(rows)


@functools.lru_cache(maxsize=None)
def term_pattern(english: str) -> re.Pattern:
    """The English term as a word, plural or not, in any case (hyphen and space alike)."""
    words = r"[- ]".join(re.escape(word) for word in re.split(r"[- ]", english))
    return re.compile(rf"(?<![\w./-]){words}(s|es)?(?![\w/-])", re.I)


def glossary_problems(english: str, chinese: str) -> list[str]:
    """The checked glossary terms the English uses (outside code, math and links: a linked paper title stays
    English) and the Chinese does not."""
    plain_english, plain_chinese = (MARKDOWN_LINK.sub(" ", without_math(text)) for text in (english, chinese))
    plain_english = URL.sub(" ", plain_english)
    return [f"'{term}' should be {chinese_term}" for term, chinese_term, checked in glossary()
            if checked and term_pattern(term).search(plain_english) and chinese_term not in plain_chinese]


# -- the Chinese files --------------------------------------------------------------------------

COLAB_CHAPTER = re.compile(r"(https://colab\.research\.google\.com/github/[^)\s]+/chapters/)(\w+\.ipynb)")


def chinese_code(source: str, catalog: polib.POFile) -> str:
    """A code cell with its comments translated; the code itself is untouched."""
    lines = source.split("\n")
    for rows, column, text in reversed(comment_groups(source)):
        chinese = translated(catalog, text, COMMENT)
        if chinese is None:
            continue
        chinese_lines = chinese.split("\n")
        if len(rows) == 1 and lines[rows[0]][:column].strip():  # a comment after code
            lines[rows[0]] = lines[rows[0]][:column] + "# " + " ".join(chinese_lines)
        else:
            indent = lines[rows[0]][:column]
            lines[rows[0]: rows[-1] + 1] = [f"{indent}# {line}" for line in chinese_lines]
    return "\n".join(lines)


def chinese_notebook(path: Path, catalog: polib.POFile):
    notebook = nbformat.read(path, as_version=4)
    first_code = True
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            text = translated(catalog, cell.source) or cell.source
            cell.source = COLAB_CHAPTER.sub(rf"\g<1>{LANGUAGE}/\g<2>", text)
        elif cell.cell_type == "code":
            cell.source = chinese_code(cell.source, catalog)
            if first_code:
                cell.source += "\n" + LANGUAGE_LINES
                first_code = False
    notebook.metadata["diffedu"] = {"language": LANGUAGE, "english": path.name}
    return notebook


def chinese_document(name: str, catalog: polib.POFile) -> str:
    pieces = []
    for block, translate in markdown_blocks((ROOT / name).read_text()):
        if block in LANGUAGE_LINKS.get(name, ()):
            block = LANGUAGE_LINKS[name][1]
        elif translate:
            block = translated(catalog, block) or block
        pieces.append(block)
    text = "\n".join(pieces)
    text = re.sub(r"\]\(((?:\.\./)?chapters/)(\d\d_\w+\.ipynb)\)", rf"](\g<1>{LANGUAGE}/\g<2>)", text)
    return COLAB_CHAPTER.sub(rf"\g<1>{LANGUAGE}/\g<2>", text)


def outputs() -> tuple[dict[Path, str], list[str], int]:
    """What the command writes, {file: text} (the Chinese files and the PO files), the missing or stale
    translations, and the number of units."""
    files, found, total = {}, [], 0
    for source, units in sources().items():
        catalog = updated_catalog(source, units)
        files[catalog_path(source)] = catalog.__unicode__() + "\n"
        found += problems(catalog)
        total += sum(not entry.obsolete for entry in catalog)
        if source == "feedback":
            continue
        if source in DOCUMENTS:
            files[ROOT / DOCUMENTS[source]] = chinese_document(source, catalog)
        else:
            english = CHAPTERS / f"{source}.ipynb"
            files[CHINESE_CHAPTERS / english.name] = nbformat.writes(chinese_notebook(english, catalog)) + "\n"
    return files, found, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Update the Chinese edition from the English one.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a translation is missing or stale or a Chinese file is out of date")
    args = parser.parse_args(argv)
    files, found, total = outputs()
    out_of_date = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in out_of_date:
            print(f"out of date: {path.relative_to(ROOT)} (run ./course.sh translate)")
    else:
        for path in out_of_date:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path])
            print(f"wrote {path.relative_to(ROOT)}")
    for problem in found:
        print(problem)
    print(f"{total - len(found)} of {total} units translated; {len(found)} missing or stale"
          + ("" if not found else ": edit the msgstr of each in its PO file (i18n/zh/, diffedu/exercises/locale/), "
             "delete its '#, fuzzy' line, and run ./course.sh translate again"))
    return 1 if args.check and (found or out_of_date) else 0


if __name__ == "__main__":
    sys.exit(main())
