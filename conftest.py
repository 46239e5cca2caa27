"""Test settings: fast mode unless told otherwise, and no windows for figures."""

import os

import matplotlib

# `./course.sh test` sets DIFFEDU_FAST=1; a bare `pytest` gets it too (DIFFEDU_FAST=0 pytest
# runs the notebooks' full-quality path). Notebook kernels inherit this environment.
os.environ.setdefault("DIFFEDU_FAST", "1")
matplotlib.use("Agg")
