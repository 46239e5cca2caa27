"""The language the exercise checkers answer in: English, or Chinese in the Chinese chapters.

    from diffedu.exercises import use_language
    use_language("zh")   # what the first code cell of every chapter in chapters/zh/ does

A checker builds its message in English, as before; `translate` then looks the message up in the
language's catalogue, diffedu/exercises/locale/<language>.po, as gettext does. Each catalogue entry
is a message template taken from the checkers' source by `./course.sh translate`, with {0}, {1}, ...
where an f-string puts its values:

    msgid  "at t = {0} your error is {1}, the checker measures about {2}: ..."
    msgstr "在 t = {0} 时你的误差是 {1}，检查器测得约为 {2}：..."

A message that two pieces were joined into (a prefix such as "at k_from = 3: " and a hint) is
translated piece by piece, and a value that is itself a message (a hint inside "Exercise 3.2: not
yet — {1}") is translated too; numbers and names stay as they are. A message with no entry stays
English. Library errors outside the checkers stay English, as PyTorch's do.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

LOCALE = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "zh")
_language = "en"


@dataclass(frozen=True)
class Template:
    """One catalogue entry: the English template as a pattern, its translation, how many of its
    characters are fixed text, its pieces of fixed text, and those it starts and ends with ("" if a value)."""

    pattern: re.Pattern
    translation: str
    fixed: int
    pieces: tuple[str, ...]
    prefix: str
    suffix: str


def use_language(language: str) -> None:
    """Make the checkers answer in `language`: "en" (the default) or "zh" (简体中文)."""
    global _language
    if language not in LANGUAGES:
        raise ValueError(f"the checkers speak {' and '.join(repr(name) for name in LANGUAGES)}, not {language!r}")
    _language = language


def current_language() -> str:
    return _language


@functools.lru_cache(maxsize=None)
def _catalogue(language: str) -> list[Template]:
    """The language's message templates, those with the most fixed text first."""
    import polib

    path = LOCALE / f"{language}.po"
    if not path.exists():
        return []
    entries = []
    for entry in polib.pofile(str(path)):
        if entry.obsolete or not entry.msgstr or "fuzzy" in entry.flags:
            continue
        pieces = re.split(r"(\{\d+\})", entry.msgid)
        pattern = "".join("(?P<v%s>.*?)" % piece[1:-1] if re.fullmatch(r"\{\d+\}", piece) else re.escape(piece)
                          for piece in pieces)
        fixed = sum(len(piece) for piece in pieces if not re.fullmatch(r"\{\d+\}", piece))
        if fixed == 0:  # "{0}: {1}" and the like: nothing to translate
            continue
        texts = tuple(piece for piece in pieces if piece and not re.fullmatch(r"\{\d+\}", piece))
        entries.append(Template(re.compile(pattern, re.S), entry.msgstr, fixed, texts, pieces[0], pieces[-1]))
    return sorted(entries, key=lambda template: -template.fixed)


def translate(message: str, language: str | None = None) -> str:
    """`message` in `language` (default: the one `use_language` chose): split into the catalogue's templates
    that cover the most of it, one after another, each with its values translated in turn where they can be."""
    language = language or _language
    if language == "en" or not message:
        return message
    return _translated(message, language)[1]


@functools.lru_cache(maxsize=4096)
def _translated(message: str, language: str) -> tuple[int, str]:
    """(characters of template text covered, translation) of `message`: consecutive pieces, each a template's
    match (whose values are translated the same way) or, where nothing matches, the rest as it is."""
    catalogue = [template for template in _catalogue(language) if all(piece in message for piece in template.pieces)]

    @functools.lru_cache(maxsize=None)
    def best(start: int) -> tuple[int, str]:  # the best translation of message[start:]
        if start == len(message):
            return 0, ""
        choices = [(0, message[start:])]  # the rest, untranslated
        for template in catalogue:
            if not message.startswith(template.prefix, start):
                continue
            for end in range(len(message), start, -1):
                if template.suffix and not message.endswith(template.suffix, start, end):
                    continue
                match = template.pattern.fullmatch(message, start, end)
                if match is None:
                    continue
                values = {name[1:]: _translated(value, language) if value else (0, value)
                          for name, value in match.groupdict().items()}
                text = re.sub(r"\{(\d+)\}", lambda number: values[number.group(1)][1] if number.group(1) in values
                              else number.group(0), template.translation)
                covered, rest = best(end)
                choices.append((template.fixed + sum(value[0] for value in values.values()) + covered, text + rest))
        return max(choices, key=lambda choice: choice[0])

    return best(0)
