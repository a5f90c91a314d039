"""The CMake build of kernels/*.cu: compiled to PTX where nvcc exists, a clear skip otherwise.

This is CI's CUDA step: it runs on every machine; what it proves depends on whether nvcc is there.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cmake(*args, cwd=None, env=None):
    return subprocess.run(["cmake", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cuda_kernels_compile_with_nvcc_or_say_they_were_skipped(tmp_path):
    configure = _cmake("-S", str(ROOT), "-B", str(tmp_path))
    assert configure.returncode == 0, configure.stderr
    if shutil.which("nvcc") is None:
        assert "nvcc not found: skipping CUDA kernels" in configure.stdout
        return
    build = _cmake("--build", str(tmp_path))
    assert build.returncode == 0, build.stdout + build.stderr
    sources = sorted(p.stem for p in (ROOT / "kernels").glob("*.cu"))
    objects = tmp_path / "CMakeFiles" / "insid3_cuda_kernels.dir"
    built = sorted(p.name.split(".")[0] for p in objects.rglob("*.ptx"))
    assert sources and built == sources, f"PTX for {built}, sources {sources}"


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_without_nvcc_the_build_configures_to_a_clear_skip(tmp_path):
    import os

    env = {**os.environ, "PATH": "/usr/bin:/bin", "CUDACXX": "/nonexistent/nvcc"}
    configure = _cmake("-S", str(ROOT), "-B", str(tmp_path), env=env)
    assert configure.returncode == 0, configure.stderr
    assert "nvcc not found: skipping CUDA kernels" in configure.stdout
