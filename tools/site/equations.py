"""A Sphinx extension for the course's equation numbers: every chapter tags its equations
\\tag{N.M} (N = the chapter), and the text cites them as "(N.M)", across chapters too.

On the site, each tagged display equation gets the anchor #eq-N-M, and each "(N.M)" in the text
(not in code or math) becomes a link to it, on whichever page it is. A number that no chapter
tags, such as "(0.5)", is left as it is.
"""

from __future__ import annotations

import re

from docutils import nodes

TAG = re.compile(r"\\tag\{(\d\.\d{1,2})\}")
CITATION = re.compile(r"\((\d\.\d{1,2})\)")
NOT_PROSE = (nodes.literal, nodes.literal_block, nodes.math, nodes.math_block, nodes.raw, nodes.reference,
             nodes.FixedTextElement)


def anchor(number: str) -> str:
    return "eq-" + number.replace(".", "-")


def record_equations(app, doctree) -> None:
    """doctree-read: give each tagged equation its anchor and remember which page holds it."""
    equations = app.env.diffedu_equations = getattr(app.env, "diffedu_equations", {})
    for block in doctree.findall(nodes.math_block):
        for number in TAG.findall(block.astext()):
            block["ids"].append(anchor(number))
            equations[number] = app.env.docname


def forget_page(app, env, docname) -> None:
    """env-purge-doc: a page read again records its equations again."""
    equations = getattr(env, "diffedu_equations", {})
    for number in [n for n, page in equations.items() if page == docname]:
        del equations[number]


def merge(app, env, docnames, other) -> None:
    """env-merge-info (parallel reads)."""
    env.diffedu_equations = {**getattr(env, "diffedu_equations", {}), **getattr(other, "diffedu_equations", {})}


def link_citations(app, doctree, docname) -> None:
    """doctree-resolved: "(N.M)" in prose -> a link to equation N.M."""
    equations = getattr(app.env, "diffedu_equations", {})
    for text in list(doctree.findall(nodes.Text)):
        if any(isinstance(parent, NOT_PROSE) for parent in ancestors(text)) or not CITATION.search(text):
            continue
        pieces, last = [], 0
        for match in CITATION.finditer(text):
            number = match.group(1)
            if number not in equations:  # a plain number in brackets, such as "(0.5)"
                continue
            pieces.append(nodes.Text(text[last:match.start()]))
            uri = app.builder.get_relative_uri(docname, equations[number]) + "#" + anchor(number)
            pieces.append(nodes.reference("", match.group(0), internal=True, refuri=uri, classes=["equation-link"]))
            last = match.end()
        if pieces:
            pieces.append(nodes.Text(text[last:]))
            text.parent.replace(text, pieces)


def ancestors(node):
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def setup(app):
    app.connect("doctree-read", record_equations)
    app.connect("env-purge-doc", forget_page)
    app.connect("env-merge-info", merge)
    app.connect("doctree-resolved", link_citations)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
