"""Chapter 05's library: the mini Stable Diffusion, the model-id registry with its offline
fallback, and the GPU settings chooser (GPU-only paths are skipped without a GPU)."""

import time

import pytest
import torch
from diffusers import DDPMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline

from diffedu.course.captions import TEMPLATES, all_captions, caption
from diffedu.sd import hub
from diffedu.sd.memory import PipelineSettings, apply_settings, choose_settings, peak_memory_mb
from diffedu.sd.mini import (
    MAX_TOKENS, caption_table, crop_to_28, load_pipeline, load_tokenizer, pad_to_32, prompt_adherence,
    scaled_linear_schedule, tokenize,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# --- captions and tokenizer


def test_captions_cover_every_digit_and_template():
    assert caption(7, "the digit {word}") == "the digit seven" and caption(3, "a handwritten {digit}") == "a handwritten 3"
    assert len(all_captions()) == 1 + 10 * len(TEMPLATES)
    assert all_captions()[0] == ""  # the empty caption, for guidance
    with pytest.raises(ValueError, match="digit 0-9"):
        caption(12, "{digit}")


def test_shipped_tokenizer_is_clip_bpe_and_never_fails():
    tokenizer = load_tokenizer()
    assert tokenizer.tokenize("a handwritten 7") == ["a</w>", "handwritten</w>", "7</w>"]  # as CLIP's full vocabulary
    assert tokenizer.tokenize("the digit seven") == ["the</w>", "digit</w>", "seven</w>"]
    unknown = tokenizer.tokenize("zebra")  # not in the pruned vocabulary: byte-level pieces, never <unk>
    assert "".join(unknown).replace("</w>", "") == "zebra" and tokenizer.unk_token not in unknown
    ids = tokenize(tokenizer, ["", "a handwritten 7"])
    assert ids.shape == (2, MAX_TOKENS)
    assert ids[0, 0] == tokenizer.bos_token_id and ids[0, 1] == tokenizer.eos_token_id  # the empty prompt
    assert caption_table(tokenizer).shape == (1 + 10 * len(TEMPLATES), MAX_TOKENS)


def test_scaled_linear_schedule_matches_diffusers():
    ours = scaled_linear_schedule().alpha_bar.double()
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    assert torch.allclose(ours, theirs.double(), atol=1e-6)


def test_pad_and_crop_are_inverse():
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    padded = pad_to_32(images)
    assert padded.shape == (3, 1, 32, 32) and (padded[..., :2, :] == -1).all()
    assert torch.equal(crop_to_28(padded), images)


# --- the shipped mini Stable Diffusion


@pytest.fixture(scope="module")
def mini_pipe():
    return load_pipeline()


def test_mini_sd_loads_offline_and_is_reproducible(mini_pipe):
    assert isinstance(mini_pipe, StableDiffusionPipeline)
    kwargs = dict(num_inference_steps=4, guidance_scale=3.0, output_type="pt")
    a = mini_pipe(["a handwritten 3", "seven"], generator=torch.Generator().manual_seed(1), **kwargs).images
    b = mini_pipe(["a handwritten 3", "seven"], generator=torch.Generator().manual_seed(1), **kwargs).images
    assert a.shape == (2, 1, 32, 32) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1


def test_mini_sd_follows_prompts(mini_pipe):
    """A small version of the card's adherence measurement (the target there: >= 95% at w = 3)."""
    result = prompt_adherence(mini_pipe, per_digit=10, guidance=3.0, steps=10, batch_size=10)
    assert result["mean"] >= 0.85, result["per_digit"]


def test_missing_checkpoint_says_how_to_get_it(tmp_path):
    from diffedu.models.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match="python -m diffedu train mini-sd"):
        load_pipeline(folder=tmp_path)


# --- registry and offline fallback


def test_registry_lists_live_mirrors_not_the_deleted_id():
    assert hub.model_ids("sd-v1.5")[0] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert "sd-legacy/stable-diffusion-inpainting" in hub.model_ids("sd-v1.5-inpainting")
    assert not any("runwayml" in model_id for ids in hub.REGISTRY.values() for model_id in ids)
    with pytest.raises(ValueError, match="unknown model kind"):
        hub.model_ids("sd-v9")
    with pytest.raises(ValueError, match="unknown model kind"):
        hub.load_text_to_image("sd-v9", torch.device("cpu"), prefer="offline")


