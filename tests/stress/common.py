"""What the stress scripts share: stopping the node and its destination, and keeping or removing the work
directory."""

from __future__ import annotations

import shutil
from pathlib import Path


def finish(workdir: Path, keep: bool, *processes) -> None:
    """Stop each started process (a node or a storescp; None for one never started), then keep or remove
    ``workdir``."""
    for process in processes:
        if process is not None:
            process.stop()
    if keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
