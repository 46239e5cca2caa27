"""The course's website as a reader sees it: built from the fast-mode executed chapters and opened,
page by page, in headless Chromium (Playwright driving the OS's Chromium). Every page loads
without console errors, its equations are typeset and can be seen whole (at a laptop's and a
phone's width), its result tables are tables, its images have loaded, its internal links
(equation links included) lead somewhere that exists, the menu buttons open the chapter list on
a phone, and the search box finds things. The learners' build (`--learner`) has no solutions.
The Chinese edition (site/zh/) is read the same way, and every
page's language switch leads to its counterpart. Screenshots of the chapter pages go to build/screenshots/.

Needs `./course.sh execute --fast` first (about 3 minutes; .ci/run does it) and the OS package
chromium; without either, the test is skipped and says which is missing.
"""

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import nbformat
import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
sync_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")) + sorted((ROOT / "chapters").glob("appendix_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("ch[0-9][0-9].py"))
EXECUTED = ROOT / "build" / "executed" / "fast"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TABLE_RULE = re.compile(r"^\s*\|?(\s*:?-{3,}:?\s*\|)+\s*(:?-{3,}:?\s*)?$", re.M)  # |---|---| under a table's head

PAGE_STATE = """() => {
  const text = document.body.innerText;
  const prose = document.body.cloneNode(true);  // the text outside code and typeset formulas
  prose.querySelectorAll("pre, code, .highlight, mjx-container, script, style").forEach(e => e.remove());
  return {
    raw_tex: ["$$", "\\\\begin{", "\\\\tag{", "\\\\frac"].filter(s => prose.textContent.includes(s)),
    raw_tables: (prose.textContent.match(/\\|\\s*(-{3,}|\u2014|\u2013)\\s*\\|/g) || []).slice(0, 3),
    output_tables: document.querySelectorAll(".cell_output table").length,
    math: document.querySelectorAll(".math").length,
    display_math: document.querySelectorAll('mjx-container[display="true"]').length,
    untypeset: Array.from(document.querySelectorAll(".math")).filter(e => !e.querySelector("mjx-container")).length,
    math_errors: document.querySelectorAll("mjx-merror").length,
    images: document.images.length,
    broken_images: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    language_link: (document.querySelector("a.diffedu-language") || {}).href || null,
    lang: document.documentElement.lang,
    ids: Array.from(document.querySelectorAll("[id]")).map(e => e.id),
    text: text,
  };
}"""

# The display equations a reader cannot see whole. An equation is seen whole when, at scrollLeft 0, it lies
# inside every box around it that clips (overflow not visible), or inside one that scrolls sideways far
# enough (its scrollWidth), which then lies in the page's column. (Before, a numbered equation wider than the
# column stuck out to the left of its scrolling box, where no scrolling reaches: (1.5) lost its first half.)
CUT_EQUATIONS = """() => {
  const column = document.querySelector("article.bd-article") || document.body;
  const cut = [];
  for (const equation of document.querySelectorAll('mjx-container[display="true"]')) {
    let shown = equation.querySelector("mjx-math") || equation;  // what must be seen: the equation, or its scrolling box
    if (shown.getBoundingClientRect().width === 0) continue;  // not on show (a collapsed block)
    let whole = true;
    for (let box = equation; box && box !== column && whole; box = box.parentElement) {
      const overflow = getComputedStyle(box).overflowX, scrolls = overflow === "auto" || overflow === "scroll";
      if (overflow === "visible") continue;
      box.scrollLeft = 0;
      const inner = shown.getBoundingClientRect(), left = box.getBoundingClientRect().left + box.clientLeft;
      whole = inner.left >= left - 2 && inner.right <= left + (scrolls ? box.scrollWidth : box.clientWidth) + 2;
      if (scrolls) shown = box;
    }
    const inner = shown.getBoundingClientRect(), page = column.getBoundingClientRect();
    if (!whole || inner.left < page.left - 2 || inner.right > page.right + 2) {
      cut.push((equation.closest(".math[id]") || {}).id || equation.textContent.slice(0, 30));
    }
  }
  return cut;
}"""

