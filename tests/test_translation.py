"""The Chinese edition (chapters/zh/, README.zh.md, docs/workshop.zh.md, the checkers' Chinese feedback)
is current and keeps what a translation must not change. tools/translate.py writes it from the English
files and the PO files in i18n/zh/ (and diffedu/exercises/locale/zh.po); see its docstring."""

import re
import sys
import tokenize
from pathlib import Path

import nbformat
import polib
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import translate  # noqa: E402

from diffedu.exercises import ch03, use_language  # noqa: E402
from diffedu.exercises.language import current_language  # noqa: E402
from diffedu.exercises.language import translate as translate_message  # noqa: E402

ENGLISH = translate.english_chapters()
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def written():
    """What ./course.sh translate would write, and the problems it finds (the PO files brought up to date)."""
    return translate.outputs()


def catalogs():
    return {source: polib.pofile(str(translate.catalog_path(source)))
            for source in [c.stem for c in ENGLISH] + list(translate.DOCUMENTS) + ["feedback"]}


def test_every_unit_has_a_current_translation(written):
    """No markdown cell, comment, README or workshop paragraph or checker message is missing or stale."""
    _, found, _ = written
    assert not found, f"{len(found)} translations missing or stale (run ./course.sh translate):\n" + "\n".join(found[:40])


def test_the_committed_chinese_files_are_what_the_command_writes(written):
    files, _, _ = written
    stale = [path.relative_to(ROOT).as_posix() for path, text in files.items()
             if not path.exists() or path.read_text() != text]
    assert any(path.suffix == ".po" for path in files) and any(path.suffix == ".ipynb" for path in files)
    assert not stale, f"out of date (run ./course.sh translate and commit what it writes): {stale}"
    assert {path.name for path in (ROOT / "chapters" / "zh").glob("*.ipynb")} == {path.name for path in ENGLISH}


@pytest.mark.parametrize("source", [c.stem for c in ENGLISH] + list(translate.DOCUMENTS) + ["feedback"])
def test_translations_keep_equations_code_links_and_references(source):
    """Every $$...$$ with its \\tag{N.M}, inline math, code span, link, (N.M) reference, heading and HTML
    tag of the English is in the Chinese, and no other; a message keeps its {0}, {1}, ..."""
    catalog = polib.pofile(str(translate.catalog_path(source)))
    problems = [f"{entry.occurrences[0][0]}: {problem}" for entry in catalog if entry.msgstr and not entry.obsolete
                for problem in translate.structure_problems(entry.msgid, entry.msgstr, feedback=source == "feedback")]
    assert not problems, "\n".join(problems[:20])


def test_the_glossary_terms_are_used_everywhere():
    problems = [f"{entry.occurrences[0][0]}: {problem}" for catalog in catalogs().values() for entry in catalog
                if entry.msgstr and not entry.obsolete for problem in translate.glossary_problems(entry.msgid, entry.msgstr)]
    assert not problems, f"{len(problems)} places use another word than the glossary's:\n" + "\n".join(problems[:20])


def test_the_glossary_has_the_course_s_key_terms_and_checks_them():
    rows = {english: (chinese, checked) for english, chinese, checked in translate.glossary()}
    for english, chinese in [("diffusion model", "扩散模型"), ("forward process", "前向过程"), ("reverse process", "反向过程"),
                             ("noise schedule", "噪声调度"), ("score function", "分数函数"),
                             ("classifier-free guidance", "无分类器引导"), ("latent space", "潜空间"),
                             ("variational autoencoder", "变分自编码器"), ("flow matching", "流匹配"), ("distillation", "蒸馏")]:
        assert rows.get(english) == (chinese, True), f"the glossary should check {english} -> {chinese}"
    # the check itself: a translation that says 正向过程 for "forward process" is caught
    assert translate.glossary_problems("the forward process adds noise", "正向过程加噪") == ["'forward process' should be 前向过程"]
    assert not translate.glossary_problems("`forward_process` and $x$", "`forward_process` 和 $x$")


def tokens_without_comments(source: str) -> list[tuple[int, str]]:
    return [(token.type, token.string) for token in translate.code_tokens(source)
            if token.type not in (tokenize.COMMENT, tokenize.NL)]


@pytest.mark.parametrize("english_path", ENGLISH, ids=lambda path: path.stem)
def test_a_chinese_chapter_has_the_english_code_token_for_token(english_path):
    """Same cells in the same order; code cells equal but for comments (and the line in the first code cell
    that makes the checkers answer in Chinese); markdown cells keep equations, tags, links and references."""
    english = nbformat.read(english_path, as_version=4)
    chinese = nbformat.read(ROOT / "chapters" / "zh" / english_path.name, as_version=4)
    assert [cell.cell_type for cell in chinese.cells] == [cell.cell_type for cell in english.cells]
    code = [(e.source, c.source) for e, c in zip(english.cells, chinese.cells) if e.cell_type == "code"]
    first_english, first_chinese = code[0]
    assert first_chinese.endswith(translate.LANGUAGE_LINES) and "use_language(\"zh\")" in first_chinese
    assert tokens_without_comments(first_chinese) == tokens_without_comments(first_english + "\n" + translate.LANGUAGE_LINES)
    for number, (english_code, chinese_code) in enumerate(code[1:], start=2):
        assert tokens_without_comments(chinese_code) == tokens_without_comments(english_code), f"code cell {number}"
    translated_comments = sum(bool(CJK.search(c)) and c != e for e, c in code)
    assert translated_comments >= len([e for e, _ in code if "#" in e]) // 2, "most commented cells should read in Chinese"
    for index, (e, c) in enumerate(zip(english.cells, chinese.cells)):
        if e.cell_type == "markdown":
            problems = translate.structure_problems(e.source, translate.COLAB_CHAPTER.sub(r"\g<1>\g<2>", c.source.replace(
                "/chapters/zh/", "/chapters/")))
            assert not problems, f"cell {index}: {problems}"
            assert CJK.search(c.source), f"cell {index} is not in Chinese"


