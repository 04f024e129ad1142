"""Writing output files safely: atomically, inside their folder, never through a symlink.

A report or review file is written to a temporary file in the same folder and renamed over the target, so a
reader (or a disk that fills up) never sees half a file, and the temporary file is removed if anything fails.
A target that is a symlink is refused: a planted ``out/report.md -> elsewhere`` must not redirect the write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from runaudit.errors import OutputError


def write_atomic(target: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``target`` atomically; refuse a symlinked target or folder."""
    p = Path(target)
    if p.is_symlink():
        raise OutputError(f"refusing to write {p}: it is a symbolic link",
                          hint="remove the link, or choose another output folder")
    if p.parent.is_symlink():
        raise OutputError(f"refusing to write into {p.parent}: it is a symbolic link",
                          hint="pass the real folder path")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=p.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p
