"""Test settings: fast mode unless told otherwise, and no windows for figures."""

import os

import matplotlib

# `./course.sh test` sets DIFFEDU_FAST=1; a bare `pytest` gets it too (DIFFEDU_FAST=0 pytest
# runs the notebooks' full-quality path). Notebook kernels inherit this environment.
os.environ.setdefault("DIFFEDU_FAST", "1")
matplotlib.use("Agg")

# The Chinese chapters (chapters/zh/, written by ./course.sh translate) run the English chapters' code: the
# suite runs the English ones only, and CI runs the Chinese ones as well with DIFFEDU_TEST_ZH=1 pytest chapters/zh
collect_ignore = [] if os.environ.get("DIFFEDU_TEST_ZH") == "1" else ["chapters/zh"]


import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked slow (an ONNX export, the browser page, a real server under load, the shipped models'
    pre-reshape samples) repeat at greater cost what the chapters' fast mode runs in the suite, or (the Colab
    cell's packages) ask pip's resolver over the package index: they run when asked, DIFFEDU_TEST_SLOW=1, as
    .ci/run asks in a step of its own, so that ./course.sh test stays short."""
    if os.environ.get("DIFFEDU_TEST_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow, and repeats what a chapter runs: DIFFEDU_TEST_SLOW=1 runs it, as .ci/run does")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
