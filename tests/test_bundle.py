"""A room of offline laptops: `./course.sh bundle` writes one folder, and a laptop sets up from it
with pip's network cut off (a network namespace with no interfaces), then runs chapter 00.

Building it copies the committed course, downloads about 500 MB of wheels and installs them into a
new environment: a few minutes, so that test runs only when asked (DIFFEDU_TEST_BUNDLE=1; .ci/run
asks). The one-line errors for a wrong bundle always run.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

WHEN_ASKED = pytest.mark.skipif(os.environ.get("DIFFEDU_TEST_BUNDLE") != "1",
                                reason="builds a 500 MB bundle and a fresh environment (minutes): DIFFEDU_TEST_BUNDLE=1 "
                                       "runs it, as .ci/run does")
LINUX_X86_64 = pytest.mark.skipif(not (sys.platform == "linux" and os.uname().machine == "x86_64"),
                                  reason="the messages name this machine's platform; written for Linux x86-64")


def no_network() -> list[str]:
    """The prefix that runs a command without any network, or a skip where that cannot be done here."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--net", "true"]).returncode != 0:
        pytest.skip("cannot cut the network off here (unshare --net needs root or user namespaces)")
    return ["unshare", "--net"]


@WHEN_ASKED
def test_a_laptop_sets_up_from_the_bundle_with_no_network_and_runs_chapter_00(tmp_path):
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, str(ROOT / "tools" / "bundle.py"), "--out", str(bundle)], check=True)
    manifest = json.loads((bundle / "bundle.json").read_text())
    wheels = sorted(p.name for p in (bundle / "wheels" / "linux-x86_64").glob("*.whl"))
    pins = [line for line in (ROOT / "requirements-lock.txt").read_text().splitlines() if "==" in line and not line.startswith("#")]
    assert manifest["platforms"] == ["linux-x86_64"] and manifest["python"] == "3.11"
    assert any(name.startswith("torch-2.13.0") for name in wheels) and len(wheels) >= len(pins) + 1
    assert (bundle / "repo" / "course.sh").exists() and (bundle / "repo" / "data" / "mnist.npz").exists()

    # the laptop: nothing but the bundle; pip gets no configuration of this machine's and no network
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, DIFFEDU_VENV=str(tmp_path / "venv"))
    setup = subprocess.run([*no_network(), "./course.sh", "setup", "--from", ".."], cwd=bundle / "repo", env=env,
                           capture_output=True, text=True, timeout=900)
    assert setup.returncode == 0, setup.stderr[-3000:]
    python = tmp_path / "venv" / "bin" / "python"
    versions = subprocess.run([str(python), "-c", "import torch, diffusers; print(torch.__version__, diffusers.__version__)"],
                              capture_output=True, text=True, check=True).stdout
    assert versions.startswith("2.13.0")
    chapter = subprocess.run([str(python), "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", "chapters/00_setup.ipynb"],
                             cwd=bundle / "repo", env={**env, "DIFFEDU_FAST": "1"}, capture_output=True, text=True, timeout=600)
    assert chapter.returncode == 0, chapter.stdout[-3000:]


@LINUX_X86_64
def test_a_bundle_for_another_platform_or_python_says_what_to_do(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "wheels" / "macos-arm64").mkdir(parents=True)
    (bundle / "bundle.json").write_text(json.dumps({"python": "3.11", "platforms": ["macos-arm64"]}))
    wrong_platform = subprocess.run([str(ROOT / "course.sh"), "setup", "--from", str(bundle)], capture_output=True, text=True,
                                    env={**os.environ, "DIFFEDU_VENV": str(tmp_path / "venv")})
    assert wrong_platform.returncode == 1
    assert "has wheels for macos-arm64 only, not linux-x86_64: make one with ./course.sh bundle --platform linux-x86_64" \
        in wrong_platform.stderr
    (bundle / "wheels" / "linux-x86_64").mkdir()  # the right platform, but made with a newer Python than this one
    newer = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro + 1}"
    (bundle / "bundle.json").write_text(json.dumps({"python": newer.rsplit(".", 1)[0], "python_made_with": newer}))
    wrong_python = subprocess.run([str(ROOT / "course.sh"), "setup", "--from", str(bundle)], capture_output=True, text=True,
                                  env={**os.environ, "DIFFEDU_VENV": str(tmp_path / "venv"), "PYTHON": sys.executable})
    assert wrong_python.returncode == 1 and f"need Python {newer.rsplit('.', 1)[0]} ({newer} or a newer" in wrong_python.stderr
    assert not (tmp_path / "venv").exists()  # checked before anything is made
    not_a_bundle = subprocess.run([str(ROOT / "course.sh"), "setup", "--from", str(tmp_path)], capture_output=True, text=True)
    assert not_a_bundle.returncode == 1 and "is not a course bundle" in not_a_bundle.stderr
