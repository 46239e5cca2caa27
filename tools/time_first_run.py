"""Time chapter 00 as a learner first meets it: a just-started JupyterLab, the notebook opened, Run All.

    python tools/time_first_run.py                 3 runs, each with its own JupyterLab server and kernel
    python tools/time_first_run.py --cold --runs 5 the course's files dropped from the page cache first, and
                                                   no matplotlib font cache or IPython profile yet (a first run)

Each run starts JupyterLab (so a new kernel and a first import of PyTorch), opens a copy of chapter 00
in headless Chromium (the OS package `chromium`, driven by Playwright, as tests/test_site.py does),
waits until the kernel is idle, chooses Run > Run All Cells, and prints, in seconds: opening the
notebook until the kernel is idle, then from Run All until the first generated digit grid is shown
and until the last cell finished; then the same Run All once more in the now warm kernel. Full mode
(DIFFEDU_FAST is not passed on). Linux only: `busy_s` and `mine_s` (CPU seconds of the whole machine,
and of this run's server, kernel and browser, from /proc/stat) should agree, or something else was
running and the times are not the course's (the run says "disturbed"). Run it with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "chapters" / "00_setup.ipynb"
TOKEN = "time-first-run"
CELLS = """() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell')).map(cell => ({
    count: ((cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '').match(/\\[(\\d+)\\]/),
    images: cell.querySelectorAll('.jp-OutputArea img').length,
})).map(c => ({count: c.count ? Number(c.count[1]) : 0, images: c.images}))"""


def code_cell(needle: str) -> int:
    """The position, among chapter 00's code cells, of the one whose source contains `needle`."""
    cells = [c for c in json.loads(CHAPTER.read_text())["cells"] if c["cell_type"] == "code"]
    return next(i for i, c in enumerate(cells) if needle in "".join(c["source"]))


def drop_from_page_cache() -> None:
    """Ask Linux to forget the cached pages of Python, the venv, the course and its data (as after a reboot)."""
    for top in (Path(sys.base_prefix) / "lib", ROOT / ".venv", ROOT / "diffedu", ROOT / "data"):
        for folder, _, names in os.walk(top):
            for name in names:
                try:
                    fd = os.open(os.path.join(folder, name), os.O_RDONLY)
                except OSError:
                    continue
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this script and its children)."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    mine = 0.0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            mine += sum(process.cpu_times()[:2])
        except psutil.Error:
            pass
    return busy, mine


def run_all(page, grid_cell: int, after_count: int) -> dict:
    """Run > Run All Cells; seconds until the digit grid is shown and until the last cell finished."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    start, (busy, mine), times = time.monotonic(), cpu_seconds(), {}
    while time.monotonic() - start < 1800:
        cells = page.evaluate(CELLS)
        now = time.monotonic() - start
        if "digit_grid_s" not in times and cells[grid_cell]["count"] > after_count and cells[grid_cell]["images"]:
            times["digit_grid_s"] = now
        if cells[-1]["count"] > after_count:
            busy_end, mine_end = cpu_seconds()
            times.update(last_cell_s=now, busy_s=busy_end - busy, mine_s=mine_end - mine)
            disturbed = times["busy_s"] > 1.1 * times["mine_s"] + 1  # another program used the CPU meanwhile
            return {key: round(value, 1) for key, value in times.items()} | {"count": cells[-1]["count"], "disturbed": disturbed}
        time.sleep(0.05)
    raise TimeoutError(f"chapter 00 did not finish in 30 minutes: {times}")


def one_run(chromium: str, cold: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="diffedu-first-run-"))
    (work / "chapters").mkdir()
    shutil.copy2(CHAPTER, work / "chapters")  # JupyterLab may save it: the course's copy stays as it is
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFEDU_", "JUPYTER"))}
    env.update(JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"))
    if cold:
        env.update(MPLCONFIGDIR=str(work / "matplotlib"), IPYTHONDIR=str(work / "ipython"))
        drop_from_page_cache()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", "--allow-root",
                                   "--port", "0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={work}"],
                                  cwd=work, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            port = next(int(m.group(1)) for line in server.stderr if (m := re.search(r"127\.0\.0\.1:(\d+)/lab", line)))
            for _ in range(600):  # the server answers (it says where before it listens)
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", timeout=5)
                    break
                except OSError:
                    time.sleep(0.1)
            opened = time.monotonic()
            page.goto(f"http://127.0.0.1:{port}/lab/tree/chapters/{CHAPTER.name}?token={TOKEN}")
            sessions = f"http://127.0.0.1:{port}/api/sessions?token={TOKEN}"
            while not [s for s in json.load(urllib.request.urlopen(sessions)) if s["kernel"]["execution_state"] == "idle"]:
                time.sleep(0.05)
            record = {"open_to_idle_kernel_s": round(time.monotonic() - opened, 1)}
            time.sleep(0.5)  # as a learner would: the notebook is on the screen before Run All
            grid = code_cell('zoo.load("mnist-unet"')
            record["first_run_all"] = run_all(page, grid, 0)
            full_mode = "fast mode is OFF" in page.evaluate("() => document.querySelector('.jp-Notebook').textContent")
            record["again_same_kernel"] = run_all(page, grid, record["first_run_all"]["count"])
            record["full_mode"] = full_mode
            return record
        finally:
            browser.close()
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="drop the course's files from the page cache, "
                        "and start without matplotlib's font cache and an IPython profile")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        parser.error("no Chromium found: install the OS package (apt-get install chromium) or pass --chromium PATH")
    for run in range(1, args.runs + 1):
        print(json.dumps({"run": run, "cold": args.cold, **one_run(args.chromium, args.cold)}), flush=True)


if __name__ == "__main__":
    main()
