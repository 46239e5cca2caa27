"""Fast mode: DIFFEDU_FAST=1 shrinks training and sampling so that every notebook runs in
about a minute (the test suite sets it). Without it a learner gets the full-quality path.

    from diffedu.course.fast import fast_or_full
    NUM_TRAIN_STEPS = fast_or_full(fast=50, full=5_000)  # training steps
"""

from __future__ import annotations

import os
from typing import TypeVar

FAST_ENV_VAR = "DIFFEDU_FAST"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

T = TypeVar("T")


def is_fast_mode() -> bool:
    """True when the environment variable DIFFEDU_FAST is set to 1 (or true/yes/on)."""
    value = os.environ.get(FAST_ENV_VAR, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{FAST_ENV_VAR} must be 1 or 0 (or true/false), got {value!r}")


def fast_or_full(fast: T, full: T) -> T:
    """Return `fast` in fast mode and `full` otherwise."""
    return fast if is_fast_mode() else full
