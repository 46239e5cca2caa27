"""A box in a chapter that quotes a benchmark ("measured by `python benchmarks/bench_X.py`") quotes
only numbers that benchmark wrote: every decimal number in the box (a measured quantity: FID 15.1,
0.981, 4.4 s) must be a value of benchmarks/results/X.json rounded to the digits the box shows.
Whole numbers (steps, sample counts, cores) are settings, not measurements, and are not checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITES = re.compile(r"by `python benchmarks/(bench_\w+)\.py`")
DECIMAL = re.compile(r"(?<![\w.])(-?\d+\.\d+)(?![\w.])")
RESULT_OF = {"bench_frontier": "frontier", "bench_flow": "flow", "bench_processes": "processes", "bench_restoration": "restoration",
             "bench_deployment": "deployment"}


def numbers_in(value) -> list[float]:
    """Every number anywhere in a JSON value."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers_in(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers_in(v)]
    return []


BOX = re.compile(r"(?m)(?:^>.*(?:\n|$))+")  # a run of quoted lines, anywhere in a cell


def boxes_in(markdown: str) -> list[tuple[str, str]]:
    """(benchmark, box text) for every quoted box in a markdown text that cites a benchmark script."""
    return [(match.group(1), box.strip()) for box in BOX.findall(markdown) if (match := CITES.search(box))]


def quoted_boxes() -> list[tuple[str, str, str]]:
    """(notebook, benchmark, box text) for every quoted box of every chapter that cites a benchmark script."""
    return [(notebook.name, benchmark, text)
            for notebook in sorted((ROOT / "chapters").glob("*.ipynb"))
            for cell in json.loads(notebook.read_text())["cells"] if cell["cell_type"] == "markdown"
            for benchmark, text in boxes_in("".join(cell["source"]))]


def unmatched(text: str, values: list[float]) -> list[str]:
    missing = []
    prose = re.sub(r"\(\d+\.\d+\)", "", re.sub(r"\$[^$]*\$", "", text))  # not equations, nor references such as (8.10)
    for number in DECIMAL.findall(prose):
        digits = len(number.split(".")[1])
        if not any(round(value, digits) == float(number) for value in values):
            missing.append(number)
    return missing


@pytest.mark.parametrize("notebook, benchmark, text", quoted_boxes(), ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "")
def test_a_benchmark_box_quotes_only_what_its_benchmark_measured(notebook, benchmark, text):
    results = ROOT / "benchmarks" / "results" / f"{RESULT_OF[benchmark]}.json"
    missing = unmatched(text, numbers_in(json.loads(results.read_text())))
    assert not missing, (f"{notebook} quotes {', '.join(missing)} as measured by {benchmark}.py, but {results.name} holds no such "
                         f"value: run `python benchmarks/{benchmark}.py --out {results.relative_to(ROOT)}` and quote what it writes")


def test_boxes_are_found_anywhere_in_a_cell():
    cell = ("Some prose first.\n\n> **On the reference machine**, measured by `python benchmarks/bench_flow.py`: FID 15.1\n"
            "> | a | b |\n\nMore prose, 9.9.\n> a quote without a benchmark")
    assert boxes_in(cell) == [("bench_flow", "> **On the reference machine**, measured by `python benchmarks/bench_flow.py`: "
                                             "FID 15.1\n> | a | b |")]


def test_the_check_finds_a_number_its_benchmark_does_not_hold():
    assert unmatched("FID 15.1 in 4.4 s, 0.981", [15.143, 4.41, 0.9812]) == []
    assert unmatched("FID 15.2 in 4.4 s", [15.143, 4.41]) == ["15.2"]
    assert unmatched("at $w = 1.25$ FID 9.9, by the shift (8.10)", [9.91]) == []
