"""No exercise can be answered by copying code shown above it (issue 28).

For each reference solution in solutions/chNN.py, the key expressions (what a function returns or
assigns, and a constant's value) are reduced to their shape: names erased, calls, attributes,
operators and constants kept. If such a shape, deep enough to be more than a variable or one call,
occurs in a code cell of the chapter before its "## Exercises" heading, the learner could copy it.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIN_DEPTH = 4  # expressions shallower than this (x + y, f(x)) are too small to count as "the answer"


class _EraseNames(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(id="_", ctx=ast.Load()), node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return ast.copy_location(ast.arg(arg="_"), node)


def expression_shape(node: ast.expr) -> str:
    """The expression with every variable name replaced by `_`."""
    fresh = copy.deepcopy(node)
    return ast.dump(_EraseNames().visit(fresh), annotate_fields=False)


def depth(node: ast.AST) -> int:
    return 1 + max((depth(child) for child in ast.iter_child_nodes(node)), default=0)


def key_expressions(source: str) -> dict[str, list[ast.expr]]:
    """solution name -> its returned and assigned expressions of depth >= MIN_DEPTH."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            values = [n.value for n in ast.walk(node) if isinstance(n, (ast.Return, ast.Assign)) and n.value is not None]
            found[node.name] = [v for v in values if depth(v) >= MIN_DEPTH]
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and depth(node.value) >= MIN_DEPTH:
            found[node.targets[0].id] = [node.value]
    return found


def shapes_before_exercises(notebook: Path) -> set[str]:
    """Shapes of every deep expression in the code cells above the chapter's Exercises heading."""
    shapes = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and re.search(r"^#+\s*Exercises", source, re.M):
            return shapes
        if cell["cell_type"] != "code":
            continue
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        shapes |= {expression_shape(n) for n in ast.walk(tree) if isinstance(n, ast.expr) and depth(n) >= MIN_DEPTH}
    raise AssertionError(f"{notebook.name} has no '## Exercises' heading")


def chapters_with_solutions() -> list[tuple[Path, Path]]:
    pairs = []
    for solution in sorted((ROOT / "solutions").glob("ch[0-9][0-9].py")):
        number = solution.stem[2:]
        notebooks = sorted((ROOT / "chapters").glob(f"{number}_*.ipynb"))
        if notebooks:
            pairs.append((solution, notebooks[0]))
    return pairs


@pytest.mark.parametrize("solution, notebook", chapters_with_solutions(), ids=lambda p: p.name)
def test_no_exercise_answer_is_shown_above_it(solution: Path, notebook: Path):
    shapes = shapes_before_exercises(notebook)
    copyable = [name for name, expressions in key_expressions(solution.read_text()).items()
                if any(expression_shape(e) in shapes for e in expressions)]
    assert not copyable, (f"{notebook.name}: the key line of {', '.join(copyable)} already appears in a code cell "
                          "above the exercises; ask for something the chapter has not written out")


def test_the_check_sees_a_copy():
    """The shape comparison finds a copied formula under other names, and only a copy."""
    solution = "def solution_f(a, b):\n    return (a - (1 - b).sqrt() * a) / b.sqrt()\n"
    (expression,) = key_expressions(solution)["solution_f"]
    copied = ast.parse("(x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()", mode="eval").body
    different = ast.parse("(x_t - (1 - alpha_bar) * eps) / alpha_bar.sqrt()", mode="eval").body
    assert expression_shape(expression) == expression_shape(copied)
    assert expression_shape(expression) != expression_shape(different)