def test_backend_choice(monkeypatch):
    def network_must_not_be_used(*args, **kwargs):
        raise AssertionError("no network check expected")

    monkeypatch.setattr(hub, "can_reach", network_must_not_be_used)
    assert hub.choose_backend(torch.device("cpu"), "offline")[0] == "offline"
    backend, reason = hub.choose_backend(torch.device("cpu"), "auto")  # a CPU never tries the Hub by default
    assert backend == "offline" and "no CUDA GPU" in reason
    monkeypatch.setattr(hub, "can_reach", lambda url, timeout: False)
    backend, reason = hub.choose_backend(torch.device("cuda"), "auto")
    assert backend == "offline" and "not reachable" in reason
    monkeypatch.setattr(hub, "can_reach", lambda url, timeout: True)
    assert hub.choose_backend(torch.device("cuda"), "auto")[0] == "online"
    monkeypatch.setenv("DIFFEDU_SD", "offline")
    assert hub.choose_backend(torch.device("cuda"))[0] == "offline"
    with pytest.raises(ValueError, match="must be one of"):
        hub.choose_backend(torch.device("cuda"), "maybe")


def test_no_network_falls_back_to_the_mini_model_with_one_message(monkeypatch, capsys):
    monkeypatch.setattr(hub, "can_reach", lambda url, timeout: False)
    start = time.perf_counter()
    loaded = hub.load_text_to_image("sd-v1.5", torch.device("cpu"), prefer="online")
    assert time.perf_counter() - start < 30  # loads from disk; never waits for the network
    assert not loaded.online and loaded.source == "offline: mini-sd"
    assert isinstance(loaded.pipe, StableDiffusionPipeline)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "not reachable" in out[0]


def test_failing_ids_fall_through_to_the_offline_model(monkeypatch, capsys):
    """The Hub answers, but every registry id fails (deleted, gated, a timeout): still a pipeline."""
    tried = []

    def fail(model_id, **kwargs):
        tried.append(model_id)
        raise OSError(f"{model_id} is not a valid model identifier")

    monkeypatch.setattr(hub, "can_reach", lambda url, timeout: True)
    monkeypatch.setattr(StableDiffusionInpaintPipeline, "from_pretrained", staticmethod(fail))
    loaded = hub.load_text_to_image("sd-v1.5-inpainting", torch.device("cpu"), prefer="online")
    assert tried == list(hub.model_ids("sd-v1.5-inpainting"))
    assert not loaded.online and isinstance(loaded.pipe, StableDiffusionInpaintPipeline)
    assert "OSError" in capsys.readouterr().out


# --- GPU settings


def test_settings_chooser():
    cpu = choose_settings(torch.device("cpu"))
    assert cpu.dtype == torch.float32 and not cpu.attention_slicing and not cpu.cpu_offload
    big = choose_settings(torch.device("cuda"), memory_gb=16)
    assert big.dtype == torch.float16 and not big.attention_slicing and not big.cpu_offload
    mid = choose_settings(torch.device("cuda"), memory_gb=6)
    assert mid.attention_slicing and not mid.cpu_offload
    small = choose_settings(torch.device("cuda"), memory_gb=3)
    assert small.attention_slicing
    assert small.cpu_offload or "pip install accelerate" in small.reason  # offload needs accelerate
    assert choose_settings(torch.device("mps")).dtype == torch.float16
    with pytest.raises(ValueError, match="positive number of GB"):
        choose_settings(torch.device("cuda"), memory_gb=0)


def test_attention_slicing_changes_memory_not_results(mini_pipe):
    kwargs = dict(num_inference_steps=3, guidance_scale=3.0, output_type="pt")
    plain = mini_pipe(["four"] * 2, generator=torch.Generator().manual_seed(0), **kwargs).images
    sliced_pipe = StableDiffusionPipeline(**mini_pipe.components)
    sliced_pipe.set_progress_bar_config(disable=True)
    try:
        apply_settings(sliced_pipe, PipelineSettings(torch.device("cpu"), torch.float32, True, False, "test"))
        assert any(type(p).__name__ == "SlicedAttnProcessor" for p in sliced_pipe.unet.attn_processors.values())
        sliced = sliced_pipe(["four"] * 2, generator=torch.Generator().manual_seed(0), **kwargs).images
    finally:
        mini_pipe.disable_attention_slicing()  # the components are shared: switch it back off
    assert torch.allclose(plain, sliced, atol=1e-5)


def test_peak_memory_is_reported_on_cpu():
    assert peak_memory_mb(torch.device("cpu")) > 10  # this process holds torch: tens of MB at least


@needs_cuda
def test_gpu_settings_on_a_real_gpu():
    settings = choose_settings(torch.device("cuda"))
    pipe = apply_settings(load_pipeline(), settings)  # a fresh copy: fp16 and offload hooks stay out of other tests
    images = pipe(["seven"], num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (1, 1, 32, 32) and torch.isfinite(images).all()
    assert peak_memory_mb(torch.device("cuda")) > 0
