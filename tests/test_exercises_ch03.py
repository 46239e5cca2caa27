"""Chapter 03 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import pytest
import torch

from diffedu.exercises import ExerciseError, ch03


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted(capsys):
    assert ch03.check_sinusoidal_embedding(stub) is False
    assert ch03.check_guided_eps(stub) is False
    assert ch03.check_conv_parameters(...) is False
    assert capsys.readouterr().out.count("not attempted yet") == 3


def test_reference_solutions_pass():
    assert ch03.check_sinusoidal_embedding(ch03.solution_sinusoidal_embedding) is True
    assert ch03.check_guided_eps(ch03.solution_guided_eps) is True
    assert ch03.check_conv_parameters(ch03.SOLUTION_3_3) is True


def test_wrong_answers_get_hints():
    swapped = lambda t, dim: torch.cat(ch03.solution_sinusoidal_embedding(t, dim).chunk(2, dim=1)[::-1], dim=1)
    with pytest.raises(ExerciseError, match="sines first"):
        ch03.check_sinusoidal_embedding(swapped)
    with pytest.raises(ExerciseError, match="start from the unconditional"):
        ch03.check_guided_eps(lambda c, u, w: c + w * (c - u))
    with pytest.raises(ExerciseError, match="returned None"):
        ch03.check_guided_eps(lambda c, u, w: None)
    with pytest.raises(ExerciseError, match="bias"):
        ch03.check_conv_parameters(64 * 128 * 9)
