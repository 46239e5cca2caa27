"""./course.sh setup: what it installs, from where, with which flags.

course.sh runs against a stand-in virtual environment whose `python` only records its
arguments, in a copy of the course folder that is no git checkout, so nothing is installed
and the real repository's settings are left alone.
"""

import http.server
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def course(tmp_path):
    folder = tmp_path / "course"
    folder.mkdir()
    for name in ("course.sh", "pyproject.toml", "requirements-lock.txt", "requirements-lowest.txt"):
        shutil.copy2(ROOT / name, folder / name)
    venv_python = folder / "fake-venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    log = tmp_path / "calls.log"
    venv_python.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    venv_python.chmod(0o755)
    return folder, log


def run_setup(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIFFEDU_")}
    environment.update(DIFFEDU_VENV="fake-venv", **env)
    return subprocess.run(["bash", str(folder / "course.sh"), "setup", *args], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=60)


def pip_installs(log: Path) -> list[str]:
    return [line.removeprefix("-m pip install --quiet ").strip() for line in log.read_text().splitlines()
            if line.startswith("-m pip install --quiet") and "--upgrade pip" not in line]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is


def test_default_setup_installs_torch_then_the_lock(course):
    folder, log = course
    result = run_setup(folder)
    assert result.returncode == 0, result.stderr
    assert pip_installs(log) == ["torch==2.13.0", "-r requirements-lock.txt", "--no-deps -e ."]


def test_latest_installs_the_newest_allowed_versions(course):
    folder, log = course
    assert run_setup(folder, DIFFEDU_LATEST="1").returncode == 0
    assert pip_installs(log) == ["torch==2.13.0", "-e .[lab,test,site]"]


def test_cpu_build_falls_back_in_one_line_when_its_index_cannot_be_reached(course):
    folder, log = course
    result = run_setup(folder, "--cpu", DIFFEDU_TORCH_CPU_INDEX=f"http://127.0.0.1:{closed_port()}/whl/cpu")
    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "cannot be reached: installing the default build instead" in warnings[0]
    assert pip_installs(log)[0] == "torch==2.13.0"


def test_cpu_build_comes_from_the_cpu_index_when_it_answers(course, tmp_path):
    folder, log = course
    (tmp_path / "index").mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "index"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}"
        result = run_setup(folder, "--cpu", DIFFEDU_TORCH_CPU_INDEX=index)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert pip_installs(log)[0] == f"torch==2.13.0 --index-url {index}"


def test_diffedu_torch_still_overrides(course):
    folder, log = course
    assert run_setup(folder, "--cpu", DIFFEDU_TORCH="torch==2.9.1").returncode == 0
    assert pip_installs(log)[0] == "torch==2.9.1"
