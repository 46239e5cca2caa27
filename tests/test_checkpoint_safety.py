"""Training never damages the shipped course; damaged or unfinished checkpoints are named.

- `train` writes to runs/NAME; data/checkpoints changes only for a finished run with --publish,
  atomically (no half-copied model, no backups left behind).
- Model cards record the SHA-256 of every weights file, and loading checks it.
- Loading a model whose card says "finished": false warns in one line.
"""

import json
import shutil

import pytest
import torch

from diffedu.__main__ import main
from diffedu import zoo
from diffedu.models.checkpoints import CheckpointError, checkpoint_dir, file_sha256, publish, read_checkpoint, save_checkpoint
from diffedu.course.data import mnist_path


@pytest.fixture()
def course_copy(tmp_path, monkeypatch):
    """A data folder with MNIST and a copy of the shipped classifier; the working directory is
    a fresh folder, so runs/ is created there."""
    data = tmp_path / "data"
    (data / "checkpoints").mkdir(parents=True)
    (data / "mnist.npz").symlink_to(mnist_path())
    for name in zoo.get("mnist-classifier").saved_files:
        shutil.copy2(checkpoint_dir() / name, data / "checkpoints" / name)
    monkeypatch.setenv("DIFFEDU_DATA", str(data))
    monkeypatch.chdir(tmp_path)
    return data / "checkpoints"


def _hashes(folder):
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}


def test_training_writes_to_runs_and_leaves_the_shipped_model_alone(course_copy, tmp_path):
    before = _hashes(course_copy)
    assert main(["train", "mnist-classifier", "--steps", "3"]) == 0
    card = json.loads((tmp_path / "runs" / "mnist-classifier" / "mnist-classifier.json").read_text())
    assert card["finished"] and card["train_steps"] == 3
    assert _hashes(course_copy) == before


def test_unfinished_run_is_never_published(course_copy, tmp_path, capsys):
    before = _hashes(course_copy)
    # a budget far too short for 10**6 steps: the run stops unfinished
    assert main(["train", "mnist-classifier", "--steps", "1000000", "--budget-minutes", "0.002", "--publish"]) == 0
    assert "run the same command again to continue" in capsys.readouterr().out
    assert _hashes(course_copy) == before
    with pytest.raises(SystemExit) as exit_info:  # nor by the publish command
        main(["publish", "mnist-classifier"])
    assert exit_info.value.code == 2 and "has not finished" in capsys.readouterr().err


def test_ctrl_c_during_training_exits_130_and_publishes_nothing(course_copy, tmp_path, monkeypatch, capsys):
    from diffedu.zoo import mnist_classifier

    def interrupt(*args):
        raise KeyboardInterrupt

    before = _hashes(course_copy)
    monkeypatch.setattr(mnist_classifier, "classification_loss", interrupt)
    assert main(["train", "mnist-classifier", "--steps", "5", "--publish"]) == 130
    err = capsys.readouterr().err
    assert "run the same command again to continue" in err and "Traceback" not in err
    assert _hashes(course_copy) == before
    assert (tmp_path / "runs" / "mnist-classifier" / "checkpoint.pt").is_file()


def test_finished_run_is_published_with_publish(course_copy, tmp_path):
    assert main(["train", "mnist-classifier", "--steps", "3", "--publish", "--force"]) == 0  # worse than the shipped one
    published = json.loads((course_copy / "mnist-classifier.json").read_text())
    assert published["finished"] and published["train_steps"] == 3
    run = tmp_path / "runs" / "mnist-classifier"
    assert _hashes(course_copy) == {k: v for k, v in _hashes(run).items() if k.startswith("mnist-classifier.")}
    assert sorted(p.name for p in course_copy.iterdir()) == ["mnist-classifier.json", "mnist-classifier.safetensors"]
    read_checkpoint("mnist-classifier", course_copy)  # and it loads, its hash checked


def test_publish_changes_nothing_when_a_file_is_missing(tmp_path):
    source, dest = tmp_path / "run", tmp_path / "dest"
    source.mkdir()
    dest.mkdir()
    (source / "a.safetensors").write_text("new")
    (dest / "a.safetensors").write_text("old")
    with pytest.raises(FileNotFoundError):
        publish(["a.safetensors", "a.json"], source, dest)  # a.json is missing in the run
    assert (dest / "a.safetensors").read_text() == "old"
    (source / "a.json").write_text("{}")
    (source / "folder").mkdir()
    (source / "folder" / "x").write_text("x")
    publish(["a.safetensors", "a.json", "folder"], source, dest)
    assert (dest / "a.safetensors").read_text() == "new" and (dest / "folder" / "x").read_text() == "x"
    publish(["a.safetensors", "a.json", "folder"], source, dest)  # over existing files and folders
    assert sorted(p.name for p in dest.iterdir()) == ["a.json", "a.safetensors", "folder"]  # no .bak, no .tmp left


