"""Run every chapter top to bottom and keep the executed copies: `./course.sh execute [--fast]`.

    python tools/execute_chapters.py                 full mode: what a learner runs (about 45 min on 2 CPU cores)
    python tools/execute_chapters.py --fast          fast mode (DIFFEDU_FAST=1: smaller training), a few minutes
    python tools/execute_chapters.py --fast 03 05    only these chapters
    python tools/execute_chapters.py --fast --zh     the Chinese chapters (chapters/zh/) into build/executed/fast/zh/

The executed notebooks go to build/executed/full/ or build/executed/fast/ (never into chapters/),
with times.json: each chapter's wall time, its outcome and the machine. The site (tools/site/)
shows these outputs. Each chapter runs in a fresh kernel from the chapters/ folder, as a learner
opens it; interactive widgets show their static fallback (DIFFEDU_WIDGETS=0), since a page cannot
run a kernel. A chapter that fails is reported with its cell and error, the others still run,
and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
BUILD = ROOT / "build" / "executed"


def chapter_paths(selected: list[str], folder: Path = CHAPTERS) -> list[Path]:
    """The chapters in `folder` whose file names start with one of `selected` (all of them if none)."""
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb")) + sorted(folder.glob("appendix_*.ipynb"))  # the appendix last
    chosen = [p for p in paths if not selected or any(p.name.startswith(s) for s in selected)]
    if selected and not chosen:
        sys.exit(f"execute: no chapter starts with {' or '.join(selected)}: they are {', '.join(p.stem for p in paths)}")
    return chosen


def execute(path: Path, out_folder: Path, fast: bool) -> dict:
    """Run one chapter in a fresh kernel and write the executed copy; returns its record for times.json."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ.update({"DIFFEDU_FAST": "1" if fast else "0", "DIFFEDU_WIDGETS": "0"})  # the kernel inherits these
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute(stderr=subprocess.DEVNULL)  # the kernel's own log lines; cell outputs come through the client
    except CellExecutionError as failure:  # the executed copy keeps the outputs up to the failing cell
        error = str(failure).strip().splitlines()[-1][:300]
    seconds = time.perf_counter() - start
    notebook.metadata["diffedu_execution"] = {"mode": "fast" if fast else "full", "seconds": round(seconds, 1),
                                              "date": time.strftime("%Y-%m-%d"), "error": error}
    nbformat.write(notebook, out_folder / path.name)
    return {"chapter": path.stem, "seconds": round(seconds, 1), "error": error}


def machine() -> str:
    """The CPU's name and core count, and the GPU if there is one (as model cards record them)."""
    from diffedu.models.checkpoints import hardware_description

    info = hardware_description()
    return f"{info['processor']}, {info.get('cpu_cores', os.cpu_count())} cores, {info.get('gpu', 'no GPU')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every chapter and keep the executed copies in build/executed/.")
    parser.add_argument("--fast", action="store_true", help="fast mode (DIFFEDU_FAST=1): smaller training, a few minutes")
    parser.add_argument("--zh", action="store_true", help="the Chinese chapters (chapters/zh/), into a zh/ subfolder")
    parser.add_argument("chapters", nargs="*", help="chapter numbers or names to run (default: all), e.g. 03 05")
    args = parser.parse_args(argv)
    mode = "fast" if args.fast else "full"
    out_folder = BUILD / mode / ("zh" if args.zh else "")
    out_folder.mkdir(parents=True, exist_ok=True)
    times_path = out_folder / "times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    paths = chapter_paths(args.chapters, CHAPTERS / "zh" if args.zh else CHAPTERS)
    print(f"executing {len(paths)} chapter(s) in {mode} mode into {out_folder.relative_to(ROOT)}/")
    failed = []
    for path in paths:
        print(f"  {path.stem:<32}", end="", flush=True)
        record = execute(path, out_folder, args.fast)
        print(f"{record['seconds']:7.1f} s" + (f"   FAILED: {record['error']}" if record["error"] else ""), flush=True)
        times[path.stem] = {"seconds": record["seconds"], "date": time.strftime("%Y-%m-%d"), "error": record["error"],
                            "machine": machine()}
        times_path.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")  # after each chapter: nothing lost on Ctrl-C
        if record["error"]:
            failed.append(path.stem)
    total = sum(times[p.stem]["seconds"] for p in paths)
    print(f"done in {total / 60:.1f} min" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
