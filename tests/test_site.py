"""The course's website as a reader sees it: built from the fast-mode executed chapters and opened,
page by page, in headless Chromium (Playwright driving the OS's Chromium). Every page loads
without console errors, its equations are typeset, its images have loaded, its internal links
(equation links included) lead somewhere that exists, and the search box finds things.
Screenshots of the chapter pages go to build/screenshots/.

Needs `./course.sh execute --fast` first (about 3 minutes; .ci/run does it) and the OS package
chromium; without either, the test is skipped and says which is missing.
"""

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
sync_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
EXECUTED = ROOT / "build" / "executed" / "fast"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE_STATE = """() => {
  const text = document.body.innerText;
  const prose = document.body.cloneNode(true);  // the text outside code and typeset formulas
  prose.querySelectorAll("pre, code, .highlight, mjx-container, script, style").forEach(e => e.remove());
  return {
    raw_tex: ["$$", "\\\\begin{", "\\\\tag{", "\\\\frac"].filter(s => prose.textContent.includes(s)),
    math: document.querySelectorAll(".math").length,
    untypeset: Array.from(document.querySelectorAll(".math")).filter(e => !e.querySelector("mjx-container")).length,
    math_errors: document.querySelectorAll("mjx-merror").length,
    images: document.images.length,
    broken_images: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    ids: Array.from(document.querySelectorAll("[id]")).map(e => e.id),
    text: text,
  };
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no Chromium here: install the OS package (apt-get install chromium); Playwright's own browser "
                    "download is not used")
    missing = [c.stem for c in CHAPTERS if not (EXECUTED / c.name).exists()]
    if missing:
        pytest.skip(f"no fast-mode executed copies of {', '.join(missing)}: run `./course.sh execute --fast` first "
                    "(about 3 minutes)")
    out = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, str(ROOT / "tools" / "site" / "build.py"), "--fast", "--out", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()


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
    if screenshot is not None:
        page.screenshot(path=str(screenshot))
    return {**state, "errors": errors}


def test_every_page_of_the_site_reads_as_it_should(site, server, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if not p.relative_to(site).parts[0].startswith("_"))
    assert {f"chapters/{c.stem}.html" for c in CHAPTERS} <= set(pages) and {"index.html", "times.html", "api/index.html",
                                                                             "instructors/index.html"} <= set(pages)
    seen, problems, links = {}, [], []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    for name in pages:
        shot = SCREENSHOTS / (Path(name).stem + ".png") if name.startswith("chapters/") else None
        state = seen[name] = visit(page, server + name, shot)
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


def test_chapters_read_on_a_phone_without_sideways_scrolling(server, browser):
    """At a phone's width (390 px) a chapter page fits: long equations scroll inside their own box."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    too_wide = {}
    for chapter in CHAPTERS:
        page.goto(f"{server}chapters/{chapter.stem}.html")
        page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > 390:
            too_wide[chapter.stem] = width
    page.close()
    assert not too_wide, f"pages wider than the phone: {too_wide}"


def test_the_search_box_finds_a_library_function(server, browser):
    page = browser.new_page()
    page.goto(server + "search.html?q=alpha_bar")
    page.wait_for_selector("#search-results li", timeout=30_000)
    results = page.inner_text("#search-results")
    page.close()
    assert "chapter" in results.lower() or "schedules" in results
