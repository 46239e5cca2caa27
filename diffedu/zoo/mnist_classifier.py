"""mnist-classifier: the CNN behind the accuracy of generated digits and FID (chapters 03 and 06).

    python -m diffedu train mnist-classifier      (its model card records how long it took, and on what)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from diffedu.course.data import load_mnist
from diffedu.metrics import accuracy, load_classifier
from diffedu.models import build_seeded
from diffedu.models.checkpoints import model_card, save_checkpoint, stop_if_interrupted
from diffedu.models.classifier import MnistClassifier, classification_loss
from diffedu.train import TrainConfig, train as train_loop
from diffedu.zoo import NamedModel

NAME = "mnist-classifier"
TRAIN = TrainConfig(train_steps=1500, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.999, checkpoint_every=500)


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Train and save the classifier (EMA weights); its card holds the test accuracy."""
    config = replace(TRAIN, **overrides)
    train_set, test_set = load_mnist("train"), load_mnist("test")
    classifier = build_seeded(MnistClassifier, config.seed)
    result = train_loop(classifier, classification_loss, (train_set.images, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    classifier = result.ema.cpu().eval()
    metrics = {"test_accuracy": round(accuracy(classifier, test_set.images, test_set.labels), 4)} if measure else {}
    card = model_card(NAME, config, result, {
        "metrics": metrics,
        "notes": "EMA weights. Used for classifier accuracy of samples and FID on its 128 penultimate features.",
    })
    save_checkpoint(classifier, NAME, {"feature_dim": MnistClassifier.feature_dim}, card, out_folder)
    return card


def evaluate(classifier: MnistClassifier, n: int) -> dict:
    """Accuracy on all 10,000 test digits (n is not used: the test set is small)."""
    test = load_mnist("test")
    metrics = {"test_accuracy": round(accuracy(classifier, test.images, test.labels), 4)}
    return metrics


MODEL = NamedModel(
    name=NAME, chapter=3, summary="the CNN behind accuracy and FID", train_config=TRAIN,
    train=train, load=load_classifier, evaluate=evaluate, headline={"test accuracy": ("test_accuracy",)},
)
