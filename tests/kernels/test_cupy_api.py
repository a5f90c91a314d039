"""The kernels call only what CuPy 13 and 14 accept: a static scan of kernels/*.py.

No GPU runs in CI, so a kernel that hands CuPy an argument type it rejects would fail only on
the first GPU run. Each rule below is what CuPy's documentation or source says about a call the
kernels make (cupy/_sorting/search.py, cupy/_sorting/sort.py, cupy/_manipulation/add_remove.py,
cupy/_statistics/histogram.py in 13.6 and 14.2):

- `searchsorted(a, v)`: `v` must be a cupy.ndarray ("Only int or ndarray are supported for v" is
  raised for a Python scalar, though the message says int);
- `sort` / `argsort`: `kind` is None or "stable" (no other options are accepted);
- `unique`: no `axis`, `sorted` or `equal_nan=False` (13.x has no `axis`; the kernels keep to 1-D);
- `bincount(weights=...)`: CuPy adds the weights with atomics, so the order (and the float sum's
  rounding) is not fixed; the kernels use order-fixed segment sums instead;
- `ufunc.at` (`xp.add.at`, ...): not in CuPy 13's ufuncs for every dtype; the kernels scatter
  with index assignment or `bincount` of integers.

The scan flags an argument that is evidently a host scalar: a number, `int(...)`/`float(...)`, or
a name the enclosing function annotates as `int`/`float`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import insid3.kernels

KERNELS = Path(insid3.kernels.__file__).resolve().parent
ARRAY_MODULES = {"xp", "cupy"}
SCALAR_CALLS = {"int", "float", "len", "round"}
# function -> positional indices (and keyword names) that must be arrays in CuPy
ARRAY_ARGUMENTS = {"searchsorted": ((0, 1), ("a", "v"))}
KIND_FREE = {"sort", "argsort"}
UNIQUE_UNSUPPORTED = {"axis", "sorted", "equal_nan"}


def _scalar_names(function: ast.AST) -> set[str]:
    names = set()
    if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for arg in [*function.args.args, *function.args.kwonlyargs]:
            annotation = arg.annotation
            if isinstance(annotation, ast.Name) and annotation.id in {"int", "float"}:
                names.add(arg.arg)
    return names


def _is_host_scalar(node: ast.AST, scalars: set[str]) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return True
    if isinstance(node, ast.Name):
        return node.id in scalars
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in SCALAR_CALLS
    if isinstance(node, ast.BinOp):
        return _is_host_scalar(node.left, scalars) and _is_host_scalar(node.right, scalars)
    if isinstance(node, ast.UnaryOp):
        return _is_host_scalar(node.operand, scalars)
    return False


def _xp_function(call: ast.Call) -> str | None:
    """'searchsorted' for xp.searchsorted(...) / cupy.searchsorted(...), 'add.at' for xp.add.at(...)."""
    parts, node = [], call.func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in ARRAY_MODULES and parts:
        return ".".join(reversed(parts))
    return None


def cupy_problems(source: str, filename: str) -> list[str]:
    """One line per call CuPy 13/14 would reject (or compute in an unfixed order)."""
    tree = ast.parse(source, filename)
    problems = []

    def visit(node: ast.AST, scalars: set[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scalars = scalars | _scalar_names(node)
        if isinstance(node, ast.Call):
            name = _xp_function(node)
            where = f"{filename}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            if name in ARRAY_ARGUMENTS:
                positions, keyword_names = ARRAY_ARGUMENTS[name]
                given = [node.args[i] for i in positions if i < len(node.args)]
                given += [keywords[k] for k in keyword_names if k in keywords]
                if any(_is_host_scalar(arg, scalars) for arg in given):
                    problems.append(f"{where}: xp.{name} given a host scalar where CuPy needs an ndarray")
            if name in KIND_FREE and "kind" in keywords:
                kind = keywords["kind"]
                if not (isinstance(kind, ast.Constant) and kind.value in (None, "stable")):
                    problems.append(f"{where}: xp.{name}(kind=...) other than None/'stable'")
            if name == "unique" and UNIQUE_UNSUPPORTED & set(keywords):
                problems.append(f"{where}: xp.unique({', '.join(sorted(UNIQUE_UNSUPPORTED & set(keywords)))}=...)")
            if name == "bincount" and "weights" in keywords:
                problems.append(f"{where}: xp.bincount(weights=...) sums with atomics on CuPy (order not fixed)")
            if name is not None and name.endswith(".at"):
                problems.append(f"{where}: xp.{name} (ufunc.at)")
        for child in ast.iter_child_nodes(node):
            visit(child, scalars)

    visit(tree, set())
    return problems


def test_no_kernel_calls_cupy_with_an_argument_type_it_rejects():
    problems = []
    for path in sorted(KERNELS.glob("*.py")):
        problems += cupy_problems(path.read_text(), path.name)
    assert problems == []


@pytest.mark.parametrize(("source", "found"), [
    ("def f(xp, a, low: int):\n    return xp.searchsorted(a, low)", "host scalar"),
    ("def f(xp, a, b):\n    return xp.searchsorted(a, int(b[0]), side='right')", "host scalar"),
    ("def f(xp, a):\n    return xp.searchsorted(a, v=3)", "host scalar"),
    ("def f(xp, a):\n    return xp.argsort(a, kind='quicksort')", "kind=..."),
    ("def f(xp, a):\n    return xp.unique(a, axis=0)", "xp.unique(axis=...)"),
    ("def f(xp, a, w):\n    return xp.bincount(a, weights=w)", "atomics"),
    ("def f(xp, a, i):\n    xp.add.at(a, i, 1)", "ufunc.at"),
])
def test_the_scan_catches_each_rule(source, found):
    (problem,) = cupy_problems(source, "k.py")
    assert problem.startswith("k.py:2: ") and found in problem


def test_the_scan_passes_arrays_and_stable_sorts():
    source = ("def f(xp, a, low: int):\n    v = xp.asarray(low)\n    xp.argsort(a, kind='stable')\n"
              "    xp.bincount(a, minlength=3)\n    return xp.searchsorted(a, v)")
    assert cupy_problems(source, "k.py") == []
