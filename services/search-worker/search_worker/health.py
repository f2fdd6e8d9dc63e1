"""Health probe: the consume loop touches a heartbeat file on every turn.

`python -m search_worker.health` exits 0 while that file is fresh, 1 when the
loop is stuck or gone, so the container's healthcheck means something."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HEARTBEAT = Path(os.environ.get("HEARTBEAT_FILE", "/tmp/search-worker.heartbeat"))
MAX_AGE_SECONDS = float(os.environ.get("HEARTBEAT_MAX_AGE", "15"))


def beat(path: Path = HEARTBEAT) -> None:
    path.touch()


def is_fresh(path: Path = HEARTBEAT, now: float | None = None, max_age: float = MAX_AGE_SECONDS) -> bool:
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age <= max_age


if __name__ == "__main__":
    fresh = is_fresh()
    print("healthy" if fresh else f"heartbeat {HEARTBEAT} missing or older than {MAX_AGE_SECONDS}s")
    sys.exit(0 if fresh else 1)