WIDEST_EQUATION = """() => {  // the widest numbered equation of the page, to show in a screenshot
  const numbered = Array.from(document.querySelectorAll("div.math[id^='eq-'] mjx-math"));
  if (!numbered.length) return null;
  return numbered.reduce((a, b) => (b.scrollWidth > a.scrollWidth ? b : a)).closest("div.math").id;
}"""


def build(learner: bool, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "tools" / "site" / "build.py"), "--fast", "--out", str(out)]
                            + (["--learner"] if learner else []))


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """The site and the learners' site, built at the same time (two Sphinx processes: about the time of one)."""
    if os.environ.get("DIFFEDU_TEST_SITE") != "1":
        pytest.skip("builds the whole site twice (about a minute): DIFFEDU_TEST_SITE=1 runs it, as .ci/run does in a step "
                    "of its own")
    if CHROMIUM is None:
        pytest.skip("no Chromium here: install the OS package (apt-get install chromium); Playwright's own browser "
                    "download is not used")
    missing = [c.stem for c in CHAPTERS if not (EXECUTED / c.name).exists()]
    if missing:
        pytest.skip(f"no fast-mode executed copies of {', '.join(missing)}: run `./course.sh execute --fast` first "
                    "(about 3 minutes)")
    out = tmp_path_factory.mktemp("sites")
    builds = {"site": build(False, out / "site"), "learner": build(True, out / "learner")}
    failed = [name for name, process in builds.items() if process.wait()]
    assert not failed, f"the build of {failed} failed (its messages are above)"
    return {name: out / name for name in builds}


@pytest.fixture(scope="module")
def site(sites):
    return sites["site"]


@pytest.fixture(scope="module")
def learner_site(sites):
    return sites["learner"]