@pytest.mark.parametrize("english_path", ENGLISH[:1] + ENGLISH[-1:], ids=lambda path: path.stem)
def test_a_chinese_chapter_opens_itself_in_colab(english_path):
    chinese = nbformat.read(ROOT / "chapters" / "zh" / english_path.name, as_version=4)
    assert f"/chapters/zh/{english_path.name})" in chinese.cells[0].source
    assert chinese.metadata["diffedu"] == {"language": "zh", "english": english_path.name}


def test_the_readme_and_workshop_guide_link_the_two_editions():
    for english, chinese in translate.DOCUMENTS.items():
        english_text, chinese_text = (ROOT / english).read_text(), (ROOT / chinese).read_text()
        top = "\n".join(english_text.split("\n")[:8])
        assert translate.LANGUAGE_LINKS[english][0] in top, f"{english} should link {chinese} at its top"
        assert translate.LANGUAGE_LINKS[english][1] in "\n".join(chinese_text.split("\n")[:8])
        assert len(CJK.findall(chinese_text)) > len(english_text) / 10
    assert "](chapters/zh/00_setup.ipynb)" in (ROOT / "README.zh.md").read_text() or \
        "/chapters/zh/00_setup.ipynb)" in (ROOT / "README.zh.md").read_text()


def test_a_changed_english_cell_makes_its_translation_stale():
    """The key is the English text: an edit keeps the old translation, marked fuzzy with the old English, and
    the unit is listed as stale (by chapter and cell); an unchanged unit stays current."""
    units = translate.chapter_units(ENGLISH[3])
    edited = next(index for index, unit in enumerate(units) if unit.context is None and index > 0)  # a markdown cell
    old = units[edited]
    units[edited] = translate.Unit(old.text + " One more sentence.", None, old.where)
    catalog = translate.updated_catalog(ENGLISH[3].stem, units)
    entry = catalog.find(old.text + " One more sentence.")
    assert "fuzzy" in entry.flags and entry.previous_msgid == old.text and CJK.search(entry.msgstr)
    assert translate.translated(catalog, entry.msgid) is None
    assert translate.problems(catalog) == [f"{old.where}: stale (the English changed: see #| msgid)"]
    assert old.where.startswith("03_unet_mnist, cell ")
    assert translate.translated(catalog, units[0].text)  # unchanged: still current
    assert [e.msgid for e in catalog if e.obsolete] == []  # the old entry became the fuzzy one
    units[edited] = translate.Unit("A paragraph nobody has seen before, about nothing in particular.", None, old.where)
    assert translate.problems(translate.updated_catalog(ENGLISH[3].stem, units)) == [f"{old.where}: missing"]


def test_the_checkers_answer_in_the_notebooks_language():
    assert current_language() == "en"
    try:
        use_language("zh")
        untouched = repr(ch03.check_conv_parameters(...))
        wrong = repr(ch03.check_conv_parameters(64 * 128 * 9))
        right = repr(ch03.check_conv_parameters(64 * 128 * 9 + 128))
        for line in (untouched, wrong, right):
            assert CJK.search(line) and "3.4" in line, line
        assert not re.search(r"\b(the|your|answer|Exercise|correct|bias)\b", untouched + wrong + right), (untouched, wrong, right)
    finally:
        use_language("en")
    assert repr(ch03.check_conv_parameters(64 * 128 * 9 + 128)).endswith(": correct")
    with pytest.raises(ValueError, match="'en' and 'zh'"):
        use_language("fr")


def filled(template: str) -> str:
    """A message template with made-up values: {0} -> <0.25>, {1} -> <1.25>, ..."""
    return re.sub(r"\{(\d+)\}", lambda number: f"<{number.group(1)}.25>", template)


def test_every_checker_message_translates_whole():
    """Each message template, filled with values, comes back as its Chinese template with the same values:
    the lookup finds the right entry, and the values travel."""
    catalog = polib.pofile(str(translate.FEEDBACK_PO))
    wrong = []
    for entry in catalog:
        if entry.obsolete or not entry.msgstr or entry.msgid == entry.msgstr:
            continue
        if translate_message(filled(entry.msgid), "zh") != filled(entry.msgstr):
            wrong.append(entry.msgid[:60])
    assert not wrong, f"{len(wrong)} messages do not translate to their entry: {wrong[:5]}"


def test_a_joined_message_translates_piece_by_piece():
    """A checker's prefix and hint joined with + (chapter 05's img2img checker) come back as their two
    translations, with the values in place."""
    entries = {e.msgid: e.msgstr for e in polib.pofile(str(translate.FEEDBACK_PO)) if e.msgstr}
    prefix, idea = "with strength {0}, {1} steps, {2} spacing: ", "(1.5) mixes with square roots: the weights keep the variance at 1"
    assert prefix in entries and idea in entries
    joined = translate_message("Exercise 5.1: not yet — with strength 0.6, 20 steps, trailing spacing: " + idea, "zh")
    expected = entries[prefix].replace("{0}", "0.6").replace("{1}", "20").replace("{2}", "trailing") + entries[idea]
    assert expected in joined and "Exercise" not in joined and "5.1" in joined, joined
    # the learner's own exception, between two pieces of a message: the pieces translated, the exception as it is
    raised = translate_message("Exercise 5.1: not yet — your code raised TypeError: unsupported operand"
                               ". Call it yourself on a small input to see where", "zh")
    assert "TypeError: unsupported operand" in raised and "Call it" not in raised and "your code" not in raised, raised
