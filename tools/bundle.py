"""One folder with everything a workshop room needs offline: `./course.sh bundle`.

    python tools/bundle.py                                   Linux x86-64 (the default), into build/bundle/
    python tools/bundle.py --platform linux-x86_64 --platform macos-arm64 --out /media/usb/diffedu

The folder holds:
    repo/                      the course at the commit it was made from (git archive: no .venv, no runs)
    wheels/PLATFORM/           every package of requirements-lock.txt as a wheel for that platform and
                               the lock's Python, PyTorch's smallest build there (CPU-only on Linux; the
                               only build on macOS), and what pip needs to install the course itself
    requirements-lock.txt      the versions, as tested
    bundle.json                what is in it: platforms, Python, PyTorch, sizes, date, commit
    README.txt                 how to set up a laptop from it

Each laptop then runs, with no network:  cd BUNDLE/repo && ./course.sh setup --from ..
(pip install --no-index --find-links BUNDLE/wheels/PLATFORM). Copy the folder to a USB stick or
a shared drive: thirty laptops, one download.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements-lock.txt"
TORCH_SETTINGS = dict(line.split("=", 1) for line in (ROOT / "tools" / "torch.env").read_text().splitlines()
                      if line and not line.startswith("#"))  # shared with course.sh
TORCH = TORCH_SETTINGS["DEFAULT_TORCH"]
TORCH_CPU_INDEX = TORCH_SETTINGS["DEFAULT_TORCH_CPU_INDEX"]
BUILD_TOOLS = ["setuptools>=68", "wheel"]  # to install the course itself (pyproject.toml's build backend), offline
# pip's platform tags for each platform a room may have: the newest tags first
PLATFORMS = {
    "linux-x86_64": ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                     "manylinux2014_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64",
                     "manylinux1_x86_64", "linux_x86_64"],
    "macos-arm64": [f"macosx_{major}_0_arm64" for major in range(15, 10, -1)] + ["macosx_10_9_universal2",
                                                                                 "macosx_10_13_universal2"],
}


def lock_python() -> str:
    """The Python version the lock was made with ("3.11.7"): the bundle's wheels are for that one
    (some locked packages need a 3.11.x at least that recent)."""
    for line in LOCK.read_text().splitlines():
        if line.startswith("# python:"):
            return line.split()[2]
    sys.exit(f"bundle: {LOCK.name} does not say which Python it was made with (# python: ...): run ./course.sh lock")


def reachable(url: str) -> bool:
    """The course's one network check (diffedu.course.online.can_reach), with the 5 s course.sh allows."""
    from diffedu.course.online import can_reach

    return can_reach(url, timeout=5.0)


def download(requirements: list[str], name: str, python: str, folder: Path, extra: list[str] = (),
             with_dependencies: bool = False) -> None:
    """pip download of binary wheels for platform `name` and `python` into folder; exits with pip's reason.
    The lock names every dependency, so its packages come without theirs; PyTorch comes with its own
    (none beyond the lock for the CPU build; the CUDA libraries for the default Linux build)."""
    tags = [arg for tag in PLATFORMS[name] for arg in ("--platform", tag)]
    deps = [] if with_dependencies else ["--no-deps"]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", *deps, *tags,
               "--python-version", python, "--implementation", "cp", "--dest", str(folder), *extra, *requirements]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode:
        reasons = [line for line in finished.stderr.splitlines() if "ERROR" in line] or finished.stderr.splitlines()[-3:]
        sys.exit(f"bundle: no {name} wheels for Python {python} of: {' '.join(requirements)[:200]}\n  " + "\n  ".join(reasons))


def torch_options(name: str) -> list[str]:
    """Linux: PyTorch's CPU-only index when it answers (a tenth of the default CUDA build's size)."""
    if name.startswith("linux") and reachable(TORCH_CPU_INDEX + "/"):
        return ["--extra-index-url", TORCH_CPU_INDEX]
    return []


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a folder with everything a room needs to set up the course offline.")
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORMS), dest="platforms",
                        help="a platform of the room's laptops (repeat for several; default: linux-x86_64)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bundle", help="the folder to write (default: build/bundle)")
    args = parser.parse_args(argv)
    platforms = args.platforms or ["linux-x86_64"]
    python = lock_python()
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        if not (out / "bundle.json").exists():
            sys.exit(f"bundle: {out} is not empty and holds no earlier bundle: choose a new or empty folder")
        shutil.rmtree(out)  # an earlier bundle: replaced
    out.mkdir(parents=True, exist_ok=True)
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
    if changed:
        print("bundle: the bundle holds the last commit; these uncommitted changes are not in it:\n  "
              + changed.replace("\n", "\n  "), file=sys.stderr)

    print(f"==> the course, as committed, into {out}/repo")
    (out / "repo").mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out / "repo")], input=archive, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lock = out / "repo" / LOCK.name  # the committed lock, as the laptops will install it
    shutil.copy(lock, out / LOCK.name)

    pins = [line.strip() for line in lock.read_text().splitlines() if line.strip() and not line.startswith("#")]
    sizes = {}
    for name in platforms:
        folder = out / "wheels" / name
        folder.mkdir(parents=True)
        start = time.perf_counter()
        print(f"==> {name}: {TORCH}, {len(pins)} locked packages and the build tools, for Python {python}")
        download([TORCH], name, python, folder, [*torch_options(name), "--constraint", str(lock)], with_dependencies=True)
        download(pins + BUILD_TOOLS, name, python, folder)
        torch_wheel = next(folder.glob("torch-*.whl")).name
        if name.startswith("linux") and "+cpu" not in torch_wheel:
            print(f"    PyTorch's CPU-only build was not found ({TORCH_CPU_INDEX} did not answer): {torch_wheel} is "
                  "the default build, with its CUDA libraries (several GB)", file=sys.stderr)
        sizes[name] = folder_size(folder)
        count = len(list(folder.glob("*.whl")))
        print(f"    {count} wheels, {sizes[name] / 1e6:.0f} MB, in {time.perf_counter() - start:.0f} s")

    manifest = {"made": time.strftime("%Y-%m-%d"), "commit": commit, "python": ".".join(python.split(".")[:2]),
                "python_made_with": python, "torch": TORCH,
                "platforms": platforms, "wheel_megabytes": {k: round(v / 1e6) for k, v in sizes.items()}}
    (out / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "README.txt").write_text(
        f"diffedu workshop bundle (commit {commit}, made {manifest['made']}) for {', '.join(platforms)}, Python {python}.\n\n"
        "On each laptop, with no network needed:\n\n"
        "    cd repo && ./course.sh setup --from ..      (PYTHON=python3.X if python3 is not Python " + python + ")\n"
        "    ./course.sh lab                            the course in JupyterLab\n\n"
        "Copy this whole folder (repo/ and wheels/ side by side) to each laptop's own disk first: the set-up writes\n"
        "repo/.venv, which a USB stick's file system or a shared drive does not hold well. A laptop can keep only\n"
        "its own wheels/ folder. Each laptop needs Python " + python + " or a newer " + ".".join(python.split(".")[:2])
        + ", with its venv module.\n")
    print(f"wrote {out} ({folder_size(out) / 1e6:.0f} MB): on each laptop, cd repo && ./course.sh setup --from ..")
    return 0


if __name__ == "__main__":
    sys.exit(main())
