"""Development mode (`cargo xtask dev`): a code edit is applied without a new
image or container. Only the compose dev override (`compose.dev.yaml`) runs
this; production images run the manifests' commands unchanged.

- `python -m pysvc_common.dev http -- uvicorn APP [OPTIONS]`: a supervisor
  binds the listening socket once and serves the app from a child process
  forked from it. SIGHUP forks a fresh child that imports the service's code
  again; once that child serves, the previous one stops gracefully (its
  requests finish, nothing accepted is lost). A child that cannot import
  its code leaves the previous one serving, and the error is logged with
  file and line. Third-party modules are imported once, in the supervisor,
  so a child only imports the service's own code.
- `python -m pysvc_common.dev worker -- python -m MODULE`: SIGHUP sets a
  flag; a worker loop that reads it between batches (`reload_requested`)
  commits its batch, then calls `reload` to import its code again in the
  same process and goes on with the same consumer (so it stays in its
  consumer group). A failed import keeps the previous code running.

Every outcome is one log line starting with `pysvc-dev:`, which the xtask
reads: `reloaded ...` or `reload failed: FILE:LINE: ...`.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import os
import runpy
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, TypeVar

PREFIX = "pysvc-dev:"
# The folder that holds the services' own packages (`/app` in the images).
CODE_ROOT = Path(os.environ.get("PYSVC_DEV_ROOT") or Path(__file__).resolve().parent.parent)
READY_TIMEOUT_SECONDS = 60.0
_reload = threading.Event()
T = TypeVar("T")


def say(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


def own_packages(root: Path = CODE_ROOT) -> set[str]:
    """Top-level modules under the code folder: the code a reload re-imports."""
    names = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    names |= {p.stem for p in root.glob("*.py")}
    return names


def describe(err: BaseException, root: Path = CODE_ROOT) -> str:
    """`FILE:LINE: Type: message` for an error raised while importing code:
    the syntax error's own place, else the innermost frame in the code folder."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}:{err.lineno or 1}: SyntaxError: {err.msg}"
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if not f.filename.startswith("<frozen") and Path(f.filename).resolve() != Path(__file__).resolve()
    ]
    ours = [f for f in frames if Path(f.filename).is_relative_to(root)]
    where = ours or frames
    place = f"{where[-1].filename}:{where[-1].lineno}: " if where else ""
    return f"{place}{type(err).__name__}: {err}".strip()


def _purge(packages: set[str]) -> dict[str, ModuleType]:
    """Takes the packages' modules out of `sys.modules` (this one stays: it
    holds the reload flag); returns them."""
    gone = {n: m for n, m in sys.modules.items() if n.split(".")[0] in packages and n != __name__}
    for name in gone:
        del sys.modules[name]
    return gone


def import_fresh(module: str, packages: Iterable[str]) -> ModuleType:
    """Imports `module` again from its source, with every module of
    `packages`; on failure the previous modules are put back and the error
    is raised."""
    wanted = set(packages)
    old = _purge(wanted)
    try:
        return importlib.import_module(module)
    except BaseException:
        _purge(wanted)
        sys.modules.update(old)
        raise


def reload_requested() -> bool:
    """True once after each SIGHUP (dev mode only): the loop should finish
    its batch and call `reload`."""
    if _reload.is_set():
        _reload.clear()
        return True
    return False


def reload(module: str, attr: str, current: T, packages: Iterable[str] | None = None) -> T:
    """`attr` of `module`, imported again with the service's code (the
    shared packages too), or `current` when that import fails."""
    started = time.monotonic()
    try:
        fresh: T = getattr(import_fresh(module, own_packages() if packages is None else packages), attr)
    except Exception as err:
        say(f"reload failed: {describe(err)}; the previous code keeps running")
        return current
    say(f"reloaded {module} in {time.monotonic() - started:.3f}s")
    return fresh


def _on_hup(_signum: int, _frame: FrameType | None) -> None:
    _reload.set()


def run_worker(argv: list[str]) -> int:
    """`python -m MODULE` with SIGHUP asking for a reload."""
    if len(argv) != 3 or argv[:2] != ["python", "-m"]:
        say(f"a worker's command must be `python -m MODULE` to reload in place, not {argv}")
        return 2
    signal.signal(signal.SIGHUP, _on_hup)
    say(f"{argv[2]}: SIGHUP reloads the code between batches")
    sys.argv = [argv[2]]
    runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    return 0


