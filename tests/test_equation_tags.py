"""Equation numbers: every equation the library cites is tagged in a chapter, exactly once.

The chapters number their equations per chapter with \\tag{N.M} (N = the chapter, M counts up),
and the library's docstrings and comments cite the same numbers, e.g. "eq. (2.4)",
"eqs. (2.1)-(2.3)", "eq. 1.5" or a bare "the loss (3.5)". A citation counts as ours when it
has the form N.M with a chapter N from 0 to 11:

* after "eq."/"eqs."/"equation(s)", with or without parentheses, including lists and ranges
  ("eqs. (2.7)-(2.8)", "eqs. 4.2 and 4.3": every number listed is checked, a range by its ends);
* or as a bare "(N.M)" inside a string or a comment, not straight after a name, so
  `nn.Dropout(0.3)` and `sqrt(0.012)` are code, not citations.

A paper's equation is cited with its own number, "(Song et al. 2021, eq. 12)": an integer,
so it is not ours. Floats such as 0.18215, version numbers such as 0.30.3 and guidance values
such as 1.5 outside "(...)" never match.
"""

import io
import json
import re
import tokenize
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "diffedu"
CHAPTERS = ROOT / "chapters"

# one of our equation numbers: a chapter 0-11, a dot, one or two digits, and nothing
# number-like after it (so "12.3", "1.555" and "0.30.3" are not ours)
_CHAPTER = r"(?:1[01]|\d)"
_NUMBER = rf"(?<!\w)(?<!\d\.){_CHAPTER}\.\d{{1,2}}(?!\d)(?!\.\d)"
_NUMBER_IN_PARENS = rf"\(?\s*{_NUMBER}\s*\)?"
_SEPARATOR = r"\s*(?:,\s*and|,\s*or|,|-|\u2013|\u2014|to|and|or)\s*"
# "eq. (2.4)", "Eqs. (2.1)-(2.3)", "equation 1.5", "eqs. 4.2, 4.3 and 4.5"
EQ_CITATION = re.compile(
    rf"\b(?:eqs?|equations?)\b\.?\s*({_NUMBER_IN_PARENS}(?:{_SEPARATOR}{_NUMBER_IN_PARENS})*)",
    re.IGNORECASE,
)
# a bare "(3.5)" in prose ("the loss (3.5)"), but not a call such as "Dropout(0.3)"
BARE_CITATION = re.compile(rf"(?<!\w)\(\s*({_CHAPTER}\.\d{{1,2}})\s*\)")
NUMBER = re.compile(_NUMBER)
TAG = re.compile(r"\\tag\*?\s*\{\s*([^}]*?)\s*\}")


def find_citations(text, bare=True):
    """(offset, "N.M") for every citation in prose `text`, in order, each offset once.

    With bare=False only the "eq."-style citations, for text that may be code.
    """
    found = {}
    for m in EQ_CITATION.finditer(text):
        for n in NUMBER.finditer(m.group(1)):
            found[m.start(1) + n.start()] = n.group(0)
    if bare:
        for m in BARE_CITATION.finditer(text):
            found[m.start(1)] = m.group(1)
    return sorted(found.items())


def _prose_regions(source):
    """(offset, text) of every string and comment in Python `source`; all of it if it won't tokenize."""
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    prose = {tokenize.STRING, tokenize.COMMENT, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):  # a half-edited file: scan every character instead
        return [(0, source)]
    return [(line_starts[t.start[0] - 1] + t.start[1], t.string) for t in tokens if t.type in prose]


def find_citations_in_source(source):
    """(line, "N.M", line text) for every citation in Python `source`.

    "eq."-style citations are looked for everywhere (they survive a string split across two
    lines); bare "(N.M)" only in strings and comments, where they cannot be code.
    """
    found = dict(find_citations(source, bare=False))
    for start, text in _prose_regions(source):
        for offset, number in find_citations(text):
            found.setdefault(start + offset, number)
    lines = source.splitlines()
    result = []
    for offset, number in sorted(found.items()):
        line = source.count("\n", 0, offset) + 1
        result.append((line, number, lines[line - 1].strip()))
    return result


