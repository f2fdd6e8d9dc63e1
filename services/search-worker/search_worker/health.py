"""Health probe: the consume loop touches a heartbeat file on every turn and
writes a problem file while it is not doing its job (see `Starvation`).

`python -m search_worker.health` exits 0 while the heartbeat is fresh and no
problem is reported; otherwise it prints why and exits 1, so the container's
healthcheck (and `cargo xtask up`/`status`, which show the probe's output)
says what is wrong.

A probe only reports. A loop stuck in a call that never returns (a client
library waiting forever on a broker) cannot mend itself, and Compose does not
restart an unhealthy container: `watchdog` ends the process once the heartbeat
is `STUCK_EXIT_SECONDS` old, so the restart policy (Compose's `on-failure`,
Kubernetes' pod) starts a fresh one. Nothing is lost by it: offsets are
committed only after a batch's answers are stored, so the batch is delivered
again and answered once."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HEARTBEAT = Path(os.environ.get("HEARTBEAT_FILE", "/tmp/search-worker.heartbeat"))
PROBLEM = Path(os.environ.get("PROBLEM_FILE", "/tmp/search-worker.problem"))
MAX_AGE_SECONDS = float(os.environ.get("HEARTBEAT_MAX_AGE", "15"))
STUCK_EXIT_SECONDS = float(os.environ.get("WORKER_STUCK_EXIT_AFTER", "60"))
STUCK_EXIT_CODE = 70
_reported: list[str | None] = [None]


def beat(path: Path = HEARTBEAT) -> None:
    path.touch()


def report(problem: str | None, path: Path = PROBLEM) -> None:
    """Record the worker's current problem (None: it has none)."""
    _reported[0] = problem
    if problem is None:
        path.unlink(missing_ok=True)
        return
    partial = path.with_name(path.name + ".partial")
    partial.write_text(problem + "\n")
    partial.replace(path)


def current() -> str | None:
    """The problem this process last reported."""
    return _reported[0]


def is_fresh(path: Path = HEARTBEAT, now: float | None = None, max_age: float = MAX_AGE_SECONDS) -> bool:
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age <= max_age


def verdict(
    heartbeat: Path = HEARTBEAT, problem: Path = PROBLEM, now: float | None = None, max_age: float = MAX_AGE_SECONDS
) -> str | None:
    """Why the worker is unhealthy, or None when it is healthy."""
    if not is_fresh(heartbeat, now, max_age):
        return f"consume loop stuck or gone: heartbeat {heartbeat} missing or older than {max_age:.0f}s"
    try:
        text = problem.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def watchdog(
    stop: threading.Event,
    limit: float = STUCK_EXIT_SECONDS,
    path: Path = HEARTBEAT,
    every: float = 5.0,
    exit: Callable[[int], object] = os._exit,
) -> None:
    """Until `stop` is set: ends the process (`exit`) once the heartbeat at
    `path` is older than `limit` seconds."""
    while not stop.wait(every):
        if not is_fresh(path, max_age=limit):
            sys.stderr.write(
                f"search-worker: consume loop stuck (no heartbeat for over {limit:.0f}s); "
                f"exiting with {STUCK_EXIT_CODE} so the container is restarted\n"
            )
            sys.stderr.flush()
            exit(STUCK_EXIT_CODE)
            return


if __name__ == "__main__":
    why = verdict()
    print("healthy" if why is None else f"unhealthy: {why}")
    sys.exit(0 if why is None else 1)
