import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pysvc_common import dev


def package(root: Path, name: str, files: dict[str, str]) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "__init__.py").write_text("")
    for file, text in files.items():
        (root / name / file).write_text(text)


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.split(".")[0] == "devpkg"]:
        del sys.modules[name]


def test_a_fresh_import_sees_the_edit_and_a_broken_one_keeps_the_old_code(code: Path) -> None:
    package(code, "devpkg", {"mod.py": "VALUE = 1\n", "uses.py": "from devpkg.mod import VALUE\n"})
    assert dev.import_fresh("devpkg.uses", ["devpkg"]).VALUE == 1
    (code / "devpkg" / "mod.py").write_text("VALUE = 2\n")
    assert dev.import_fresh("devpkg.uses", ["devpkg"]).VALUE == 2
    (code / "devpkg" / "mod.py").write_text("VALUE = (\n")
    with pytest.raises(SyntaxError) as err:
        dev.import_fresh("devpkg.uses", ["devpkg"])
    assert sys.modules["devpkg.mod"].VALUE == 2, "the previous modules are put back"
    assert dev.describe(err.value, code).startswith(f"{code / 'devpkg' / 'mod.py'}:1: SyntaxError:")


def test_reload_keeps_the_current_code_on_failure_and_names_file_and_line(
    code: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package(code, "devpkg", {"loop.py": "def step() -> int:\n    return 1\n"})
    step = dev.import_fresh("devpkg.loop", ["devpkg"]).step
    (code / "devpkg" / "loop.py").write_text("import os\n\nraise RuntimeError('boom')\n")
    assert dev.reload("devpkg.loop", "step", step, ["devpkg"]) is step
    assert f"reload failed: {code / 'devpkg' / 'loop.py'}:3: RuntimeError: boom" in capsys.readouterr().err
    (code / "devpkg" / "loop.py").write_text("def step() -> int:\n    return 2\n")
    assert dev.reload("devpkg.loop", "step", step, ["devpkg"])() == 2
    assert "reloaded devpkg.loop in" in capsys.readouterr().err


def test_sighup_is_read_once() -> None:
    assert not dev.reload_requested()
    dev._on_hup(signal.SIGHUP, None)
    assert dev.reload_requested()
    assert not dev.reload_requested()


def test_third_party_imports_leave_out_the_own_code(code: Path) -> None:
    package(code, "devpkg", {"a.py": "import json\nfrom confluent_kafka.admin import X\nfrom devpkg import b\nfrom . import c\n"})
    assert dev.third_party_imports(code, {"devpkg"}) == ["confluent_kafka.admin", "json"]


APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%s"})
"""


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return str(r.read().decode())


def wait_line(proc: "subprocess.Popen[str]", needle: str) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if needle in line:
            return line
    raise AssertionError(f"no {needle!r} from the supervisor")


def test_the_supervisor_serves_each_reload_and_keeps_serving_through_a_broken_one(code: Path) -> None:
    package(code, "demoapp", {"main.py": APP % "v1"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    shared = Path(dev.__file__).resolve().parent.parent
    env = os.environ | {"PYTHONPATH": f"{code}:{shared}", "PYSVC_DEV_ROOT": str(code)}
    argv = ["uvicorn", "demoapp.main:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pysvc_common.dev", "http", "--", *argv], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_line(proc, "pysvc-dev: reloaded demoapp.main")
        assert get(port) == "v1"
        (code / "demoapp" / "main.py").write_text(APP % "v2")
        proc.send_signal(signal.SIGHUP)
        wait_line(proc, "pysvc-dev: reloaded demoapp.main")
        assert get(port) == "v2"
        (code / "demoapp" / "main.py").write_text("def broken(:\n")
        proc.send_signal(signal.SIGHUP)
        line = wait_line(proc, "pysvc-dev: reload failed")
        assert f"{code / 'demoapp' / 'main.py'}:1: SyntaxError" in line
        assert get(port) == "v2", "the previous code keeps serving"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
