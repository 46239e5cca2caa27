"""Chapter 09's library (diffedu/sd/finetune.py): LoRA, textual inversion and ControlNet on mini-sd,
each saved in Diffusers' format and read back by Diffusers' own loaders."""

import pytest
import torch

from diffedu.course.data import load_mnist
from diffedu.sd import adaptation, finetune, mini
from diffedu.train import TrainConfig

TINY = TrainConfig(train_steps=3, batch_size=8, lr=1e-2, warmup_steps=1, checkpoint_every=100)


@pytest.fixture()
def pipe():
    return mini.load_pipeline()


@pytest.fixture(scope="module")
def digits():
    test_set = load_mnist("test")
    return test_set.images[:32], test_set.labels[:32]


def text_states(pipe, prompt: str) -> torch.Tensor:
    """What the UNet sees of a prompt, through the pipeline's own prompt encoding (which rewrites
    multi-vector tokens)."""
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(prompt, "cpu", 1, False)
    return embeds


def test_caption_ids_rows_are_the_templates_captions(pipe):
    ids = finetune.caption_ids(pipe.tokenizer, ["a bold handwritten {digit}", "{word}"])
    assert ids.shape == (2, 10, mini.MAX_TOKENS)
    assert torch.equal(ids[0, 3], mini.tokenize(pipe.tokenizer, ["a bold handwritten 3"])[0])
    assert torch.equal(ids[1, 7], mini.tokenize(pipe.tokenizer, ["seven"])[0])


def test_lora_training_changes_only_the_adapters_and_round_trips_through_diffusers(pipe, digits, tmp_path):
    images, labels = digits
    before = {name: p.clone() for name, p in pipe.unet.named_parameters()}
    result = finetune.train_lora(pipe, adaptation.bold(images), labels, TINY, progress=False)
    trained = {name for name, p in result.model.unet.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in name for name in trained)
    for name, p in result.model.unet.named_parameters():
        if "lora_" not in name:  # PEFT renames the wrapped weight ...base_layer.weight
            original = name.replace(".base_layer", "")
            assert torch.equal(p, before[original]), name
    path = finetune.save_lora(result.model.unet, tmp_path / "lora")
    assert path.name == "pytorch_lora_weights.safetensors"
    fresh = mini.load_pipeline()
    fresh.load_lora_weights(tmp_path / "lora", adapter_name="bold")
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    token_ids = mini.tokenize(pipe.tokenizer, ["a bold handwritten 3"] * 2)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        expected = result.model(latents, t, token_ids)
        loaded = mini.TextConditionedUNet(fresh.text_encoder, fresh.unet)(latents, t, token_ids)
        fresh.set_adapters(["bold"], [0.0])
        off = mini.TextConditionedUNet(fresh.text_encoder, fresh.unet)(latents, t, token_ids)
        plain = mini.TextConditionedUNet(pipe.text_encoder, mini.load_pipeline().unet)(latents, t, token_ids)
    assert torch.allclose(loaded, expected, atol=1e-5)
    assert not torch.allclose(loaded, off, atol=1e-4)  # the adapter does something ...
    assert torch.allclose(off, plain, atol=1e-5)  # ... and scale 0 is the model without it


def test_the_learned_token_is_the_only_embedding_row_that_changes(pipe, digits, tmp_path):
    images, labels = digits
    original = pipe.text_encoder.get_input_embeddings().weight.clone()  # (V, dim)
    frozen = {name: p.clone() for name, p in pipe.text_encoder.named_parameters()}
    result = finetune.train_token(pipe, adaptation.shear(images), labels, TINY, progress=False, num_vectors=2)
    learned = result.model.text_encoder.get_input_embeddings()
    trainable = [name for name, p in result.model.named_parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0].endswith("token_embedding.vectors")
    assert sum(p.numel() for p in result.model.parameters() if p.requires_grad) == 2 * original.shape[1]
    init = original[pipe.tokenizer.convert_tokens_to_ids(finetune.INIT_WORD)]
    assert not torch.allclose(learned.vectors, init.expand(2, -1))  # the vectors moved
    for name, p in result.model.text_encoder.named_parameters():
        if "token_embedding" not in name:  # every other weight of the text encoder is untouched
            assert torch.equal(p, frozen[name]), name
    assert torch.equal(learned.table.weight[: len(original)], original)  # every old row unchanged
    finetune.save_token(learned, finetune.NEW_TOKEN, tmp_path / "ti")
    fresh = mini.load_pipeline()
    fresh.load_textual_inversion(tmp_path / "ti")
    table = fresh.text_encoder.get_input_embeddings().weight
    assert table.shape[0] == len(original) + 2
    assert torch.equal(table[: len(original)], original)  # the loader changed no old row either
    assert torch.allclose(table[len(original):], learned.vectors)
    prompt = f"a {finetune.NEW_TOKEN} handwritten 3"
    assert torch.allclose(text_states(fresh, prompt), text_states(pipe, prompt), atol=1e-5)


