"""Array-module plumbing shared by every kernel: which module (NumPy or CuPy) an input lives on,
input validation with one-line errors, and the few numeric helpers the steps share.

Every kernel takes its array module from its inputs and never moves data between host and
device on its own: mixing NumPy and CuPy inputs is an error, not a silent copy.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

import numpy as np

from insid3.errors import Insid3Error

Array = Any  # numpy.ndarray or cupy.ndarray; kept loose so the package imports without CuPy.

# torch.nn.functional.normalize divides by max(norm, eps) with this eps; the reference uses it
# for every L2 normalisation (features, debiased features, prototypes).
NORMALIZE_EPS = 1e-12


class KernelInputError(Insid3Error, ValueError):
    """An array handed to a kernel has the wrong shape, dtype or device."""


def _module_of(array: Array, name: str) -> ModuleType:
    if isinstance(array, np.ndarray):
        return np
    if type(array).__module__.split(".")[0] == "cupy":
        import cupy  # only reachable when the caller already holds a CuPy array

        return cupy
    raise KernelInputError(
        f"{name} must be a numpy.ndarray or cupy.ndarray, got {type(array).__name__}"
    )


def array_module(*arrays: Array) -> ModuleType:
    """The array module (numpy or cupy) of the inputs; numpy when given none.

    Raises KernelInputError when the inputs mix NumPy and CuPy arrays: the kernels never copy
    between host and device behind the caller's back.
    """
    modules: list[ModuleType] = []
    for k, a in enumerate(arrays):
        module = None if a is None else _module_of(a, f"argument {k}")
        if module is not None and module not in modules:
            modules.append(module)
    if len(modules) > 1:
        raise KernelInputError(
            "inputs mix numpy and cupy arrays; move them to one device first "
            "(the kernels make no hidden host/device transfers)"
        )
    return modules[0] if modules else np


def _describe(array: Array) -> str:
    return f"shape {tuple(array.shape)} dtype {array.dtype}"


def require(
    function: str,
    name: str,
    array: Array,
    *,
    shape: Sequence[int | None] | None = None,
    ndim: int | None = None,
    min_ndim: int | None = None,
    dtype: str | None = None,
) -> None:
    """Check one input and raise a one-line KernelInputError naming it, what came and what was
    expected. dtype: "float32", "bool" or "integer" (any signed or unsigned int)."""
    _module_of(array, f"{function}: {name}")
    expected_ndim = len(shape) if shape is not None else ndim
    if expected_ndim is not None and array.ndim != expected_ndim:
        raise KernelInputError(
            f"{function}: {name} must be {expected_ndim}-D{_shape_hint(shape)}, got {_describe(array)}"
        )
    if min_ndim is not None and array.ndim < min_ndim:
        raise KernelInputError(
            f"{function}: {name} must have at least {min_ndim} dimension(s), got {_describe(array)}"
        )
    if shape is not None and any(e is not None and e != a for e, a in zip(shape, array.shape)):
        raise KernelInputError(
            f"{function}: {name} must have shape {_shape_text(shape)}, got {_describe(array)}"
        )
    if dtype is not None and not _dtype_matches(array.dtype, dtype):
        raise KernelInputError(f"{function}: {name} must be {dtype}, got {_describe(array)}")


def _dtype_matches(actual: np.dtype, expected: str) -> bool:
    if expected == "integer":
        return np.dtype(actual).kind in "iu"
    return np.dtype(actual) == np.dtype(expected)


def _shape_text(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _shape_hint(shape: Sequence[int | None] | None) -> str:
    return "" if shape is None else f" {_shape_text(shape)}"


def l2_normalize(x: Array) -> Array:
    """x / max(||x||, 1e-12) along the last axis, as torch.nn.functional.normalize (float32 kept)."""
    xp = array_module(x)
    norm = xp.sqrt(xp.einsum("...c,...c->...", x, x))[..., None]
    return x / xp.maximum(norm, x.dtype.type(NORMALIZE_EPS))


def to_numpy(x: Array) -> np.ndarray:
    """The explicit device-to-host copy: a NumPy array of a NumPy or CuPy array (the engine's
    masks, tests' and benchmarks' comparisons); the kernels themselves never call it."""
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else np.asarray(x)
