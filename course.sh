#!/usr/bin/env bash
# One command to set up the diffedu course and use it.
#
#   ./course.sh lab           set up (first time only) and open the course in JupyterLab; other flags go to
#                             jupyter lab (--no-browser, --port 8890); as root it adds --allow-root, with a note;
#                             ./course.sh lab --zh opens the Chinese edition (chapters/zh/)
#   ./course.sh test          set up (first time only) and run the whole test suite in fast mode
#   ./course.sh setup         only set up: a virtual environment in .venv with everything installed
#   ./course.sh setup --cpu   the same, with PyTorch's CPU-only build (much smaller; for machines without an NVIDIA GPU)
#   ./course.sh lock          write requirements-lock.txt from .venv (after the tests passed with DIFFEDU_LATEST=1)
#   ./course.sh bundle        write build/bundle: the course and every wheel it needs, for a room of offline
#                             laptops (--platform linux-x86_64 --platform macos-arm64, --out DIR)
#   ./course.sh setup --from BUNDLE   set up from such a bundle, with no network
#   ./course.sh execute       run every chapter in full mode into build/executed/full (never into chapters/)
#   ./course.sh execute --fast   the same in fast mode, into build/executed/fast
#   ./course.sh site          build the course's website into site/ from those executed copies (full mode where
#                             there is one); --fast: from the fast-mode copies only
#   ./course.sh translate     the Chinese edition: update the PO files in i18n/zh/ from the English chapters, README and
#                             workshop guide, write chapters/zh/, README.zh.md and docs/workshop.zh.md from them, and
#                             list what needs translating (--check: write nothing, fail if anything is missing or stale)
#   ./course.sh test-lowest   run the Stable Diffusion tests and chapter 05 with the oldest supported
#                             Hugging Face versions (requirements-lowest.txt), in .venv-lowest
#
# Settings (environment variables):
#   PYTHON          the Python to build .venv from (default: python3; needs 3.10 or newer)
#   DIFFEDU_TORCH   the torch requirement installed first (default: torch==2.13.0)
#   DIFFEDU_LATEST  1: install the newest versions pyproject.toml allows instead of requirements-lock.txt
#   DIFFEDU_VENV    where the virtual environment goes (default: .venv)
set -euo pipefail
CALLER_DIR=$PWD  # where the command was typed: paths given to --from are relative to it
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
. tools/torch.env  # DEFAULT_TORCH and DEFAULT_TORCH_CPU_INDEX, shared with tools/bundle.py
TORCH_CPU_INDEX=${DIFFEDU_TORCH_CPU_INDEX:-$DEFAULT_TORCH_CPU_INDEX}
VENV=${DIFFEDU_VENV:-.venv}
LOCK=requirements-lock.txt
LOWEST=requirements-lowest.txt

fail() { echo "course.sh: $*" >&2; exit 1; }

make_venv() {  # make_venv DIR
    [ -x "$1/bin/python" ] && return 0  # made before (perhaps with another PYTHON): keep it
    command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' found: install Python 3.10 or newer, or set PYTHON=/path/to/python3"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || fail "$("$PYTHON" --version 2>&1) is too old: the course needs Python 3.10 or newer (set PYTHON=...)"
    echo "==> creating a virtual environment in $1"
    "$PYTHON" -m venv "$1" || fail "could not create $1 (on Debian/Ubuntu: apt install python3-venv)"
}

reachable() {  # reachable URL: answers within 5 s?
    "$PYTHON" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=5)
PY
}

torch_args() {  # the pip arguments that install PyTorch (one per line)
    if [ -n "${DIFFEDU_TORCH:-}" ]; then
        printf '%s\n' $DIFFEDU_TORCH
    elif [ "${CPU_ONLY:-0}" = 1 ]; then
        if reachable "$TORCH_CPU_INDEX/"; then
            printf '%s\n' "$DEFAULT_TORCH" --index-url "$TORCH_CPU_INDEX"
        else
            echo "course.sh: PyTorch's CPU-only index ($TORCH_CPU_INDEX) cannot be reached: installing the default build instead" >&2
            printf '%s\n' "$DEFAULT_TORCH"
        fi
    else
        printf '%s\n' "$DEFAULT_TORCH"
    fi
}

setup_web() {  # onnxruntime-web from npm, for chapter 11's page in the browser (web/package.json pins it)
    [ -f web/package-lock.json ] || return 0
    [ -f web/node_modules/onnxruntime-web/package.json ] && [ web/node_modules/.package-lock.json -nt web/package-lock.json ] && return 0
    if ! command -v npm >/dev/null; then
        echo "course.sh: no npm here: chapter 11's in-browser page needs it (Debian/Ubuntu: apt install npm); everything else works" >&2
        return 0
    fi
    echo "==> installing onnxruntime-web for chapter 11's browser page (npm ci --prefix web)"
    npm ci --prefix web --no-audit --no-fund --loglevel=error >/dev/null 2>web/npm-error.log \
        || echo "course.sh: npm could not install onnxruntime-web (its messages: web/npm-error.log); chapter 11's browser page will say so" >&2
}

