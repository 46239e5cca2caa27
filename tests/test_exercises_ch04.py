"""Chapter 04 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import math

import pytest
import torch

from diffedu.exercises import ExerciseError, ch04


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted(capsys):
    assert ch04.check_reparameterize(stub) is False
    assert ch04.check_kl(stub) is False
    assert ch04.check_psnr_answer(...) is False
    assert capsys.readouterr().out.count("not attempted yet") == 3


def test_reference_solutions_pass():
    assert ch04.check_reparameterize(ch04.solution_reparameterize) is True
    assert ch04.check_kl(ch04.solution_kl) is True
    assert ch04.check_psnr_answer(ch04.SOLUTION_4_3) is True
    assert ch04.check_psnr_answer(23.98) is True  # rounded by hand
    assert ch04.check_psnr_answer(24) is True
    assert ch04.check_psnr_answer(torch.tensor(23.979)) is True


def test_wrong_answers_get_hints():
    with pytest.raises(ExerciseError, match="variance"):
        ch04.check_reparameterize(lambda m, lv, e: m + lv.exp() * e)
    with pytest.raises(ExerciseError, match="gradients"):
        ch04.check_reparameterize(lambda m, lv, e: (m + torch.exp(0.5 * lv) * e).detach())
    with pytest.raises(ExerciseError, match="both mean and log_var"):
        ch04.check_reparameterize(lambda m, lv, e: m.detach() + torch.exp(0.5 * lv) * e)
    with pytest.raises(ExerciseError, match="1/2"):
        ch04.check_kl(lambda m, lv: 2 * ch04.solution_kl(m, lv))
    with pytest.raises(ExerciseError, match="sum over the latent"):
        ch04.check_kl(lambda m, lv: 0.5 * (m.pow(2) + lv.exp() - 1 - lv).flatten(1).mean(1))
    with pytest.raises(ExerciseError, match="shape"):
        ch04.check_kl(lambda m, lv: 0.5 * (m.pow(2) + lv.exp() - 1 - lv).sum())
    with pytest.raises(ExerciseError, match="10, not 20"):
        ch04.check_psnr_answer(20 * math.log10(250))
    with pytest.raises(ExerciseError, match="4.6"):
        ch04.check_psnr_answer(30.0)