def test_add_token_refuses_a_word_it_cannot_start_from(pipe):
    with pytest.raises(ValueError, match="init_word must be one token"):
        finetune.add_token(pipe.tokenizer, pipe.text_encoder, init_word="bold")


def test_a_fresh_controlnet_leaves_the_pipeline_unchanged(pipe, digits):
    images, labels = digits
    controlnet = finetune.make_controlnet(pipe.unet)
    controlled = finetune.controlnet_pipeline(pipe, controlnet)
    prompts = ["a handwritten 7", "a handwritten 2"]
    control = finetune.control_images(images[:2])
    with_control = finetune.generate(controlled, prompts, steps=4, image=control)
    without = finetune.generate(pipe, prompts, steps=4)
    assert (with_control - without).abs().max() < 1e-5  # the zero convolutions add exactly nothing yet


def test_controlnet_helpers_take_a_one_channel_outline(pipe, digits):
    images, labels = digits
    controlnet = finetune.make_controlnet(pipe.unet)
    assert controlnet.config.conditioning_channels == 3  # what the pipeline makes of a PIL image: RGB
    torch.nn.init.normal_(controlnet.controlnet_mid_block.weight, std=0.1)  # past the zero convolutions' start
    rgb = finetune.control_images(images[:2])  # (2, 3, 32, 32)
    grey = rgb[:, :1]  # (2, 1, 32, 32)
    prompts = ["a handwritten 7", "a handwritten 2"]
    controlled = finetune.controlnet_pipeline(pipe, controlnet)
    from_rgb = finetune.generate(controlled, prompts, steps=2, image=rgb)
    assert not torch.allclose(from_rgb, finetune.generate(pipe, prompts, steps=2), atol=1e-3)  # the condition counts
    assert torch.equal(finetune.generate(controlled, prompts, steps=2, image=grey), from_rgb)
    model = finetune.ControlledUNet(pipe.text_encoder, pipe.unet, controlnet)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t, token_ids = torch.tensor([10, 500]), mini.tokenize(pipe.tokenizer, prompts)
    with torch.no_grad():
        assert torch.equal(model(latents, t, token_ids, grey), model(latents, t, token_ids, rgb))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\) or \(B, 3, H, W\), got \(2, 2, 32, 32\)"):
        finetune.as_rgb(rgb[:, :2])


def test_controlnet_training_trains_only_the_controlnet(pipe, digits, tmp_path):
    images, labels = digits
    unet_before = {name: p.clone() for name, p in pipe.unet.named_parameters()}
    result = finetune.train_controlnet(pipe, images, labels, TINY, progress=False)
    assert all(name.startswith("controlnet.") for name, p in result.model.named_parameters() if p.requires_grad)
    assert all(torch.equal(p, unet_before[name]) for name, p in result.model.unet.named_parameters())
    zero_convs = [p for name, p in result.model.controlnet.named_parameters() if "controlnet_" in name]
    assert any(p.abs().max() > 0 for p in zero_convs)  # the zero convolutions have started to learn
    result.model.controlnet.save_pretrained(tmp_path / "cn")
    from diffusers import ControlNetModel

    loaded = ControlNetModel.from_pretrained(tmp_path / "cn", local_files_only=True)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), result.model.controlnet.state_dict().values()))


