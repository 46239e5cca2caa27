"""The hand-written LoRA layer (diffedu/sd/lora.py) against PEFT's, and its algebra."""

import pytest
import torch
from torch import nn

from diffedu.sd.lora import LoRALinear


def test_a_fresh_lora_layer_is_its_base_layer():
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    layer = LoRALinear(base, rank=4, alpha=8)
    x = torch.randn(5, 12)
    assert torch.equal(layer(x), base(x))  # B = 0
    assert [name for name, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]


def test_hand_written_lora_equals_peft_lora():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(12, 10))
    reference = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["0"], lora_dropout=0.0))
    peft_layer = reference.base_model.model[0]
    with torch.no_grad():
        peft_layer.lora_B["default"].weight.normal_()  # trained-looking B: PEFT starts it at zero too
    mine = LoRALinear(nn.Linear(12, 10), rank=4, alpha=8)
    with torch.no_grad():
        mine.base.weight.copy_(peft_layer.base_layer.weight)
        mine.base.bias.copy_(peft_layer.base_layer.bias)
        mine.lora_A.copy_(peft_layer.lora_A["default"].weight)
        mine.lora_B.copy_(peft_layer.lora_B["default"].weight)
    x = torch.randn(7, 3, 12)
    assert mine.scaling == peft_layer.scaling["default"] == 2.0
    assert torch.allclose(mine(x), reference(x), atol=1e-6)
    merged = reference.merge_and_unload()[0]  # PEFT's fuse
    assert torch.allclose(mine.merged_weight(), merged.weight, atol=1e-6)


def test_merged_weight_computes_the_same_and_counts_are_low_rank():
    torch.manual_seed(2)
    layer = LoRALinear(nn.Linear(64, 32, bias=False), rank=2, alpha=2)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 64)
    assert torch.allclose(layer(x), x @ layer.merged_weight().T, atol=1e-5)
    assert layer.trainable_fraction() == pytest.approx(2 * (64 + 32) / (64 * 32))
    with pytest.raises(ValueError, match="rank must be in 1..32"):
        LoRALinear(nn.Linear(64, 32), rank=40, alpha=1)


def test_peft_adapters_on_the_mini_sd_unet_start_as_the_unet():
    from peft import LoraConfig

    from diffedu import zoo

    pipe = zoo.load("mini-sd")
    unet = pipe.unet
    sample = torch.randn(2, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size,
                         generator=torch.Generator().manual_seed(0))
    text = torch.randn(2, 4, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    timestep = torch.tensor([500, 100])
    with torch.no_grad():
        before = unet(sample, timestep, text).sample
    total = sum(p.numel() for p in unet.parameters())
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    trainable = sum(p.numel() for name, p in unet.named_parameters() if "lora_" in name)
    with torch.no_grad():
        after = unet(sample, timestep, text).sample
    assert torch.allclose(before, after, atol=1e-5)  # every B starts at zero
    assert 0 < trainable < 0.1 * total
