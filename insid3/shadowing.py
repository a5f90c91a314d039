"""A top-level folder of this repository gives way to an installed package of the same name.

The design card keeps `engine/`, `export/`, `kernels/`, `benchmarks/` and `evaluation/` at the
repository root; they install as `insid3.engine`, `insid3.kernels`, ... But whenever the root is
on `sys.path` (`python -m ...` or a notebook started there), `import kernels` would find our
folder before Hugging Face's installed `kernels` package (which transformers imports), and break
it. Each of those folders' `__init__.py` therefore starts with:

    if __name__ != "insid3.<folder>":
        yield_to_installed(__name__, __file__)

which hands the import to the installed package of that name, or fails it as a missing module
(what it is outside insid3) when none is installed. tests/test_no_shadowing.py checks every folder.
"""

from __future__ import annotations

import importlib
import os
import sys


def yield_to_installed(name: str, init_file: str) -> None:
    """Replace the half-imported top-level module `name` (our folder) by the installed one.

    Python supports a module replacing itself in sys.modules while it executes: the import
    statement then returns the replacement.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(init_file)))
    ours = sys.modules.pop(name, None)
    saved = sys.path[:]
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != root]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as missing:
        if missing.name != name:
            raise
        raise ModuleNotFoundError(
            f"No module named {name!r} (the folder {os.path.join(root, name)} is insid3.{name}: "
            f"import it by that name)", name=name) from None
    finally:
        sys.path[:] = saved
        del ours
