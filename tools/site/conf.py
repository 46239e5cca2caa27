"""Sphinx settings of the course's site (tools/site/build.py writes the pages next to a copy of this file).

Sphinx with MyST-NB and the Book theme, the stack Jupyter Book 1 is made of: it renders executed
notebooks with their outputs, numbers nothing by itself (the chapters' own \\tag{N.M} show), builds
the API reference from the library's docstrings (autodoc) and a search index that works offline.
MathJax is served from the site itself, so pages typeset without a network.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # equations.py, copied beside this file

project = "diffedu"
author = "the diffedu authors"
copyright = "2026, the diffedu authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "equations"]

nb_execution_mode = "off"  # the pages show outputs of ./course.sh execute, never a fresh run
nb_output_stderr = "remove"  # progress bars and warnings: noise on a page
nb_render_markdown_format = "myst"  # a cell's Markdown output (the result tables) as MyST: CommonMark has no tables
myst_enable_extensions = ["dollarmath", "amsmath", "html_image", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # not PyTorch's nn.Module.forward text under every forward()
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}

html_theme = "sphinx_book_theme"
html_title = "diffedu: diffusion models, from the first noise formula to Stable Diffusion"
html_static_path = ["_static"]
html_css_files = ["diffedu.css"]  # long equations scroll sideways, their left edge in view
html_js_files = ["diffedu.js"]  # the menu and contents buttons above the article open the sidebars
html_favicon = "favicon.svg"  # (without one, browsers ask for /favicon.ico and log a 404)
html_theme_options = {"show_toc_level": 2, "home_page_in_toc": True, "use_download_button": False,
                      "use_fullscreen_button": False}
html_last_updated_fmt = "%Y-%m-%d"
html_context = {"default_mode": "light"}  # (with no mode stored yet, the theme would log an error)
mathjax_path = "mathjax/tex-chtml.js"  # MathJax 3, from the django-static-mathjax wheel, in _static


# Google-style sections (napoleon's) and reStructuredText directives: their indented blocks are theirs
SECTION = re.compile(r"^\s*((Args|Arguments|Returns|Yields|Raises|Example|Examples|Note|Notes|Attributes):|\.\. [\w-]+::.*)\s*$")


def plain_text_blocks(app, what, name, obj, options, lines) -> None:
    """The library's docstrings are plain text read in a terminal: an indented block under a line
    (a command, a formula, a list of steps) is shown as it is, not parsed as reStructuredText.
    Google-style sections (Args:, Returns:, ...) are left to napoleon."""
    shown, block_indent, section_indent, above = [], None, None, ""  # above: the last line with text
    for line in lines:
        if line.strip():
            if section_indent is not None and indent(line) <= section_indent:
                section_indent = None  # the section ends
            if block_indent is not None and indent(line) <= block_indent:
                shown.append("")  # the block ends
                block_indent = None
            if SECTION.match(line):
                section_indent = indent(line)
            elif (section_indent is None and block_indent is None and above and indent(line) > indent(above)
                  and not SECTION.match(above)):
                shown += ([""] if shown and shown[-1].strip() else []) + [" " * indent(above) + "::", ""]
                block_indent = indent(above)
            above = line
        shown.append(line if block_indent is not None else line.replace("*", "\\*"))  # "*args" is no emphasis
    lines[:] = shown


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def setup(app):
    app.connect("autodoc-process-docstring", plain_text_blocks, priority=100)
