"""The course's MNIST classifier: the network behind the accuracy of generated digits and FID
(diffedu.metrics), trained by `python -m diffedu train mnist-classifier` (diffedu.zoo.mnist_classifier)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MnistClassifier(nn.Module):
    """A small CNN: three conv blocks (28 -> 14 -> 7 -> 3), a 128-unit feature layer, 10 logits."""

    feature_dim = 128

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 128, 3, 3)
            nn.Flatten(), nn.Linear(128 * 3 * 3, self.feature_dim), nn.ReLU(),  # (B, 128) features
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(self.feature_dim, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, 128) of images (B, 1, 28, 28) in [-1, 1]."""
        if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected MNIST-shaped images (B, 1, 28, 28) in [-1, 1], got {tuple(images.shape)}")
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(images)))


def classification_loss(model: MnistClassifier, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """Cross-entropy on a batch (images, labels), each image shifted by up to 2 pixels
    (random translation: cheap augmentation that lifts test accuracy past 99%)."""
    images, labels = batch
    shifts = torch.randint(-2, 3, (2,), generator=generator).tolist()
    images = torch.roll(F.pad(images, (2, 2, 2, 2), value=-1.0), shifts=shifts, dims=(2, 3))[:, :, 2:-2, 2:-2]
    return F.cross_entropy(model(images), labels)