def test_edges_run_around_the_strokes_not_on_them(digits):
    images, _ = digits
    edges = adaptation.edges(images)
    assert edges.shape == images.shape
    assert not (adaptation.ink(edges) & adaptation.ink(images)).any()  # a ring outside each stroke
    thick = adaptation.ink(adaptation.bold(images))
    assert not (adaptation.ink(edges) & ~thick).any() and not (adaptation.ink(images) & ~thick).any()  # both inside it
    assert adaptation.ink(edges).sum() > 0.5 * adaptation.ink(images).sum()  # a real outline, not a few dots
    control = finetune.control_images(images)
    assert control.shape == (32, 3, 32, 32) and set(control.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(control[:, :1], (mini.pad_to_32(edges) + 1) / 2) and (control == control[:, :1]).all()  # grey


def test_spelled_out_matches_the_pipelines_rewriting(pipe):
    finetune.add_token(pipe.tokenizer, pipe.text_encoder, num_vectors=3)
    prompt = f"a {finetune.NEW_TOKEN} handwritten 3"
    assert pipe.maybe_convert_prompt(prompt, pipe.tokenizer) == finetune.spelled_out(prompt, finetune.NEW_TOKEN, 3)
    assert finetune.spelled_out(prompt, finetune.NEW_TOKEN, 1) == prompt


def test_public_adapters_fall_through_their_ids_and_fail_in_one_line():
    from diffedu.sd import hub

    tried = []

    class FakePipe:
        def load_lora_weights(self, model_id, adapter_name=None):
            tried.append((model_id, adapter_name))

        def load_textual_inversion(self, model_id):
            tried.append(model_id)
            raise OSError("gone")

    assert hub.load_adapter(FakePipe(), "lcm-lora") == ("latent-consistency/lcm-lora-sdv1-5", None)
    assert tried == [("latent-consistency/lcm-lora-sdv1-5", "lcm_lora")]
    with pytest.raises(RuntimeError, match="could not load ti-cat-toy from the Hub .*OSError"):
        hub.load_adapter(FakePipe(), "ti-cat-toy")
    with pytest.raises(ValueError, match="choose one of lcm-lora, controlnet-canny, ti-cat-toy"):
        hub.load_adapter(FakePipe(), "lora-of-everything")
    assert not any("runwayml" in model_id for _, ids in hub.ADAPTERS.values() for model_id in ids)


# --- the shipped adaptations (data/checkpoints), through Diffusers' own loaders, offline

ADAPTATIONS = ("mini-sd-lora-bold", "mini-sd-ti-slanted", "mini-sd-controlnet-edges")


@pytest.mark.parametrize("name", ADAPTATIONS)
def test_shipped_adaptation_is_small_and_has_a_card(name):
    from diffedu import zoo
    from diffedu.models.checkpoints import checkpoint_dir

    card = zoo.card(name)
    folder = checkpoint_dir() / name
    assert card["command"] == f"python -m diffedu train {name}" and card["finished"]
    assert card["wall_time_minutes"] <= 15  # the budget per training run on the 2-core CPU
    assert card["base"]["name"] == "mini-sd" and card["metrics"]
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert on_disk == card["folder_bytes"] < 3_000_000
    assert set(card["sha256"]) == {str(p.relative_to(folder.parent)) for p in folder.rglob("*") if p.is_file()}
    assert 0 < card["parameters"]["trainable"] < card["parameters"]["total"]


def test_shipped_lora_loads_with_load_lora_weights_and_thickens_strokes():
    from diffedu import zoo

    pipe = zoo.load("mini-sd-lora-bold")  # pipe.load_lora_weights("data/checkpoints/mini-sd-lora-bold")
    prompts, labels = finetune.digit_prompts(finetune.LORA_TEMPLATE, 2)
    pipe.set_adapters(["bold"], [0.0])
    without = finetune.generate(pipe, prompts, steps=10)
    pipe.set_adapters(["bold"], [1.0])
    with_lora = finetune.generate(pipe, prompts, steps=10)
    assert adaptation.ink_fraction(with_lora).mean() > 1.2 * adaptation.ink_fraction(without).mean()  # card: x1.5 on 1,000


def test_shipped_token_loads_with_load_textual_inversion_and_adds_one_row():
    from diffedu import zoo

    pipe = zoo.load("mini-sd-ti-slanted")  # pipe.load_textual_inversion("data/checkpoints/mini-sd-ti-slanted")
    base = mini.load_pipeline()
    old = base.text_encoder.get_input_embeddings().weight
    new = pipe.text_encoder.get_input_embeddings().weight
    assert new.shape == (old.shape[0] + 1, old.shape[1]) and torch.equal(new[:-1], old)
    assert pipe.tokenizer.tokenize(f"a {finetune.NEW_TOKEN} 3")[1] == finetune.NEW_TOKEN


def test_shipped_controlnet_loads_with_from_pretrained_and_follows_outlines():
    from diffusers import StableDiffusionControlNetPipeline

    from diffedu import zoo

    pipe = zoo.load("mini-sd-controlnet-edges")  # ControlNetModel.from_pretrained("data/checkpoints/mini-sd-controlnet-edges")
    assert isinstance(pipe, StableDiffusionControlNetPipeline)
    test_set = load_mnist("test")
    sources, labels = test_set.images[:20], test_set.labels[:20]
    drawn = finetune.generate(pipe, [f"a handwritten {d}" for d in labels.tolist()], steps=10,
                              image=finetune.control_images(sources))
    assert adaptation.ink_iou(drawn, sources).mean() > 0.5  # card: 500 outlines at 20 steps


def test_shipped_controlnet_takes_a_pil_image_through_diffusers_own_loaders():
    """As Diffusers' documentation shows it: ControlNetModel and StableDiffusionControlNetPipeline
    from_pretrained (offline), the condition a PIL image, which the pipeline converts to RGB."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    from diffedu.models.checkpoints import checkpoint_dir

    controlnet = ControlNetModel.from_pretrained(checkpoint_dir() / "mini-sd-controlnet-edges", local_files_only=True)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(checkpoint_dir() / "mini-sd", controlnet=controlnet,
                                                             local_files_only=True, safety_checker=None,
                                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    control = finetune.control_images(load_mnist("test").images[:1])  # (1, 3, 32, 32) in {0, 1}
    grey = Image.fromarray((control[0, 0] * 255).byte().numpy(), mode="L")  # white outline on black, 32 x 32

    def draw(image, output_type="pil"):
        return pipe("a handwritten 7", image=image, num_inference_steps=2, guidance_scale=3.0, output_type=output_type,
                    generator=torch.Generator().manual_seed(0)).images

    for image in (grey, grey.convert("RGB")):
        drawn = draw(image)[0]
        assert isinstance(drawn, Image.Image) and drawn.size == (32, 32)
    assert torch.equal(draw(grey, "pt"), draw(control, "pt"))  # the same picture as the course's tensor condition


def test_a_missing_or_damaged_adaptation_says_what_to_do(tmp_path):
    import shutil

    from diffedu.models.checkpoints import CheckpointError, checkpoint_dir
    from diffedu.zoo import mini_sd_lora_bold

    with pytest.raises(CheckpointError, match="python -m diffedu train mini-sd-lora-bold"):
        mini_sd_lora_bold.load(folder=tmp_path)
    for item in ("mini-sd-lora-bold", "mini-sd-lora-bold.json"):
        source = checkpoint_dir() / item
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, tmp_path / item)
    weights = tmp_path / "mini-sd-lora-bold" / finetune.LORA_FILE
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="damaged"):
        mini_sd_lora_bold.load(folder=tmp_path)


def test_chapters_make_temporary_folders_that_delete_themselves():
    """Chapters 03, 04 and 09 once left 0.1-11 MB folders in /tmp on every run (tempfile.mkdtemp for
    the live demos' checkpoints and chapter 09's LoRA file): a temporary folder in a chapter is a
    `with tempfile.TemporaryDirectory() as folder:` block, which deletes it afterwards."""
    import json
    from pathlib import Path

    chapters = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb"))
    assert len(chapters) >= 10
    leaving = [f"{path.name}, cell {cell.get('id', index)}" for path in chapters
               for index, cell in enumerate(json.loads(path.read_text())["cells"])
               if cell["cell_type"] == "code" and any(call in "".join(cell["source"]) for call in ("mkdtemp(", "mkstemp("))]
    assert not leaving, f"temporary files or folders that nothing deletes: {leaving}"
