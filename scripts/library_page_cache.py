"""Put this venv's shared libraries in a known page-cache state before a memory measurement.

    .venv/bin/python scripts/library_page_cache.py drop|read

`drop`: every `.so` file under the running interpreter's site-packages is dropped from the
kernel's page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`; pages a running process maps stay),
so the next process's own page faults bring the pages back. `read`: dropped, then read back
whole with `read()`, as an install or a copy leaves them. How the cache holds a library changes
how many of its pages a fresh process maps (a fresh interpreter's `import pyarrow,
pyarrow.compute, pyarrow.json`: 38 MB of library pages after `drop`, 55 after `read`), so an RSS
measured in one state is compared with one measured in the same state (docs/bench/README.md,
stop 37). Linux only. A measurement aid, not a test.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path


def libraries() -> list[Path]:
    site = Path(sysconfig.get_paths()["purelib"])
    return sorted(p for p in site.rglob("*.so*") if p.is_file() and not p.is_symlink())


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("drop", "read"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    files = libraries()
    size = 0
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if sys.argv[1] == "read":
                while chunk := os.read(fd, 1 << 20):
                    size += len(chunk)
        finally:
            os.close(fd)
    read = f", {size / 2**20:.0f} MB read back" if sys.argv[1] == "read" else ""
    print(f"{len(files)} libraries dropped from the page cache{read}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