def third_party_imports(root: Path, packages: set[str]) -> list[str]:
    """Every module the code under `root` imports from outside it (absolute
    imports), sorted: what the supervisor imports once for all children."""
    found: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        if "tests" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(), str(path))
        except (SyntaxError, OSError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
    return sorted(n for n in found if n.split(".")[0] not in packages and n != "__future__")


def preload(names: Iterable[str]) -> None:
    """Imports `names` in the supervisor, so forked children find them
    loaded. A fork copies one thread only: a module that started a thread
    on import is reported."""
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # the child reports it, with file and line
            pass
    if threading.active_count() > 1:
        say(f"warning: importing the dependencies started {threading.active_count() - 1} thread(s)")


@dataclass
class Child:
    pid: int
    pipe: int  # read end of the pipe the child reports on, one line each
    buffer: bytes = b""

    def line(self, timeout: float) -> str:
        """The next line ("" at the pipe's end or after `timeout`)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer and (left := deadline - time.monotonic()) > 0:
            try:
                ready, _, _ = select.select([self.pipe], [], [], left)
            except InterruptedError:
                continue
            chunk = os.read(self.pipe, 65536) if ready else b""
            if ready and not chunk:
                break
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace").strip()


class Supervisor:
    """Holds the socket; one serving child, a fresh one per SIGHUP."""

    def __init__(self, sock: socket.socket, argv: list[str], app_module: str) -> None:
        self.sock = sock
        self.argv = argv
        self.app_module = app_module
        self.packages = own_packages()
        self.current: Child | None = None
        self.stopping: list[int] = []
        self.reload = False
        self.stop = False

    def start(self) -> Child:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read)
            code = 1
            try:
                code = serve_child(self.sock, self.argv, self.app_module, self.packages, write)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write)
        return Child(pid, read)

    def wait_ready(self, child: Child) -> str | None:
        """None once the child serves, else why it does not."""
        line = child.line(READY_TIMEOUT_SECONDS)
        if line == "ok":
            return None
        os.close(child.pipe)
        self.terminate(child.pid, signal.SIGKILL)
        return line.removeprefix("error ") or "the new process exited before it served"

    def terminate(self, pid: int, sig: int = signal.SIGTERM) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        self.stopping.append(pid)

    def replace(self) -> None:
        started = time.monotonic()
        child = self.start()
        problem = self.wait_ready(child)
        if problem is not None:
            keeps = "the previous code keeps serving" if self.current else "nothing serves until a fix"
            say(f"reload failed: {problem}; {keeps}")
            return
        old, self.current = self.current, child
        if old is not None:
            # It finishes what it has accepted; once it accepts no more,
            # every new connection reaches the new code.
            self.terminate(old.pid)
            while old.line(2.0) not in ("closed", ""):
                pass
            os.close(old.pipe)
        say(f"reloaded {self.app_module} in {time.monotonic() - started:.3f}s (pid {child.pid})")
        # Off the timed path: every module the new child has loaded that is
        # not the service's code (uvicorn's own lazy imports too), for the next.
        loaded = child.line(2.0).removeprefix("modules ").split()
        preload(n for n in loaded if n.split(".")[0] not in self.packages and n != "__main__")

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.stopping:
                self.stopping.remove(pid)
            elif self.current is not None and pid == self.current.pid:
                say(f"the serving process exited ({os.waitstatus_to_exitcode(status)}); starting it again")
                self.current = None
                time.sleep(1.0)
                self.reload = True

    def run(self) -> int:
        def on_hup(_s: int, _f: FrameType | None) -> None:
            self.reload = True

        def on_term(_s: int, _f: FrameType | None) -> None:
            self.stop = True

        signal.signal(signal.SIGHUP, on_hup)
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        say(f"{self.app_module}: SIGHUP serves a fresh copy of the code")
        preload(third_party_imports(CODE_ROOT, self.packages))
        self.reload = True
        while not self.stop:
            if self.reload:
                self.reload = False
                self.replace()
            self.reap()
            time.sleep(0.02)
        for pid in [self.current.pid] if self.current else []:
            self.terminate(pid)
        while self.stopping:
            self.reap()
            time.sleep(0.05)
        return 0


def serve_child(sock: socket.socket, argv: list[str], app_module: str, packages: set[str], ready: int) -> int:
    """In a forked child: imports the service's code afresh and serves it
    with uvicorn on the inherited socket; reports `ok` or the error on `ready`."""
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    try:
        import_fresh(app_module, packages)
    except BaseException as err:
        os.write(ready, f"error {describe(err)}\n".encode())
        return 1
    import uvicorn

    class DevServer(uvicorn.Server):
        def run(self, sockets: list[socket.socket] | None = None) -> None:
            super().run(sockets=[sock])

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            self.loop = asyncio.get_running_loop()
            if self.started:
                os.write(ready, b"ok\n")
                names = " ".join(sorted(sys.modules))[:60000]
                os.write(ready, f"modules {names}\n".encode())

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            if hasattr(self, "loop"):
                self.loop.call_soon_threadsafe(self.stop_accepting)

        def stop_accepting(self) -> None:
            # At once, not after the next tick: the supervisor waits for this.
            for server in self.servers:
                server.close()
            os.write(ready, b"closed\n")

    # `uvicorn.main` the attribute is the CLI; the module is in sys.modules.
    cli = importlib.import_module("uvicorn.main")
    setattr(cli, "Server", DevServer)
    command: Callable[..., Any] = cli.main.main
    command(args=argv[1:], prog_name="uvicorn", standalone_mode=False)
    return 0


def run_http(argv: list[str]) -> int:
    """The supervisor for `uvicorn APP [OPTIONS]`."""
    if not argv or Path(argv[0]).name != "uvicorn":
        say(f"an http service's command must start with uvicorn to reload in place, not {argv}")
        return 2
    from uvicorn.main import main as cli

    params = cli.make_context("uvicorn", list(argv[1:])).params
    host, port = str(params["host"]), int(params["port"])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=int(params.get("backlog") or 2048))
    sock.set_inheritable(True)
    return Supervisor(sock, argv, str(params["app"]).split(":")[0]).run()


def main(args: list[str]) -> int:
    if len(args) < 3 or args[0] not in ("http", "worker") or args[1] != "--":
        say("usage: python -m pysvc_common.dev http|worker -- COMMAND...")
        return 2
    return run_http(args[2:]) if args[0] == "http" else run_worker(args[2:])


if __name__ == "__main__":
    # Through the package's own module, whose reload flag the worker reads.
    from pysvc_common import dev

    sys.exit(dev.main(sys.argv[1:]))
