"""Building a model leaves PyTorch's global random stream alone, and still gives the same initial
weights every time (the ones the shipped models were trained from)."""

import torch

from diffedu.models import build_seeded
from diffedu.models.classifier import MnistClassifier
from diffedu.models.unet import UNet
from diffedu.zoo import mnist_ldm, mnist_unet


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _old_way(make, seed=0):
    torch.manual_seed(seed)  # what the builders did before: the weights must not change
    return make()


def test_building_the_unet_keeps_the_random_stream_and_the_weights():
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    unet = mnist_unet.build()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert _same_weights(unet, _old_way(lambda: UNet(mnist_unet.MODEL_CONFIG)))
    assert not _same_weights(mnist_unet.build(seed=1), unet)


def test_build_seeded_for_the_other_models():
    for make in (lambda: UNet(mnist_ldm.MODEL_CONFIG), MnistClassifier):
        torch.manual_seed(99)
        before = torch.random.get_rng_state()
        built = build_seeded(make, 3)
        assert torch.equal(torch.random.get_rng_state(), before)
        assert _same_weights(built, _old_way(make, 3))


def test_building_mini_sd_keeps_the_random_stream_and_the_weights():
    from diffedu.sd import mini

    tokenizer = mini.load_tokenizer()
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    parts = mini.build_parts(tokenizer)
    assert torch.equal(torch.random.get_rng_state(), before)
    from diffusers import AutoencoderKL, UNet2DConditionModel  # the parts built the old way
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    old = (AutoencoderKL(**mini.VAE_CONFIG),
           CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                        **mini.TEXT_CONFIG)),
           UNet2DConditionModel(**mini.UNET_CONFIG))
    assert all(_same_weights(a, b) for a, b in zip(parts, old))


def test_importing_mini_sd_leaves_transformers_logging_alone():
    import subprocess
    import sys

    code = ("from transformers.utils import logging; logging.set_verbosity_info(); import diffedu.sd.mini; "
            "print(logging.get_verbosity())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "20"  # logging.INFO, as the caller set it
