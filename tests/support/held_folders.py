"""An output folder held by another process, as a running job holds it (job_folder.hold_folder)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from insid3.engine.jobs.job_folder import hold_folder
    hold_folder(Path(sys.argv[1]))
    print("held", flush=True)
    time.sleep(600)
""")


@contextmanager
def held_by_another_process(folder: Path) -> Iterator[int]:
    """`folder` held by another process (the library's own lock) until the block ends, when that
    process is killed (SIGKILL: its lock file stays behind); yields its pid."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
