"""Every bad input gets one line: about a hundred mistakes across the five commands (models, train,
sample, evaluate, publish), each answered with exit code 1 or 2, no traceback, one line on stderr
(or argparse's usage and one error line), and nothing in data/ changed.

The commands run in this process (diffedu.__main__.main), so the whole file takes seconds; two
cases also run as real processes, to see what a terminal shows. Every case must fail before any
work: tiny --n and --steps keep a case that wrongly succeeds cheap. Damaged models are damaged
copies in a temporary folder; the publish cases publish into a copy of data/ (DIFFEDU_DATA), and
both data/ and that copy are compared, file by file, before and after.

A read-only folder: a folder with mode 555, or, for root (who ignores permissions), /sys/kernel,
where no one can create files; without either the cases that need one are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffedu.__main__ import main
from diffedu.course.data import sha256_of
from diffedu.course.paths import REPO_ROOT
from diffedu.train import CHECKPOINT_KEYS

DATA = REPO_ROOT / "data"
SHIPPED = DATA / "checkpoints"
THREADS = torch.get_num_threads()


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_of(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_model(name: str, folder: Path, files: tuple[str, ...] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for entry in files or (f"{name}.safetensors", f"{name}.json"):
        if (SHIPPED / entry).is_dir():
            shutil.copytree(SHIPPED / entry, folder / entry)
        else:
            shutil.copy2(SHIPPED / entry, folder / entry)
    return folder


def edit_card(folder: Path, name: str, change) -> None:
    path = folder / f"{name}.json"
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card))


def read_only_folder(folder: Path) -> Path | None:
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return folder
    (folder / "probe").unlink()  # root: permissions do not apply
    kernel = Path("/sys/kernel")
    if kernel.is_dir() and not os.access(kernel, os.W_OK | os.X_OK):
        return kernel
    try:
        (kernel / "diffedu-probe").write_text("x")
    except OSError:
        return kernel
    return None


class Evil:
    """Unpickling this makes a folder: proof that a checkpoint.pt ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def training_checkpoint(**changes) -> dict:
    saved = {"model": {"weight": torch.zeros(3)}, "ema": {"weight": torch.zeros(3)}, "optimizer": {},
             "generator": torch.Generator().get_state(), "step": 0, "losses": [], "elapsed_seconds": 0.0}
    assert set(CHECKPOINT_KEYS) <= set(saved)
    saved.update(changes)
    return saved


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The folders the cases point at, made once; data/ and the course copy hashed before."""
    w = tmp_path_factory.mktemp("bad-inputs")
    paths = {"file": w / "a_file", "empty": w / "empty", "runs": w / "runs", "course": w / "course",
             "data": DATA, "tests_data": REPO_ROOT / "tests" / "data", "marker": w / "code-ran"}
    paths["file"].write_text("not a folder")
    paths["empty"].mkdir()
    paths["folder_npz"] = w / "folder.npz"
    paths["folder_npz"].mkdir()
    ro = read_only_folder(w / "read-only")
    paths["ro"] = ro
    runs = paths["runs"]

    # a copy of data/ for the publish cases: checkpoints copied, MNIST linked
    (paths["course"] / "checkpoints").mkdir(parents=True)
    (paths["course"] / "mnist.npz").symlink_to(DATA / "mnist.npz")
    for name in ("mnist-classifier", "mnist-unet"):
        copy_model(name, paths["course"] / "checkpoints")

    # damaged copies of mnist-unet, for sample and evaluate --from
    weights = (SHIPPED / "mnist-unet.safetensors").read_bytes()
    copy_model("mnist-unet", runs / "unet-truncated")
    (runs / "unet-truncated" / "mnist-unet.safetensors").write_bytes(weights[: len(weights) // 3])
    flipped = bytearray(weights)
    flipped[len(flipped) // 2] ^= 1
    copy_model("mnist-unet", runs / "unet-flipped")
    (runs / "unet-flipped" / "mnist-unet.safetensors").write_bytes(bytes(flipped))
    copy_model("mnist-unet", runs / "unet-card-garbage")
    (runs / "unet-card-garbage" / "mnist-unet.json").write_text("{not json")
    copy_model("mnist-unet", runs / "unet-card-list")
    (runs / "unet-card-list" / "mnist-unet.json").write_text("[1, 2]")
    copy_model("mnist-unet", runs / "unet-card-lists-more")
    edit_card(runs / "unet-card-lists-more", "mnist-unet", lambda c: c["sha256"].update({"extra.safetensors": "0" * 64}))
    copy_model("mnist-unet", runs / "unet-garbage-weights")
    (runs / "unet-garbage-weights" / "mnist-unet.safetensors").write_bytes(b"garbage" * 100)
    copy_model("mnist-fast", runs / "fast-flipped")
    fast = bytearray((runs / "fast-flipped" / "mnist-fast.safetensors").read_bytes())
    fast[-10] ^= 1
    (runs / "fast-flipped" / "mnist-fast.safetensors").write_bytes(bytes(fast))

    # runs of mnist-classifier to publish: damaged, unfinished, worse, unmeasured, ...
    def classifier_run(label: str, change=None) -> Path:
        folder = copy_model("mnist-classifier", runs / f"cls-{label}")
        if change:
            edit_card(folder, "mnist-classifier", change)
        return folder

    classifier_run("unfinished", lambda c: c.update(finished=False, train_steps=7))
    classifier_run("worse", lambda c: c["metrics"].update(test_accuracy=0.405))
    classifier_run("unmeasured", lambda c: c.update(metrics={}))
    classifier_run("no-sha", lambda c: c.pop("sha256"))
    classifier_run("other-name", lambda c: c.update(name="mnist-unet"))
    truncated = classifier_run("truncated")
    data = (truncated / "mnist-classifier.safetensors").read_bytes()
    (truncated / "mnist-classifier.safetensors").write_bytes(data[: len(data) // 2])
    (classifier_run("no-weights") / "mnist-classifier.safetensors").unlink()
    (classifier_run("card-garbage") / "mnist-classifier.json").write_text("{")
    extra = copy_model("mini-sd", runs / "minisd-extra", ("mini-sd", "mini-sd.json"))
    (extra / "mini-sd" / "unet" / "extra.bin").write_bytes(b"not in the card")

    # run folders whose checkpoint.pt is not one to resume from
    for label, write in {
        "garbage": lambda p: p.write_bytes(os.urandom(2000)),
        "pickle": lambda p: torch.save(training_checkpoint(model=Evil(paths["marker"])), p),
        "truncated": lambda p: (torch.save(training_checkpoint(model={"w": torch.zeros(1000)}), p),
                                p.write_bytes(p.read_bytes()[:3000])),
        "other-model": lambda p: torch.save(training_checkpoint(), p),
        "folder": lambda p: p.mkdir(),
        "list": lambda p: torch.save([1, 2, 3], p),
        "inconsistent": lambda p: torch.save(training_checkpoint(step=5), p),
        "empty": lambda p: p.write_bytes(b""),
    }.items():
        (runs / f"ckpt-{label}").mkdir()
        write(runs / f"ckpt-{label}" / "checkpoint.pt")

    # a models folder with a damaged card
    damaged = runs / "models-damaged"
    copy_model("mnist-fast", damaged)
    (damaged / "mnist-fast.json").write_text("{garbage")

    before = {"data": hashes(DATA), "course": hashes(paths["course"])}
    yield paths, before
    if ro is not None and ro.is_relative_to(w):
        ro.chmod(0o755)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    except Exception as error:  # what a user would see as a traceback
        pytest.fail(f"traceback: {type(error).__name__}: {str(error)[:300]}")
    finally:
        torch.set_num_threads(THREADS)
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    """The lines of the message: argparse's usage lines are not counted."""
    lines = [line for line in err.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage:"):
        first_error = next((i for i, line in enumerate(lines) if ": error: " in line), len(lines))
        return lines[first_error:]
    return lines


OUT = ["--out", "x.npz"]
SAMPLE = ["sample", "mnist-unet", "--n", "2", "--steps", "2"]
TRAIN = ["train", "mnist-classifier", "--steps", "1", "--no-metrics"]
EVALUATE = ["evaluate", "mnist-unet", "--n", "2"]
BIG = str(2**70)

# (id, argv with {placeholders} from the world fixture, a fragment the one line must contain; "course" in the
# id: DIFFEDU_DATA points at the copy of data/)
CASES = [
    # models
    ("models-from-missing", ["models", "--from", "no/such/folder"], "is not a folder"),
    ("models-from-file", ["models", "--from", "{file}"], "is not a folder"),
    ("models-damaged-card", ["models", "--from", "{runs}/models-damaged"], "mnist-fast.json is damaged"),
    ("models-unknown-option", ["models", "--colour"], "unrecognized arguments"),
    ("models-extra-argument", ["models", "mnist-unet"], "unrecognized arguments"),
    ("no-command", [], "required"),
    ("unknown-command", ["paint"], "invalid choice"),
    # sample: the model and what it can do
    ("sample-unknown-model", ["sample", "mnist-gan", *OUT], "invalid choice"),
    ("sample-vae", ["sample", "mnist-vae", *OUT], "does not draw digits"),
    ("sample-mini-sd", ["sample", "mini-sd", *OUT], "does not draw digits"),
    ("sample-no-out", ["sample", "mnist-unet"], "--out"),
    ("sample-fast-guidance", ["sample", "mnist-fast", "--n", "2", "--guidance", "2", *OUT], "built into it"),
    ("sample-fast-unconditional", ["sample", "mnist-fast", "--n", "2", "--unconditional", *OUT], "given digits only"),
    ("sample-flow-ddim", ["sample", "mnist-flow", "--sampler", "ddim", *OUT], "it takes euler or heun"),
    ("sample-unet-euler", ["sample", "mnist-unet", "--sampler", "euler", *OUT], "cannot sample with --sampler euler"),
    ("sample-sampler-unknown", ["sample", "mnist-unet", "--sampler", "rk4", *OUT], "invalid choice"),
    # sample: numbers out of range
    ("sample-n-0", ["sample", "mnist-unet", "--n", "0", *OUT], "--n"),
    ("sample-n-negative", ["sample", "mnist-unet", "--n", "-1", *OUT], "--n"),
    ("sample-n-huge", ["sample", "mnist-unet", "--n", "10000000000", "--steps", "2", *OUT], "--n: must be in 1..100000"),
    ("sample-n-text", ["sample", "mnist-unet", "--n", "many", *OUT], "invalid"),
    ("sample-unet-steps-0", ["sample", "mnist-unet", "--steps", "0", *OUT], "ddim takes 1 or more steps, got 0"),
    ("sample-unet-steps-1001", ["sample", "mnist-unet", "--steps", "1001", *OUT], "ddim takes 1..1000 steps, got 1001"),
    ("sample-unet-steps-negative", ["sample", "mnist-unet", "--steps", "-5", *OUT], "ddim takes 1 or more steps, got -5"),
    ("sample-ldm-steps-0", ["sample", "mnist-ldm", "--steps", "0", *OUT], "ddim takes 1 or more steps, got 0"),
    ("sample-ldm-steps-5000", ["sample", "mnist-ldm", "--steps", "5000", *OUT], "ddim takes 1..1000 steps, got 5000"),
    ("sample-flow-steps-0", ["sample", "mnist-flow", "--steps", "0", *OUT], "euler takes 1 or more steps, got 0"),
    ("sample-fast-steps-0", ["sample", "mnist-fast", "--steps", "0", *OUT], "euler takes 1 or more steps, got 0"),
    ("sample-steps-text", ["sample", "mnist-unet", "--steps", "ten", *OUT], "invalid int"),
    ("sample-unet-heun-1", ["sample", "mnist-unet", "--n", "2", "--sampler", "pf-heun", "--steps", "1", *OUT],
     "pf-heun takes 2 or more steps, got 1"),
    ("sample-ldm-heun-1", ["sample", "mnist-ldm", "--n", "2", "--sampler", "pf-heun", "--steps", "1", *OUT],
     "pf-heun takes 2 or more steps, got 1"),
    ("sample-ddpm-50", ["sample", "mnist-unet", "--sampler", "ddpm", "--steps", "50", *OUT], "use --sampler ancestral"),
    ("sample-label-12", ["sample", "mnist-unet", "--label", "12", *OUT], "--label must be a digit 0-9"),
    ("sample-label-negative", ["sample", "mnist-unet", "--label", "-1", *OUT], "--label must be a digit 0-9"),
    ("sample-label-and-all", ["sample", "mnist-unet", "--label", "3", "--all-labels", *OUT], "not allowed with"),
    ("sample-unconditional-guidance", ["sample", "mnist-unet", "--unconditional", "--guidance", "2", *OUT],
     "--guidance needs digits"),
    ("sample-guidance-negative", ["sample", "mnist-unet", "--guidance", "-1", *OUT], "finite number >= 0"),
    ("sample-guidance-nan", ["sample", "mnist-unet", "--guidance", "nan", *OUT], "finite number >= 0"),
    ("sample-guidance-inf", ["sample", "mnist-unet", "--guidance", "inf", *OUT], "finite number >= 0"),
    ("sample-guidance-minus-inf", ["sample", "mnist-unet", "--guidance=-inf", *OUT], "finite number >= 0"),
    ("sample-guidance-text", ["sample", "mnist-unet", "--guidance", "strong", *OUT], "invalid"),
    ("sample-seed-negative", [*SAMPLE, "--seed", "-1", *OUT], "0..2**63-1"),
    ("sample-seed-2-63", [*SAMPLE, "--seed", str(2**63), *OUT], "0..2**63-1"),
    ("sample-seed-2-70", [*SAMPLE, "--seed", BIG, *OUT], "0..2**63-1"),
    ("sample-threads-0", [*SAMPLE, "--threads", "0", *OUT], "--threads"),
    ("sample-threads-1000", [*SAMPLE, "--threads", "1000", *OUT], "the CPU threads of this machine"),
    ("sample-batch-size-0", [*SAMPLE, "--batch-size", "0", *OUT], "--batch-size"),
    ("sample-device-tpu", [*SAMPLE, "--device", "tpu", *OUT], "unknown device 'tpu'"),
    # sample: where it writes
    ("sample-out-png", [*SAMPLE, "--out", "x.png"], "must name a .npz file"),
    ("sample-out-folder", [*SAMPLE, "--out", "{empty}"], "--out must name"),
    ("sample-out-folder-npz", [*SAMPLE, "--out", "{folder_npz}"], "is a folder"),
    ("sample-out-under-file", [*SAMPLE, "--out", "{file}/x.npz"], "is a file, not a folder"),
    ("sample-out-deep-under-file", [*SAMPLE, "--out", "{file}/a/b/x.npz"], "is a file, not a folder"),
    ("sample-out-mnist", [*SAMPLE, "--out", "{data}/mnist.npz"], "the course's own files"),
    ("sample-out-checkpoints", [*SAMPLE, "--out", "{data}/checkpoints/x.npz"], "the course's own files"),
    ("sample-out-tests-data", [*SAMPLE, "--out", "{tests_data}/x.npz"], "the course's own files"),
    ("sample-out-course-copy-mnist", [*SAMPLE, "--out", "{course}/mnist.npz"], "the course's own files"),
    ("sample-out-proc", [*SAMPLE, "--out", "/proc/x.npz"], "cannot be written"),
    ("sample-out-read-only", [*SAMPLE, "--out", "{ro}/x.npz"], "cannot be written"),
    # sample: where the model comes from
    ("sample-from-missing", [*SAMPLE, "--from", "no/such/run", *OUT], "is not a folder"),
    ("sample-from-file", [*SAMPLE, "--from", "{file}", *OUT], "is not a folder"),
    ("sample-from-empty-run", [*SAMPLE, "--from", "{empty}", *OUT], "--run-dir"),
    ("sample-from-truncated", [*SAMPLE, "--from", "{runs}/unet-truncated", *OUT], "is damaged"),
    ("sample-from-flipped", [*SAMPLE, "--from", "{runs}/unet-flipped", *OUT], "is damaged"),
    ("sample-from-card-garbage", [*SAMPLE, "--from", "{runs}/unet-card-garbage", *OUT], "is damaged"),
    ("sample-from-card-list", [*SAMPLE, "--from", "{runs}/unet-card-list", *OUT], "is damaged"),
    ("sample-from-card-lists-more", [*SAMPLE, "--from", "{runs}/unet-card-lists-more", *OUT], "is missing"),
    ("sample-from-garbage-weights", [*SAMPLE, "--from", "{runs}/unet-garbage-weights", *OUT], "is damaged"),
    ("sample-fast-from-flipped", ["sample", "mnist-fast", "--n", "2", "--from", "{runs}/fast-flipped", *OUT], "is damaged"),
    # train: options
    ("train-unknown-model", ["train", "mnist-gan"], "invalid choice"),
    ("train-steps-0", [*TRAIN, "--steps", "0"], "--steps: must be at least 1"),
    ("train-steps-negative", [*TRAIN, "--steps", "-3"], "--steps: must be at least 1"),
    ("train-steps-text", [*TRAIN, "--steps", "lots"], "invalid"),
    ("train-budget-0", [*TRAIN, "--budget-minutes", "0"], "positive number of minutes"),
    ("train-budget-negative", [*TRAIN, "--budget-minutes", "-1"], "positive number of minutes"),
    ("train-budget-nan", [*TRAIN, "--budget-minutes", "nan"], "positive number of minutes"),
    ("train-seed-negative", [*TRAIN, "--seed", "-1"], "0..2**63-1"),
    ("train-seed-2-70", [*TRAIN, "--seed", BIG], "0..2**63-1"),
    ("train-threads-0", [*TRAIN, "--threads", "0"], "--threads"),
    ("train-threads-1000", [*TRAIN, "--threads", "1000"], "the CPU threads of this machine"),
    ("train-processes-0", [*TRAIN, "--processes", "0"], "--processes"),
    ("train-processes-1000", [*TRAIN, "--processes", "1000"], "one process per GPU, or at most one per core"),
    ("train-config-unknown", [*TRAIN, "--config", "huge"], "has no --config huge"),
    ("train-grad-accumulation-0", [*TRAIN, "--grad-accumulation", "0"], "--grad-accumulation"),
    ("train-grad-accumulation-3", [*TRAIN, "--grad-accumulation", "3"], "does not split"),
    # train: where it writes
    ("train-run-dir-file", [*TRAIN, "--run-dir", "{file}"], "is a file, not a folder"),
    ("train-run-dir-under-file", [*TRAIN, "--run-dir", "{file}/run"], "cannot be written"),
    ("train-run-dir-read-only", [*TRAIN, "--run-dir", "{ro}"], "cannot be written"),
    ("train-run-dir-read-only-new", [*TRAIN, "--run-dir", "{ro}/run"], "cannot be written"),
    ("train-run-dir-proc", [*TRAIN, "--run-dir", "/proc/run"], "cannot be written"),
    ("train-run-dir-checkpoints", [*TRAIN, "--run-dir", "{data}/checkpoints"], "the course's own files"),
    ("train-run-dir-data", [*TRAIN, "--run-dir", "{data}"], "the course's own files"),
    ("train-run-dir-tests-data", [*TRAIN, "--run-dir", "{tests_data}"], "the course's own files"),
    ("train-out-file", [*TRAIN, "--out", "{file}"], "is a file, not a folder"),
    ("train-out-read-only", [*TRAIN, "--out", "{ro}"], "cannot be written"),
    ("train-out-tests-data", [*TRAIN, "--out", "{tests_data}"], "the course's own files"),
    ("train-out-data", [*TRAIN, "--out", "{data}"], "the course's own files"),
    # train: a run folder whose checkpoint.pt is not this model's, fails before the first step
    ("train-checkpoint-garbage", [*TRAIN, "--run-dir", "{runs}/ckpt-garbage"], "checkpoint.pt"),
    ("train-checkpoint-pickle", [*TRAIN, "--run-dir", "{runs}/ckpt-pickle"], "checkpoint.pt"),
    ("train-checkpoint-truncated", [*TRAIN, "--run-dir", "{runs}/ckpt-truncated"], "checkpoint.pt"),
    ("train-checkpoint-other-model", [*TRAIN, "--run-dir", "{runs}/ckpt-other-model"], "another model"),
    ("train-checkpoint-folder", [*TRAIN, "--run-dir", "{runs}/ckpt-folder"], "checkpoint.pt"),
    ("train-checkpoint-list", [*TRAIN, "--run-dir", "{runs}/ckpt-list"], "checkpoint.pt"),
    ("train-checkpoint-inconsistent", [*TRAIN, "--run-dir", "{runs}/ckpt-inconsistent"], "checkpoint.pt"),
    ("train-checkpoint-empty", [*TRAIN, "--run-dir", "{runs}/ckpt-empty"], "checkpoint.pt"),
    # evaluate
    ("evaluate-unknown-model", ["evaluate", "mnist-gan"], "invalid choice"),
    ("evaluate-n-0", ["evaluate", "mnist-unet", "--n", "0"], "--n: must be at least 1"),
    ("evaluate-n-1", ["evaluate", "mnist-unet", "--n", "1"], "--n must be in 2..5000"),
    ("evaluate-n-5001", ["evaluate", "mnist-fast", "--n", "5001"], "--n must be in 2..5000"),
    ("evaluate-n-huge", ["evaluate", "mnist-ldm", "--n", "10000000000"], "--n must be in 2..5000"),
    ("evaluate-classifier-n", ["evaluate", "mnist-classifier", "--n", "10"], "--n does not apply"),
    ("evaluate-vae-n", ["evaluate", "mnist-vae", "--n", "10"], "--n does not apply"),
    ("evaluate-mini-sd-n", ["evaluate", "mini-sd", "--n", "1"], "--n does not apply"),
    ("evaluate-lora-n", ["evaluate", "mini-sd-lora-bold", "--n", "1"], "--n does not apply"),
    ("evaluate-threads-1000", [*EVALUATE, "--threads", "1000"], "the CPU threads of this machine"),
    ("evaluate-device-tpu", [*EVALUATE, "--device", "tpu"], "unknown device 'tpu'"),
    ("evaluate-out-txt", [*EVALUATE, "--out", "metrics.txt"], "must name a .json file"),
    ("evaluate-out-checkpoints", [*EVALUATE, "--out", "{data}/checkpoints/mnist-unet.json"], "the course's own files"),
    ("evaluate-out-proc", [*EVALUATE, "--out", "/proc/metrics.json"], "cannot be written"),
    ("evaluate-out-read-only", [*EVALUATE, "--out", "{ro}/metrics.json"], "cannot be written"),
    ("evaluate-from-missing", [*EVALUATE, "--from", "no/such/run"], "is not a folder"),
    ("evaluate-from-empty-run", [*EVALUATE, "--from", "{empty}"], "--run-dir"),
    ("evaluate-from-flipped", [*EVALUATE, "--from", "{runs}/unet-flipped"], "is damaged"),
    ("evaluate-from-card-garbage", [*EVALUATE, "--from", "{runs}/unet-card-garbage"], "is damaged"),
    # publish (into the copy of data/)
    ("publish-unknown-model", ["publish", "mnist-gan"], "invalid choice"),
    ("publish-course-no-run", ["publish", "mnist-classifier"], "is not a folder"),
    ("publish-course-from-missing", ["publish", "mnist-classifier", "--from", "no/such/run"], "is not a folder"),
    ("publish-course-from-file", ["publish", "mnist-classifier", "--from", "{file}"], "is not a folder"),
    ("publish-course-from-empty", ["publish", "mnist-classifier", "--from", "{empty}"], "no finished model"),
    ("publish-course-unfinished", ["publish", "mnist-classifier", "--from", "{runs}/cls-unfinished"], "has not finished"),
    ("publish-course-worse", ["publish", "mnist-classifier", "--from", "{runs}/cls-worse"],
     "worse than the one it would replace (test accuracy 0.405 against 0.994)"),
    ("publish-course-unmeasured", ["publish", "mnist-classifier", "--from", "{runs}/cls-unmeasured"],
     "has no metrics to compare"),
    ("publish-course-no-sha", ["publish", "mnist-classifier", "--from", "{runs}/cls-no-sha"], "lists no SHA-256"),
    ("publish-course-other-name", ["publish", "mnist-classifier", "--from", "{runs}/cls-other-name"], "is the card of"),
    ("publish-course-truncated", ["publish", "mnist-classifier", "--from", "{runs}/cls-truncated"], "is damaged"),
    ("publish-course-no-weights", ["publish", "mnist-classifier", "--from", "{runs}/cls-no-weights"], "is missing"),
    ("publish-course-card-garbage", ["publish", "mnist-classifier", "--from", "{runs}/cls-card-garbage"], "is damaged"),
    ("publish-course-mini-sd-extra-file", ["publish", "mini-sd", "--from", "{runs}/minisd-extra"], "extra.bin is not in"),
    ("publish-course-onto-itself", ["publish", "mnist-classifier", "--from", "{course}/checkpoints"], "would be published to"),
    ("publish-course-out-file", ["publish", "mnist-classifier", "--from", "{runs}/cls-worse", "--out", "{file}"],
     "is a file, not a folder"),
    ("publish-course-out-read-only", ["publish", "mnist-classifier", "--from", "{runs}/cls-worse", "--out", "{ro}"],
     "cannot be written"),
]


def fill(argv: list[str], paths: dict) -> list[str]:
    return [part.format(**{k: str(v) for k, v in paths.items()}) for part in argv]


@pytest.mark.parametrize("argv, fragment", [pytest.param(argv, fragment, id=case) for case, argv, fragment in CASES])
def test_bad_input_gets_one_line_and_a_nonzero_exit(argv, fragment, world, request, tmp_path, monkeypatch, capsys):
    paths, _ = world
    if any("{ro}" in part for part in argv) and paths["ro"] is None:
        pytest.skip("no read-only folder here (root, and no /sys/kernel)")
    monkeypatch.chdir(tmp_path)
    if "course" in request.node.callspec.id:
        monkeypatch.setenv("DIFFEDU_DATA", str(paths["course"]))
    else:
        monkeypatch.delenv("DIFFEDU_DATA", raising=False)
    code, out, err = run_cli(fill(argv, paths), capsys)
    lines = error_lines(err)
    assert code in (1, 2), f"exit {code}: not refused\nstdout: {out[-300:]}\nstderr: {err[-300:]}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"{len(lines)} lines:\n" + "\n".join(lines)
    if fragment:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("argv", [["sample", "mnist-unet", "--n", "10000000000", "--out", "x.npz"],
                                  [*TRAIN, "--run-dir", "{runs}/ckpt-pickle"]], ids=["sample-n-huge", "train-pickle"])
def test_a_real_process_shows_one_line(argv, world, tmp_path):
    paths, _ = world
    env = {k: v for k, v in os.environ.items() if k != "DIFFEDU_DATA"}
    result = subprocess.run([sys.executable, "-m", "diffedu", *fill(argv, paths)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert len(error_lines(result.stderr)) == 1, result.stderr


def test_nothing_in_data_changed_and_no_code_ran(world):
    """Last: data/ and the course copy are as they were, and the malicious checkpoint.pt did nothing."""
    paths, before = world
    assert hashes(DATA) == before["data"], "a bad input changed data/: `git checkout -- data` and find out which"
    assert hashes(paths["course"]) == before["course"]
    assert not paths["marker"].exists(), "a checkpoint.pt ran code when it was loaded"