setup() {
    make_venv "$VENV"
    setup_web
    local stamp="$VENV/.diffedu-installed" wanted mode
    mode=$([ "${DIFFEDU_LATEST:-0}" = 1 ] && echo latest || echo lock)
    wanted="$(cat pyproject.toml "$LOCK") ${DIFFEDU_TORCH:-} cpu=${CPU_ONLY:-0} $mode"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        return 0  # already installed for this pyproject.toml and lock file
    fi
    local pip=("$VENV/bin/python" -m pip)
    "${pip[@]}" install --quiet --upgrade pip
    local torch
    mapfile -t torch < <(torch_args)
    echo "==> installing PyTorch first (${torch[*]})"
    "${pip[@]}" install --quiet "${torch[@]}"
    if [ "$mode" = lock ] && echo "==> installing the course's tested versions ($LOCK)" \
            && "${pip[@]}" install --quiet -r "$LOCK"; then
        "${pip[@]}" install --quiet --no-deps -e .
    else
        [ "$mode" = lock ] && echo "course.sh: $LOCK does not install here (it was made on Linux with $(sed -n 's/^# python: //p' "$LOCK")): installing the newest allowed versions instead" >&2
        echo "==> installing the course with the newest versions pyproject.toml allows"
        "${pip[@]}" install --quiet -e ".[lab,test,site]"
    fi
    printf '%s' "$wanted" > "$stamp"
    if git rev-parse --git-dir >/dev/null 2>&1; then  # notebooks run in JupyterLab stay clean in git
        { "$VENV/bin/python" -m nbstripout --install && git config filter.nbstripout.extrakeys "metadata.language_info"; } \
            || echo "course.sh: could not install the nbstripout git filter (notebooks you run will show as changed)" >&2
    fi
    echo "==> set-up done"
}

setup_from_bundle() {  # setup_from_bundle DIR: install from a workshop bundle (./course.sh bundle), with no network
    local bundle=$1 system machine wheels want have
    case $bundle in /*) ;; *) bundle=$CALLER_DIR/$bundle ;; esac
    [ -f "$bundle/bundle.json" ] || fail "$bundle is not a course bundle (it has no bundle.json): the instructor makes one with ./course.sh bundle"
    case "$(uname -s)" in Linux) system=linux ;; Darwin) system=macos ;; *) system=$(uname -s) ;; esac
    case "$(uname -m)" in x86_64|amd64) machine=x86_64 ;; arm64|aarch64) machine=arm64 ;; *) machine=$(uname -m) ;; esac
    wheels=$bundle/wheels/$system-$machine
    case "$system-$machine" in
        linux-x86_64|macos-arm64) [ -d "$wheels" ] || fail "this bundle has wheels for $(ls "$bundle/wheels" | tr '\n' ' ')only, not $system-$machine: make one with ./course.sh bundle --platform $system-$machine" ;;
        *) fail "bundles are made for linux-x86_64 and macos-arm64, not $system-$machine: set up with the network (./course.sh setup) or use Colab" ;;
    esac
    want=$(sed -n 's/.*"python_made_with": "\([0-9.]*\)".*/\1/p' "$bundle/bundle.json")
    [ -n "$want" ] || want=$(sed -n 's/.*"python": "\([0-9.]*\)".*/\1/p' "$bundle/bundle.json")
    have=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo none)
    "$PYTHON" - "$want" <<'PY' 2>/dev/null || fail "the bundle's wheels need Python ${want%.*} (${want} or a newer ${want%.*}), and $PYTHON is Python $have: install it, then run PYTHON=python${want%.*} ./course.sh setup --from BUNDLE"
import sys
want = tuple(int(n) for n in sys.argv[1].split("."))
sys.exit(not (sys.version_info[:2] == want[:2] and sys.version_info[:len(want)] >= want))
PY
    make_venv "$VENV"
    local pip=("$VENV/bin/python" -m pip install --quiet --no-index --find-links "$wheels")
    echo "==> installing PyTorch and the course's tested versions from $wheels (no network)"
    "${pip[@]}" "$DEFAULT_TORCH"
    "${pip[@]}" -r "$LOCK"
    "${pip[@]}" --no-deps -e .
    printf '%s' "$(cat pyproject.toml "$LOCK")  cpu=0 lock" > "$VENV/.diffedu-installed"  # as setup() would write it
    echo "==> set-up done, from the bundle"
}

