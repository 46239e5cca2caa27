"""Captions for the text-to-digit model of chapter 05 ("mini Stable Diffusion").

Each MNIST training digit gets a caption drawn at random from a few templates, so the model
learns that "a handwritten 7", "the digit seven" and "seven" mean the same thing. An empty
caption ("") stands for "no prompt": classifier-free guidance (3.3) contrasts the prompt
with it, exactly as Stable Diffusion does.
"""

from __future__ import annotations


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = (
    "a handwritten {digit}",
    "a handwritten {word}",
    "the digit {word}",
    "the digit {digit}",
    "the number {word}",
    "a drawing of the number {digit}",
    "{word}",
    "{digit}",
)
EVAL_TEMPLATE = "a handwritten {digit}"  # the prompt of the adherence target: "a handwritten 3"


def caption(label: int, template: str) -> str:
    """The caption of one digit with one template, e.g. caption(7, "the digit {word}") = "the digit seven"."""
    if not 0 <= int(label) <= 9:
        raise ValueError(f"label must be a digit 0-9, got {label}")
    return template.format(digit=int(label), word=DIGIT_WORDS[int(label)])


def all_captions() -> list[str]:
    """The empty caption, then every caption the templates can produce (80), template by template
    with digits 0-9 in turn: index 1 + 10 * template + digit (the training table relies on this order)."""
    return [""] + [caption(label, template) for template in TEMPLATES for label in range(10)]
