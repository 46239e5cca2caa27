#!/usr/bin/env bash
# One command to set up the diffedu course and use it.
#
#   ./course.sh lab     set up (first time only) and open the course in JupyterLab
#   ./course.sh test    set up (first time only) and run the whole test suite in fast mode
#   ./course.sh setup   only set up: a virtual environment in .venv with everything installed
#
# Settings (environment variables):
#   PYTHON        the Python to build .venv from (default: python3; needs 3.10 or newer)
#   DIFFEDU_TORCH the torch requirement installed first (default: torch==2.13.0)
#   DIFFEDU_VENV  where the virtual environment goes (default: .venv)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${DIFFEDU_TORCH:-torch==2.13.0}
VENV=${DIFFEDU_VENV:-.venv}
STAMP="$VENV/.diffedu-installed"

fail() { echo "course.sh: $*" >&2; exit 1; }

setup() {
    command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' found: install Python 3.10 or newer, or set PYTHON=/path/to/python3"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || fail "$("$PYTHON" --version 2>&1) is too old: the course needs Python 3.10 or newer (set PYTHON=...)"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating a virtual environment in $VENV"
        "$PYTHON" -m venv "$VENV" || fail "could not create $VENV (on Debian/Ubuntu: apt install python3-venv)"
    fi
    local wanted
    wanted="$(cat pyproject.toml) $TORCH_SPEC"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
        return 0  # already installed for this pyproject.toml
    fi
    echo "==> installing PyTorch first ($TORCH_SPEC)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
    echo "==> installing the course and its test tools"
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    printf '%s' "$wanted" > "$STAMP"
    echo "==> set-up done"
}

case "${1:-}" in
    setup)
        setup ;;
    lab)
        setup
        exec "$VENV/bin/jupyter" lab chapters/00_setup.ipynb ;;
    test)
        setup
        shift
        echo "==> running the tests (fast mode: DIFFEDU_FAST=1)"
        DIFFEDU_FAST=1 exec "$VENV/bin/python" -m pytest "$@" ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 2 ;;
esac
