"""No top-level folder of the repository may hide an installed package of its name.

`python -m pytest` (the README's test line), `python -m ...` and notebooks put the repository
root on sys.path, where our `kernels/` once hid Hugging Face's `kernels` (which transformers
imports). Each such folder now gives way to the installed package (insid3/shadowing.py).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "insid3")


def imported_file(name: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    """`import NAME` in a fresh interpreter started in `cwd` (which `-c` puts first on sys.path)."""
    env = {"PYTHONPATH": str(extra_path)} if extra_path else {}
    code = f"import {name}; print({name}.__file__)"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_the_package_folders_are_the_ones_the_design_card_names():
    assert FOLDERS == ["benchmarks", "engine", "evaluation", "export", "kernels"]


@pytest.mark.parametrize("name", FOLDERS)
def test_a_folder_gives_way_to_an_installed_package_of_its_name(name, tmp_path):
    installed = tmp_path / "site" / name
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    run = imported_file(name, ROOT, tmp_path / "site")
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == installed / "__init__.py"


@pytest.mark.parametrize("name", FOLDERS)
def test_without_an_installed_package_the_top_level_name_is_missing_and_says_why(name):
    run = imported_file(name, ROOT)
    if run.returncode == 0:  # something of that name is installed here: it must not be ours
        assert Path(run.stdout.strip()).parent != ROOT / name
    else:
        assert run.stderr.strip().splitlines()[-1].startswith("ModuleNotFoundError")
        assert f"is insid3.{name}" in run.stderr


def test_no_installed_distribution_is_hidden_by_the_repository_root():
    """Every installed top-level module named like one of our folders imports as itself."""
    installed = importlib.metadata.packages_distributions()
    for name in sorted(set(FOLDERS) & set(installed)):
        run = imported_file(name, ROOT)
        assert run.returncode == 0, f"{name} ({installed[name]}): {run.stderr[-500:]}"
        assert Path(run.stdout.strip()).parent != ROOT / name, f"{name} ({installed[name]}) is hidden by ours"


def test_the_package_is_unchanged_by_the_guard():
    import insid3.engine
    import insid3.kernels

    assert insid3.kernels.__name__ == "insid3.kernels" and callable(insid3.kernels.pruned_aggregate)
    assert insid3.engine.Segmenter.__module__.startswith("insid3.engine")
