"""Test settings: fast mode unless told otherwise, and no windows for figures."""

import os

import matplotlib

# `./course.sh test` sets DIFFEDU_FAST=1; a bare `pytest` gets it too (DIFFEDU_FAST=0 pytest
# runs the notebooks' full-quality path). Notebook kernels inherit this environment.
os.environ.setdefault("DIFFEDU_FAST", "1")
matplotlib.use("Agg")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_exercise_hints():
    """Every test starts with no wrong tries counted, so staged hints start from the idea."""
    from diffedu.exercises import reset_tries

    reset_tries()
    yield


@pytest.fixture(scope="session")
def mnist_fast_onnx(tmp_path_factory):
    """mnist-fast's 4-step sampler exported to ONNX once for the whole run (the export takes ~10 s)."""
    from diffedu.deploy.onnx_export import export_sampler
    from diffedu.deploy.web import quiet_exporter
    from diffedu.zoo import mnist_fast

    with quiet_exporter():
        return export_sampler(mnist_fast.load(), tmp_path_factory.mktemp("onnx") / "mnist-fast.onnx")
