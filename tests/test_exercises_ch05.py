"""Chapter 05 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

from diffedu.exercises import ExerciseError, ch05


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted(capsys):
    assert ch05.check_guided_noise(stub) is False
    assert ch05.check_latent_shape(...) is False
    assert ch05.check_img2img_steps(...) is False
    assert capsys.readouterr().out.count("not attempted yet") == 3


def test_reference_solutions_pass():
    assert ch05.check_guided_noise(ch05.solution_guided_noise) is True
    assert ch05.check_latent_shape(ch05.SOLUTION_5_2) is True
    assert ch05.check_latent_shape([1, 4, 96, 64]) is True
    assert ch05.check_img2img_steps(ch05.SOLUTION_5_3) is True


def test_the_img2img_answer_is_what_diffusers_does():
    """Exercise 5.3's answer, from the pipeline's own get_timesteps."""
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(50)
    pipe = StableDiffusionImg2ImgPipeline.__new__(StableDiffusionImg2ImgPipeline)
    pipe.scheduler = scheduler
    timesteps, steps = pipe.get_timesteps(50, 0.6, "cpu")
    assert steps == len(timesteps) == ch05.SOLUTION_5_3


def test_wrong_answers_get_hints():
    with pytest.raises(ExerciseError, match="empty-prompt prediction"):
        ch05.check_guided_noise(lambda e, t, w: t + w * (t - e))
    with pytest.raises(ExerciseError, match="direction"):
        ch05.check_guided_noise(lambda e, t, w: e + w * (e - t))
    with pytest.raises(ExerciseError, match="height comes first"):
        ch05.check_latent_shape((1, 4, 64, 96))
    with pytest.raises(ExerciseError, match="4 channels"):
        ch05.check_latent_shape((1, 4, 768, 512))
    with pytest.raises(ExerciseError, match="0.6 of 50"):
        ch05.check_img2img_steps(20)
    with pytest.raises(ExerciseError, match="one call per step"):
        ch05.check_img2img_steps(60)
    with pytest.raises(ExerciseError, match="whole number"):
        ch05.check_img2img_steps("thirty")
    assert torch.equal(ch05.solution_guided_noise(torch.zeros(1), torch.ones(1), 2.0), torch.full((1,), 2.0))