def serve(directory: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(site):
    yield from serve(site)


@pytest.fixture(scope="module")
def learner_server(learner_site):
    yield from serve(learner_site)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def visit(page, url: str, screenshot: Path | None = None) -> dict:
    """Open one page, let MathJax finish and every image load; what the reader sees, and the console's errors."""
    errors = page.errors = []
    page.goto(url, wait_until="load")
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    page.evaluate("() => Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
    state = page.evaluate(PAGE_STATE)
    state["cut_equations"] = page.evaluate(CUT_EQUATIONS)
    if screenshot is not None:
        page.screenshot(path=str(screenshot))
    return {**state, "errors": errors}


@pytest.fixture(scope="module")
def seen(site, server, browser) -> dict:
    """Every page of the site as a laptop (1366 px wide) shows it; screenshots of the chapters' first screen
    (NN_name.png) and of their first result table (NN_name-table.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                   if not any(part.startswith("_") for part in p.relative_to(site).parts))
    states = {}
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    for name in pages:
        chapter = name.startswith(("chapters/", "zh/chapters/"))
        shot = ("zh-" if name.startswith("zh/") else "") + Path(name).stem  # the Chinese edition's: zh-NN_name.png
        states[name] = visit(page, server + name, SCREENSHOTS / (shot + ".png") if chapter else None)
        if chapter and states[name]["output_tables"]:
            page.locator(".cell_output table").first.screenshot(path=str(SCREENSHOTS / (shot + "-table.png")))
    page.close()
    return states


def test_every_page_of_the_site_reads_as_it_should(site, server, seen):
    assert {f"chapters/{c.stem}.html" for c in CHAPTERS} <= set(seen) and {"index.html", "times.html", "api/index.html",
                                                                            "instructors/index.html"} <= set(seen)
    problems, links = [], []
    for name, state in seen.items():
        for kind in ("errors", "raw_tex", "broken_images"):
            if state[kind]:
                problems.append(f"{name}: {kind} {state[kind][:3]}")
        if state["untypeset"] or state["math_errors"]:
            problems.append(f"{name}: {state['untypeset']} of {state['math']} formulas not typeset, {state['math_errors']} errors")
        links += [(name, href) for href in state["links"] if href.startswith(server)]
    for name, href in links:  # every internal link: to a page or file that exists, and to an anchor on it
        target, fragment = urldefrag(href)
        path = urlparse(target).path.lstrip("/") or "index.html"
        if not (site / path).exists():
            problems.append(f"{name}: link to missing {path}")
        elif fragment and path in seen and fragment not in seen[path]["ids"]:
            problems.append(f"{name}: link to missing anchor {path}#{fragment}")
    assert not problems, "\n".join(problems[:30])

    # chapters have figures and typeset equations; equation numbers link across chapters
    for chapter in CHAPTERS:
        state = seen[f"chapters/{chapter.stem}.html"]
        assert state["math"] > 0 and "The outputs on this page come from running the chapter in fast mode" in state["text"]
    assert sum(seen[f"chapters/{c.stem}.html"]["images"] for c in CHAPTERS) > 50
    to_chapter_01 = [href for name, href in links if name.startswith("chapters/02") and "01_forward_process.html#eq-1-" in href]
    assert to_chapter_01, "chapter 02 cites (1.5): it should link to chapter 01's equation"
    # the explorer of chapter 01 shows its static figure and says how to get the slider
    assert "for the slider" in seen["chapters/01_forward_process.html"]["text"]
    assert "For instructors" in seen["instructors/ch03.html"]["text"] and "def " in seen["instructors/ch03.html"]["text"]
    assert "q_sample" in seen["api/diffedu.schedules.html"]["text"]


def test_the_chinese_edition_reads_as_the_english_one_and_every_page_switches_language(seen):
    """site/zh/ has every chapter, the home page and the workshop guide in Chinese, with the same equations
    (typeset; the reading checks above cover its pages too) and outputs; every page of both editions links
    to its counterpart (the same page where there is one, else the home page), in the other language."""
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True).stdout if shutil.which("fc-list") else ""
    assert fonts.strip(), "no Chinese font here: the pages' Chinese shows as boxes (apt-get install fonts-noto-cjk; .ci/run does)"
    for chapter in CHAPTERS:
        english, chinese = seen[f"chapters/{chapter.stem}.html"], seen[f"zh/chapters/{chapter.stem}.html"]
        assert chinese["lang"].startswith("zh") and "本页的输出来自" in chinese["text"]
        assert len(re.findall(r"[\u4e00-\u9fff]", chinese["text"])) > 1000, chapter.stem
        assert chinese["display_math"] == english["display_math"] and chinese["images"] == english["images"], chapter.stem
        assert sorted(i for i in chinese["ids"] if i.startswith("eq-")) == sorted(i for i in english["ids"] if i.startswith("eq-"))
    for name in ("index.html", "workshop.html"):
        assert len(re.findall(r"[\u4e00-\u9fff]", seen[f"zh/{name}"]["text"])) > 1000, name
    missing = [name for name, state in seen.items() if not state["language_link"]]
    assert not missing, f"pages without the language switch: {missing[:5]}"
    for name, state in seen.items():
        chinese = name.startswith("zh/")
        counterpart = name[3:] if chinese else "zh/" + name
        expected = counterpart if counterpart in seen else ("index.html" if chinese else "zh/index.html")
        assert state["language_link"].endswith("/" + expected), (name, state["language_link"])


def markdown_tables(chapter: Path) -> int:
    """How many tables the chapter's cells print as Markdown (display(Markdown(...)))."""
    notebook = nbformat.read(EXECUTED / chapter.name, as_version=4)
    return sum(len(TABLE_RULE.findall(output.get("data", {}).get("text/markdown", "")))
               for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", []))


def test_result_tables_show_as_tables(seen):
    """The tables that cells print as Markdown (results of chapters 04-09) are tables on the page, not
    "| 10 network calls | ... |---|---|" as raw text, and no page shows a table's raw rule line."""
    expected = {c.stem: markdown_tables(c) for c in CHAPTERS}
    assert sum(expected.values()) >= 10, f"the chapters print fewer Markdown tables than expected: {expected}"
    shown = {stem: seen[f"chapters/{stem}.html"]["output_tables"] for stem in expected}
    assert all(shown[stem] >= n for stem, n in expected.items()), f"tables printed {expected}, shown as tables {shown}"
    raw = {name: state["raw_tables"] for name, state in seen.items() if state["raw_tables"]}
    assert not raw, f"raw Markdown table rules on the pages (outside code): {raw}"


def test_equations_can_be_seen_whole_on_a_laptop(seen):
    """At 1366 px every display equation fits its column or scrolls sideways from its left edge."""
    cut = {name: state["cut_equations"] for name, state in seen.items() if state["cut_equations"]}
    assert not cut, f"display equations cut off at 1366 px (not within their column nor scrollable into view): {cut}"


def test_chapters_read_on_a_phone(server, browser):
    """At a phone's width (390 px) a chapter page fits: it does not scroll sideways, and each long equation
    scrolls inside its own box, from its left edge. Screenshots: phone-NN_name.png, at the widest numbered
    equation."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 390, "height": 844})
    too_wide, cut = {}, {}
    for chapter in [edition + c.stem for edition in ("", "zh/") for c in CHAPTERS]:  # both editions
        page.goto(f"{server}chapters/{chapter}.html".replace("chapters/zh/", "zh/chapters/"))
        page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > 390:
            too_wide[chapter] = width
        if equations := page.evaluate(CUT_EQUATIONS):
            cut[chapter] = equations
        if widest := page.evaluate(WIDEST_EQUATION):
            page.locator(f"[id='{widest}']").scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / f"phone-{chapter.replace('/', '-')}.png"))
    page.close()
    assert not too_wide, f"pages wider than the phone: {too_wide}"
    assert not cut, f"display equations cut off at 390 px (not within their column nor scrollable into view): {cut}"


def test_the_menu_buttons_open_the_chapter_list_and_contents_on_a_phone(server, browser):
    """At 390 px the sidebars are folded away behind the menu and contents buttons above the article:
    the menu button opens the chapter list (whose links lead to the chapters), the contents button the
    chapter's sections."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{server}chapters/03_unet_mnist.html")
    chapter_list = page.locator("#pst-primary-sidebar-modal")
    assert not chapter_list.is_visible()
    page.locator("button.primary-toggle:visible").click()
    chapter_list.wait_for(state="visible", timeout=5_000)
    links = chapter_list.locator("a[href]").evaluate_all("links => links.filter(a => a.offsetParent).map(a => a.href)")
    pages = {urldefrag(href)[0].rsplit("/", 1)[-1] for href in links}
    assert {f"{c.stem}.html" for c in CHAPTERS} <= pages, f"the chapter list shows links to {sorted(pages)}"
    page.keyboard.press("Escape")
    chapter_list.wait_for(state="hidden", timeout=5_000)

    contents_buttons = page.locator("button.secondary-toggle:visible")
    if contents_buttons.count():  # the theme shows one where the contents sidebar is folded away
        contents_buttons.click()
        contents = page.locator("#pst-secondary-sidebar-modal")
        contents.wait_for(state="visible", timeout=5_000)
        assert "Exercises" in contents.inner_text() and contents.locator("a[href*='#']").count() > 5
        page.keyboard.press("Escape")

    page.locator("button.primary-toggle:visible").click()  # and a chapter is one tap away
    chapter_list.get_by_role("link", name=re.compile("Chapter 05")).click()
    page.wait_for_url("**/05_stable_diffusion.html")
    page.close()


def search(page, url: str, query: str) -> str:
    page.goto(f"{url}search.html?q={query}")
    page.wait_for_function("() => /Search finished|did not match|搜索完成|没有匹配/.test(document.querySelector('#search-results')"
                           "?.textContent || '')", timeout=30_000)
    return page.inner_text("#search-results")


def test_the_search_box_finds_a_library_function(server, browser):
    page = browser.new_page()
    results = search(page, server, "alpha_bar")
    chinese = search(page, server + "zh/", "alpha_bar")  # (Chinese words too where jieba is installed)
    page.close()
    assert "chapter" in results.lower() or "schedules" in results
    assert "搜索完成" in chinese and "第" in chinese, chinese[:300]


def page_texts(site: Path) -> dict[str, str]:
    """The text of every page of a site (tags dropped), by its path."""
    return {p.relative_to(site).as_posix(): html.unescape(re.sub(r"<[^>]+>", "", p.read_text()))
            for p in site.rglob("*.html")}


def test_the_learners_site_has_no_solutions(site, learner_site, server, learner_server, browser):
    """`./course.sh site --learner` (for a workshop's learners) has no solution page, no link to one, no
    line of solutions/*.py, and its search box does not find words that only the solutions have."""
    assert not (learner_site / "instructors").exists() and (learner_site / "chapters" / "03_unet_mnist.html").exists()
    links = {p.relative_to(learner_site).as_posix(): re.findall(r'(?:href|src)="([^"]*(?:instructors/|solutions/ch)[^"]*)"',
                                                                 p.read_text()) for p in learner_site.rglob("*.html")}
    assert not {name: found for name, found in links.items() if found}, "links to the solutions in the learners' site"

    # lines of the solutions that nothing else in the course has: on the full site, and not on the learners'
    elsewhere = " ".join([cell.source for c in CHAPTERS for cell in nbformat.read(c, as_version=4).cells]
                         + [p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "diffedu").rglob("*.py")]])
    own_lines = {line.strip() for path in SOLUTIONS for line in path.read_text().splitlines()
                 if len(line.strip()) > 25 and not line.strip().startswith("#") and line.strip() not in elsewhere}
    assert len(own_lines) > 20
    for name, texts in (("site", page_texts(site)), ("learners' site", page_texts(learner_site))):
        shown = {line for line in own_lines if any(line in text for text in texts.values())}
        if name == "site":
            assert len(shown) > len(own_lines) / 2, "the instructors' pages should show the solutions (the check checks)"
        else:
            assert not shown, f"lines of solutions/*.py in the learners' site: {sorted(shown)[:5]}"

    # the search index: words found only on the instructors' pages of the full site are not in the learners'
    index = {}
    for name, path in (("site", site), ("learner", learner_site)):
        text = (path / "searchindex.js").read_text()
        index[name] = json.loads(text[text.index("(") + 1:text.rindex(")")])
    pages = {term: {index["site"]["docnames"][d] for d in (docs if isinstance(docs, list) else [docs])}
             for term, docs in index["site"]["terms"].items()}
    only_solutions = sorted(term for term, docs in pages.items() if docs and all(d.startswith("instructors/") for d in docs))
    findable = {term for term, docs in index["learner"]["terms"].items() if docs not in ([], None)}  # (Sphinx keeps some with no page)
    leaked = set(only_solutions) & findable
    assert only_solutions and not leaked, f"words of the solutions in the learners' search index: {sorted(leaked)[:10]}"
    word = next(term for term in only_solutions if re.search(rf"\b{term}\b", " ".join(p.read_text() for p in SOLUTIONS)))
    page = browser.new_page()
    assert "Solutions, chapter" in search(page, server, word)  # found on the full site...
    results = search(page, learner_server, word)  # ...and not on the learners'
    page.close()
    assert "did not match" in results and "Solutions" not in results, results