def _tiny_checkpoint(folder, card):
    model = torch.nn.Linear(64, 64)
    return save_checkpoint(model, "tiny", {"in": 64}, card, folder)


def test_unfinished_card_warns_in_one_line(tmp_path, capsys):
    _tiny_checkpoint(tmp_path, {"finished": False, "train_steps": 7, "train_config": {"train_steps": 100}})
    read_checkpoint("tiny", tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unfinished run (step 7 of 100)" in err[0]
    assert f"train tiny --run-dir {tmp_path}" in err[0]  # where the run to resume is
    _tiny_checkpoint(tmp_path, {"finished": True})
    read_checkpoint("tiny", tmp_path)
    assert capsys.readouterr().err == ""


def test_flipped_byte_in_the_weights_is_named(tmp_path):
    weights = _tiny_checkpoint(tmp_path, {"finished": True})
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # a single bit in the middle of the tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors is damaged.*python -m diffedu train tiny"):
        read_checkpoint("tiny", tmp_path)


def test_damaged_header_is_a_clear_error_even_without_a_hash(tmp_path):
    weights = _tiny_checkpoint(tmp_path, {"finished": True})
    card_path = tmp_path / "tiny.json"
    card = json.loads(card_path.read_text())
    del card["sha256"]  # a card from before hashes: the header check must still catch it
    card_path.write_text(json.dumps(card))
    data = bytearray(weights.read_bytes())
    data[10:20] = b"garbage!!!"
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors is damaged and cannot be read"):
        read_checkpoint("tiny", tmp_path)


def test_cli_reports_a_damaged_checkpoint_in_one_line(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "checkpoints"
    for name in zoo.get("mnist-unet").saved_files:
        folder.mkdir(exist_ok=True)
        shutil.copy2(checkpoint_dir() / name, folder / name)
    weights = folder / "mnist-unet.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("DIFFEDU_DATA", str(tmp_path))
    assert main(["sample", "mnist-unet", "--n", "2", "--out", str(tmp_path / "x.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mnist-unet.safetensors is damaged" in err[0]


@pytest.mark.parametrize("name", ["mnist-classifier", "mnist-unet", "mnist-vae", "mnist-ldm", "mini-sd", "mnist-flow", "mnist-fast",
                                  "mnist-consistency", "mnist-meanflow"])
def test_every_shipped_card_records_the_hash_of_every_file(name):
    card = json.loads((checkpoint_dir() / f"{name}.json").read_text())
    folder = checkpoint_dir()
    if name == "mini-sd":
        expected = {str(p.relative_to(folder)) for p in (folder / "mini-sd").rglob("*") if p.is_file()}
    else:
        expected = {f"{name}.safetensors"}
    assert set(card["sha256"]) == expected
    for relative, digest in card["sha256"].items():
        assert file_sha256(folder / relative) == digest
    assert card["finished"] is True  # the course ships finished runs only


def test_mini_sd_with_a_flipped_byte_is_named(tmp_path):
    from diffedu.models.checkpoints import record_sha256
    from diffedu.sd.mini import load_pipeline

    shutil.copytree(checkpoint_dir() / "mini-sd", tmp_path / "mini-sd")
    card = {"finished": True}
    record_sha256(card, tmp_path, [str(p.relative_to(tmp_path)) for p in (tmp_path / "mini-sd").rglob("*") if p.is_file()])
    (tmp_path / "mini-sd.json").write_text(json.dumps(card))
    weights = tmp_path / "mini-sd" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"unet/diffusion_pytorch_model\.safetensors is damaged"):
        load_pipeline(folder=tmp_path)


def test_mini_sd_tokenizer_ships_the_files_transformers_4_reads():
    """transformers 5 saves only tokenizer.json, which transformers 4 cannot load alone
    (CLIPTokenizer gets None); vocab.json and merges.txt are read by both."""
    folder = checkpoint_dir() / "mini-sd" / "tokenizer"
    from diffedu.sd.mini import TOKENIZER_FOLDER

    for name in ("vocab.json", "merges.txt"):  # the files the course's tokenizer is built from
        assert (folder / name).read_bytes() == (TOKENIZER_FOLDER / name).read_bytes(), f"mini-sd's tokenizer lacks {name}"
    # that transformers 4 loads the pipeline with them: `./course.sh test-lowest` (tests/test_sd.py there)