def library_citations():
    """(path relative to the repo, line, "N.M", line text) for every *.py under diffedu/."""
    citations = []
    for path in sorted(LIBRARY.rglob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:  # moved away while the library is being reorganised
            continue
        rel = path.relative_to(ROOT).as_posix()
        citations += [(rel, line, number, text) for line, number, text in find_citations_in_source(source)]
    return citations


def chapter_tags():
    """(notebook name, cell index, tag text) for every \\tag{...} in a chapter cell's source."""
    tags = []
    for path in sorted(CHAPTERS.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb["cells"]):
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            tags += [(path.name, i, m.group(1)) for m in TAG.finditer(source)]
    return tags


def test_citation_parser_finds_ours_and_only_ours():
    text = ("eqs. (2.1)-(2.3) and eq. (7.8), not eq. 12 or v0.30.3; Eq. 1.4 and equations 4.2, 4.3; "
            "the loss (3.5) with guidance 1.5, scale 0.18215, nn.Dropout(0.3), sqrt(0.012), "
            "eq. 12.3 of a paper, (Karras et al. 2022, eq. 5), eq. (10.4) and the observation (10.1)")
    assert [number for _, number in find_citations(text)] == ["2.1", "2.3", "7.8", "1.4", "4.2", "4.3", "3.5", "10.4", "10.1"]

    source = ('"""Module docstring: the posterior mean (2.2)."""\n'
              "x = (0.5)  # code, not a citation; the comment cites eq. 1.5\n"
              "y = nn.Dropout(0.3)\n"
              'msg = ("eq. "\n'
              '       "(2.4) solved for x_0")\n')
    assert [(line, number) for line, number, _ in find_citations_in_source(source)] == [
        (1, "2.2"), (2, "1.5"), (5, "2.4")]


def test_every_cited_equation_is_tagged_in_a_chapter():
    citations = library_citations()
    tags = {tag for _, _, tag in chapter_tags()}
    assert len(citations) > 30, (
        f"found only {len(citations)} equation citations under {LIBRARY}: the parser or the glob is broken")
    assert len(tags) > 40, f"found only {len(tags)} \\tag{{...}} in {CHAPTERS}/*.ipynb: the tag scan is broken"
    missing = [f"{path}:{line} cites eq. ({number}), which no chapter tags  [{text}]"
               for path, line, number, text in citations if number not in tags]
    assert not missing, (
        "library citations of equations that no chapter has a \\tag{N.M} for (fix the number, or tag the "
        "equation in its chapter; a paper's own equation is cited as '(Author et al. 2021, eq. 12)'):\n  "
        + "\n  ".join(missing))


def test_every_tag_appears_once_across_the_chapters():
    where = defaultdict(list)
    for notebook, cell, tag in chapter_tags():
        where[tag].append((notebook, cell))
    repeated = [f"\\tag{{{tag}}} appears {len(places)} times: "
                + ", ".join(f"{notebook} cell {cell}" for notebook, cell in sorted(places))
                for tag, places in sorted(where.items()) if len(places) > 1]
    assert not repeated, "each equation tag must appear once across all chapters:\n  " + "\n  ".join(repeated)


def test_tags_are_numbered_by_their_chapter():
    wrong = []
    for notebook, cell, tag in chapter_tags():
        chapter = re.match(r"(\d+)_", notebook)
        if chapter is None:
            continue  # not a numbered chapter
        n = int(chapter.group(1))
        if not re.fullmatch(rf"{n}\.[1-9]\d*", tag):
            wrong.append(f"{notebook} cell {cell} has \\tag{{{tag}}}; chapter {n}'s tags read {n}.1, {n}.2, ...")
    assert not wrong, "equations are numbered per chapter as \\tag{N.M}, N = the chapter:\n  " + "\n  ".join(wrong)