lock() {
    [ -x "$VENV/bin/python" ] || fail "no $VENV yet: run DIFFEDU_LATEST=1 ./course.sh test first, then lock what passed"
    {
        echo "# The exact versions the test suite passed with; ./course.sh setup installs these (DIFFEDU_LATEST=1: the newest allowed)."
        echo "# Made by './course.sh lock' on $(date -u +%Y-%m-%d). PyTorch is not listed: course.sh installs it first."
        echo "# python: $("$VENV/bin/python" -c 'import platform; print(platform.python_version(), platform.machine())')"
        "$VENV/bin/python" -m pip freeze --exclude-editable --all \
            | grep -viE '^(torch|triton|nvidia-[a-z0-9-]+|pip|setuptools|wheel|diffedu)([=@ ]|$)' | LC_ALL=C sort -f
    } > "$LOCK.tmp"
    mv "$LOCK.tmp" "$LOCK"
    echo "==> wrote $LOCK ($(grep -vc '^#' "$LOCK") packages)"
}

test_lowest() {
    local venv=.venv-lowest pip
    make_venv "$venv"
    pip=("$venv/bin/python" -m pip)
    if [ ! -f "$venv/.diffedu-installed" ] || [ "$(cat "$venv/.diffedu-installed")" != "$(cat pyproject.toml "$LOWEST")" ]; then
        local torch
        mapfile -t torch < <(torch_args)
        echo "==> installing PyTorch (${torch[*]}) and the oldest supported versions ($LOWEST) into $venv"
        "${pip[@]}" install --quiet "${torch[@]}"
        "${pip[@]}" install --quiet -c "$LOWEST" -e ".[test]"
        cat pyproject.toml "$LOWEST" > "$venv/.diffedu-installed"
    fi
    "$venv/bin/python" - "$LOWEST" <<'PY'
import sys
from importlib.metadata import version
pins = dict(line.split("==") for line in open(sys.argv[1]) if "==" in line and not line.startswith("#"))
wrong = {name: version(name) for name, pinned in pins.items() if version(name) != pinned.strip()}
if wrong:
    sys.exit(f"course.sh: .venv-lowest does not hold the versions of {sys.argv[1]}: {wrong}")
print("==> oldest versions:", ", ".join(f"{n} {v.strip()}" for n, v in pins.items()))
PY
    echo "==> running the Stable Diffusion tests (chapters 05 and 09) and chapter 05 with them (fast mode)"
    DIFFEDU_FAST=1 "$venv/bin/python" -m pytest tests/test_sd.py tests/test_finetune.py chapters/05_stable_diffusion.ipynb "$@"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    setup)
        if [ "${1:-}" = --from ]; then
            [ -n "${2:-}" ] || fail "--from needs the bundle's folder, e.g. ./course.sh setup --from /media/usb/diffedu"
            setup_from_bundle "$2"
        else
            [ "${1:-}" = --cpu ] && CPU_ONLY=1
            setup
        fi ;;
    bundle)
        setup
        exec "$VENV/bin/python" tools/bundle.py "$@" ;;
    lab)
        setup
        first_chapter=chapters/00_setup.ipynb
        if [ "${1:-}" = --zh ]; then  # the Chinese edition (简体中文)
            first_chapter=chapters/zh/00_setup.ipynb
            shift
        fi
        allow_root=0
        for flag in "$@"; do
            case $flag in --allow-root|--allow-root=*|--ServerApp.allow_root*) allow_root=1 ;; esac
        done
        if [ "$(id -u)" = 0 ] && [ "$allow_root" = 0 ]; then  # JupyterLab refuses to start as root without it
            echo "course.sh: running as root (a container or cloud machine?): adding --allow-root, without which JupyterLab will not start; run as a normal user to avoid it" >&2
            set -- --allow-root "$@"
        fi
        echo "==> starting JupyterLab: if no browser opens, open the URL it prints below (a busy port makes it take the next free one)"
        exec "$VENV/bin/jupyter" lab "$first_chapter" "$@" ;;
    test)
        setup
        echo "==> running the tests (fast mode: DIFFEDU_FAST=1)"
        DIFFEDU_FAST=1 exec "$VENV/bin/python" -m pytest "$@" ;;
    lock)
        lock ;;
    test-lowest)
        test_lowest "$@" ;;
    execute)
        setup
        exec "$VENV/bin/python" tools/execute_chapters.py "$@" ;;
    site)
        setup
        exec "$VENV/bin/python" tools/site/build.py "$@" ;;
    translate)
        setup
        exec "$VENV/bin/python" tools/translate.py "$@" ;;
    *)
        sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
        exit 2 ;;
esac
