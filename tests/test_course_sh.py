"""./course.sh setup and lab: what setup installs, from where, with which flags; what lab hands to JupyterLab.

course.sh runs against a stand-in virtual environment whose `python` and `jupyter` only record
their arguments, in a copy of the course folder that is no git checkout, so nothing is installed
and the real repository's settings are left alone. One test starts the real JupyterLab.
"""

import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def course(tmp_path):
    folder = tmp_path / "course"
    folder.mkdir()
    for name in ("course.sh", "pyproject.toml", "requirements-lock.txt", "requirements-lowest.txt", "tools/torch.env"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, folder / name)
    venv_python = folder / "fake-venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    log = tmp_path / "calls.log"
    venv_python.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    venv_python.chmod(0o755)
    venv_jupyter = venv_python.parent / "jupyter"
    venv_jupyter.write_text(f'#!/bin/sh\necho "jupyter $*" >> "{log}"\n')
    venv_jupyter.chmod(0o755)
    return folder, log


def run_course(folder: Path, command: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIFFEDU_")}
    environment.update(DIFFEDU_VENV="fake-venv", **env)
    return subprocess.run(["bash", str(folder / "course.sh"), command, *args], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=60)


def run_setup(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_course(folder, "setup", *args, **env)


def run_lab_as(uid: int, folder: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """./course.sh lab ARGS with `id -u` answering UID (a stand-in `id` first on the PATH)."""
    stand_ins = tmp_path / "stand-ins"
    stand_ins.mkdir(exist_ok=True)
    (stand_ins / "id").write_text(f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} && exit 0\nexec {shutil.which("id")} "$@"\n')
    (stand_ins / "id").chmod(0o755)
    return run_course(folder, "lab", *args, PATH=f"{stand_ins}{os.pathsep}{os.environ['PATH']}")


def jupyter_calls(log: Path) -> list[str]:
    return [line.removeprefix("jupyter ").strip() for line in log.read_text().splitlines() if line.startswith("jupyter ")]


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


def test_lab_passes_its_flags_to_jupyter_lab(course, tmp_path):
    folder, log = course
    result = run_lab_as(1000, folder, tmp_path, "--port", "8890", "--no-browser", "--ServerApp.ip=0.0.0.0")
    assert result.returncode == 0, result.stderr
    assert jupyter_calls(log) == ["lab chapters/00_setup.ipynb --port 8890 --no-browser --ServerApp.ip=0.0.0.0"]
    assert "root" not in result.stderr


def test_lab_zh_opens_the_chinese_edition(course, tmp_path):
    folder, log = course
    result = run_lab_as(1000, folder, tmp_path, "--zh", "--no-browser")
    assert result.returncode == 0, result.stderr
    assert jupyter_calls(log) == ["lab chapters/zh/00_setup.ipynb --no-browser"]


def test_lab_as_root_adds_allow_root_and_says_so_in_one_line(course, tmp_path):
    folder, log = course
    result = run_lab_as(0, folder, tmp_path, "--no-browser")
    assert result.returncode == 0, result.stderr
    assert jupyter_calls(log) == ["lab chapters/00_setup.ipynb --allow-root --no-browser"]
    notes = [line for line in result.stderr.splitlines() if "root" in line]
    assert len(notes) == 1 and "adding --allow-root" in notes[0] and "run as a normal user" in notes[0]


def test_lab_as_root_keeps_the_users_own_allow_root(course, tmp_path):
    folder, log = course
    result = run_lab_as(0, folder, tmp_path, "--allow-root")
    assert result.returncode == 0, result.stderr
    assert jupyter_calls(log) == ["lab chapters/00_setup.ipynb --allow-root"]
    assert "root" not in result.stderr


def test_lab_on_a_busy_port_shows_the_url_of_the_port_jupyterlab_took(course, tmp_path):
    """The real JupyterLab, started by ./course.sh lab --port P --no-browser while P is taken."""
    real_jupyter = Path(sys.executable).parent / "jupyter"
    if not real_jupyter.exists():
        pytest.skip(f"no JupyterLab next to {sys.executable} (the course's lab extra)")
    folder, _ = course
    (folder / "chapters").mkdir()
    shutil.copy2(ROOT / "chapters" / "00_setup.ipynb", folder / "chapters")
    (folder / "fake-venv" / "bin" / "jupyter").write_text(f'#!/bin/sh\nexec "{real_jupyter}" "$@"\n')
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFEDU_", "JUPYTER"))}
    environment.update(DIFFEDU_VENV="fake-venv", JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
                       JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"), JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        lab = subprocess.Popen(["bash", str(folder / "course.sh"), "lab", "--no-browser", "--port", str(port)], cwd=folder,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, url = [], None
        watchdog = threading.Timer(60, lab.kill)  # readline() below would wait for ever on a silent, hung server
        watchdog.start()
        try:
            while url is None:
                line = lab.stdout.readline()
                if not line:
                    break
                output.append(line)
                if "copy and paste one of these URLs" in "".join(output):
                    url = re.search(r"http://(?:localhost|127\.0\.0\.1):(\d+)/lab\?token=\w+", line)
        finally:
            watchdog.cancel()
            lab.terminate()
            lab.wait(timeout=30)
    text = "".join(output)
    assert url is not None, text
    assert f"The port {port} is already in use" in text and int(url.group(1)) != port
    assert "if no browser opens, open the URL it prints below" in text
