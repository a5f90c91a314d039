"""The authors' dense-CRF refinement, run from a local CPU build of their library: the other side
of `insid3 bench crf` (optional; nothing else needs it, no test does).

The library (netw0rkf10w/CRF) is not on PyPI and its setup.py builds only with CUDA. Its CPU
lattice builds on its own, but needs glue to run (docs/crf.md, "The authors' library on a CPU"):

    insid3 bench crf-build --crf-source CRF-snapshot/ --insid3-source INSID3-snapshot/ --out DIR

copies the two snapshots' Python sources into DIR, applies the one-line hash-table fix (a lookup
that doubles the table must re-hash its key, or a vertex can be stored twice), and compiles the
CPU kernel with torch's C++ extension builder (about a minute; needs torch and a C++ compiler).
`load(DIR)` then stubs the modules the CPU path never uses (the CUDA extension, matplotlib) and
hands the kernel the (B, C, H, W) float64 views of its NHWC float32 inputs that it indexes
correctly, and returns INSID3's own crf_refine bound to the built module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from insid3.errors import SettingsError

HASH_LINE = "if (filled >= (capacity / 2) - 1) { grow(); }"
HASH_FIXED = "if (filled >= (capacity / 2) - 1) { grow(); h = hash(key) % capacity; }"
KERNEL = Path("PermutohedralFiltering/source/cpu/LatticeFilterKernel.cpp")


def build(crf_source: Path, insid3_source: Path, out: Path) -> Path:
    """DIR with CRF/, PermutohedralFiltering/, insid3_refinement.py and the built Permutohedral."""
    out.mkdir(parents=True, exist_ok=True)
    for package in ("CRF", "PermutohedralFiltering"):
        shutil.copytree(crf_source / "src" / package, out / package, dirs_exist_ok=True)
    shutil.copy(insid3_source / "utils" / "refinement.py", out / "insid3_refinement.py")
    table = out / "PermutohedralFiltering/source/cpu/HashTable.hpp"
    text = table.read_text()
    if HASH_LINE not in text and HASH_FIXED not in text:
        raise RuntimeError(f"{table}: the line to fix was not found: another version of the library?")
    table.write_text(text.replace(HASH_LINE, HASH_FIXED))
    from torch.utils.cpp_extension import load as build_extension

    build_extension(name="Permutohedral", sources=[str(out / KERNEL)], build_directory=str(out),
                    extra_cflags=["-O2", "-DNDEBUG"])  # NDEBUG: an assert in the kernel names an undefined variable
    return out


def _glue(module) -> None:
    """Permutohedral.forward takes NHWC tensors from the library's layer; the CPU kernel reads
    sizes as NCHW and data as double: give it float64 NCHW-shaped views of the NHWC memory."""
    original = module.forward

    def forward(x, image, bilateral, alpha, beta, gamma):
        batch, height, width, channels = x.shape
        values = x.double().contiguous().view(batch, channels, height, width)
        guide = image.double().contiguous().view(batch, image.shape[-1], height, width)
        out = original(values, guide, bilateral, alpha, beta, gamma)
        return out.view(batch, height, width, channels).to(x.dtype)

    module.forward = forward


def load(folder: Path):
    """(init_crf, crf_refine) of INSID3's utils/refinement.py over the built CPU library."""
    folder = Path(folder).resolve()
    for path in (folder, folder / "PermutohedralFiltering"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import torch

    Permutohedral = importlib.import_module("Permutohedral")  # after torch, which loads the libraries it links

    if not getattr(Permutohedral, "_insid3_glued", False):
        _glue(Permutohedral)
        Permutohedral._insid3_glued = True
    sys.modules.setdefault("Permutohedral_gpu", types.ModuleType("Permutohedral_gpu"))
    if importlib.util.find_spec("matplotlib") is None:
        plotting = types.ModuleType("matplotlib")
        plotting.pyplot = types.ModuleType("matplotlib.pyplot")
        sys.modules.setdefault("matplotlib", plotting)
        sys.modules.setdefault("matplotlib.pyplot", plotting.pyplot)
    utils = sys.modules.setdefault("utils", types.ModuleType("utils"))
    data = types.ModuleType("utils.data")

    def denormalize(tensor):  # INSID3's utils.data.denormalize, whose module needs torchvision
        mean = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)
        return tensor * std + mean

    data.denormalize = denormalize
    utils.data = data
    sys.modules["utils.data"] = data
    spec = importlib.util.spec_from_file_location("insid3_refinement", folder / "insid3_refinement.py")
    refinement = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refinement)

    def init_crf(size: int):
        with contextlib.redirect_stdout(io.StringIO()):  # the library prints its settings
            return refinement.init_crf(size, "cpu")

    return init_crf, refinement.crf_refine


@dataclass(frozen=True, kw_only=True)
class CrfBuildSettings:
    crf_source: Path
    insid3_source: Path
    out: Path


def run(settings: CrfBuildSettings) -> int:
    for flag, path in (("--crf-source", settings.crf_source / "src" / "CRF"),
                       ("--insid3-source", settings.insid3_source / "utils" / "refinement.py")):
        if not path.exists():
            raise SettingsError(f"{flag}: {path} does not exist")
    print(f"crf_authors: built {build(settings.crf_source, settings.insid3_source, settings.out)}", file=sys.stderr)
    return 0
