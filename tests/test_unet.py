"""The chapter-03 UNet: shapes, conditioning, guidance, and the diffusion loss."""

import pytest
import torch

from diffedu.guidance import guided_predictor
from diffedu.losses import noise_prediction_loss, timestep_weights
from diffedu.models.unet import UNet, UNetConfig
from diffedu.schedules import make_schedule

SMALL = UNetConfig(base_channels=16, channel_mults=(1, 2), attention_heads=2, groups=4)


@pytest.mark.parametrize("config", [SMALL, UNetConfig(base_channels=16, channel_mults=(1, 2, 2), groups=4, attention_heads=2,
                                                     patch_size=2, num_classes=None)])
def test_output_has_the_input_shape(config):
    model = UNet(config)
    x = torch.randn(3, 1, 28, 28)
    labels = torch.tensor([0, 5, 10]) if config.num_classes else None
    assert model(x, torch.tensor([0, 500, 999]), labels).shape == x.shape


def test_fresh_model_predicts_zero_and_labels_change_the_output_after_training_a_bit():
    model = UNet(SMALL)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 10])
    assert model(x, t, torch.tensor([1, 2])).abs().max() == 0  # zero-initialised output conv
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    a, b = model(x, t, torch.tensor([1, 1])), model(x, t, torch.tensor([2, 2]))
    assert not torch.allclose(a, b)


def test_guidance_combines_conditional_and_unconditional_predictions():
    torch.manual_seed(0)
    model = UNet(SMALL)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x, t, labels = torch.randn(2, 1, 28, 28), torch.tensor([300, 300]), torch.tensor([3, 7])
    cond = model(x, t, labels)
    uncond = model(x, t, torch.full_like(labels, model.null_class))
    for w in (0.0, 1.0, 2.5):
        guided = guided_predictor(model, labels, w)(x, t)
        assert torch.allclose(guided, uncond + w * (cond - uncond), atol=1e-5)


def test_bad_inputs_are_explained():
    model = UNet(SMALL)
    with pytest.raises(ValueError, match="x_t must have shape"):
        model(torch.zeros(2, 3, 28, 28), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be in 0..10"):
        model(torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long), torch.tensor([11]))
    with pytest.raises(ValueError, match="unconditional"):
        UNet(UNetConfig(base_channels=16, groups=4, attention_heads=2, num_classes=None))(
            torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long), torch.tensor([1]))
    with pytest.raises(ValueError, match="class-conditional"):
        guided_predictor(torch.nn.Identity(), torch.tensor([1]), 2.0)


def test_min_snr_weights_and_loss():
    schedule = make_schedule("cosine")
    t = torch.tensor([0, 500, 999])
    w = timestep_weights(schedule, t, "min_snr", 5.0)
    snr = schedule.snr[t]
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert w[0] < 0.01 and w[2] == 1.0
    with pytest.raises(ValueError, match="unknown loss weighting"):
        timestep_weights(schedule, t, "snr+1")
    loss = noise_prediction_loss(UNet(SMALL), torch.zeros(4, 1, 28, 28), schedule, torch.Generator().manual_seed(0),
                                 labels=torch.tensor([0, 1, 2, 10]), weighting="min_snr")
    assert loss.ndim == 0 and loss > 0
