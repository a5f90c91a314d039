"""argparse lives in the command line layer (insid3.engine.cli) only: library code takes frozen
settings dataclasses, built by the verbs from the parsed flags."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("insid3", "engine", "kernels", "export", "evaluation", "benchmarks")  # pyproject's package-dir
CLI_LAYER = ROOT / "engine" / "cli"


def imports_argparse(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "argparse" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse":
            return True
    return False


def package_sources() -> list[Path]:
    return sorted(p for folder in PACKAGE_FOLDERS for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_only_the_cli_layer_imports_argparse():
    outside = [str(p.relative_to(ROOT)) for p in package_sources()
               if CLI_LAYER not in p.parents and imports_argparse(p)]
    assert outside == [], f"argparse outside engine/cli/ (give the library a settings dataclass): {outside}"


def test_the_check_sees_an_argparse_import(tmp_path):
    """The scan itself can fail: both spellings of the import are found."""
    (tmp_path / "a.py").write_text("import argparse\n")
    (tmp_path / "b.py").write_text("from argparse import Namespace\n")
    (tmp_path / "c.py").write_text("import json  # argparse is only named here\n")
    assert [imports_argparse(tmp_path / name) for name in ("a.py", "b.py", "c.py")] == [True, True, False]
    assert len(package_sources()) > 100 and any(imports_argparse(p) for p in CLI_LAYER.glob("*.py"))
