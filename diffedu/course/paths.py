"""Where the course keeps its files: the repository's data/ folder, or DIFFEDU_DATA."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "DIFFEDU_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The folder that holds mnist.npz and checkpoints/ (DIFFEDU_DATA overrides it)."""
    override = os.environ.get(DATA_ENV_VAR)
    return Path(override).expanduser() if override else REPO_ROOT / "data"
