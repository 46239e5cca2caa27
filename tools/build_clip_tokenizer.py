"""Build the small CLIP tokenizer that chapter 05's mini Stable Diffusion ships with.

CLIP's byte-pair encoding (49,408 tokens) comes with the PyPI package open_clip_torch as
open_clip/bpe_simple_vocab_16e6.txt.gz. This script turns it into the vocab.json + merges.txt
that transformers' CLIPTokenizer reads, then keeps only what the course's captions need:

- all 512 byte-level base tokens (every character, with and without the end-of-word mark
  </w>), so any prompt still tokenizes, into characters if need be;
- every merge used on the way to a caption word's tokens, and the tokens they make;
- <|startoftext|> and <|endoftext|>.

The result tokenizes every caption exactly as the full CLIP tokenizer does (checked below),
in a vocabulary of about 600 instead of 49,408, so the text encoder's embedding table stays
tiny. Run once; the output is committed under diffedu/assets/clip_tokenizer.

    pip download --no-deps open_clip_torch -d /tmp/oc && unzip /tmp/oc/*.whl 'open_clip/*.gz' -d /tmp/oc
    python tools/build_clip_tokenizer.py /tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from diffedu.course.captions import all_captions

OUT = Path(__file__).resolve().parents[1] / "diffedu" / "assets" / "clip_tokenizer"
SPECIAL = ["<|startoftext|>", "<|endoftext|>"]
EXTRA_WORDS = "a photo of an astronaut riding horse on the moon digit number handwritten drawing"  # chapter 05's prompts


def full_clip_bpe(gz_path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """CLIP's vocabulary (in id order) and merges (in rank order), as open_clip builds them."""
    lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1: 49152 - 256 - 2 + 1]]
    base = list(bytes_to_unicode().values())
    vocab = base + [token + "</w>" for token in base] + ["".join(merge) for merge in merges] + SPECIAL
    return vocab, merges


def write_tokenizer(folder: Path, vocab: list[str], merges: list[tuple[str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bpe_gz", type=Path, help="open_clip/bpe_simple_vocab_16e6.txt.gz")
    args = parser.parse_args()
    vocab, merges = full_clip_bpe(args.bpe_gz)
    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer(Path(tmp), vocab, merges)
        full = CLIPTokenizer.from_pretrained(tmp)
        corpus = all_captions() + [EXTRA_WORDS]
        needed = {token for text in corpus for token in full.tokenize(text)}

    made_by = {"".join(merge): merge for merge in merges}  # each merged token has exactly one merge
    keep, stack = set(), list(needed)
    while stack:  # the tokens needed, and everything they are merged from
        token = stack.pop()
        if token in keep:
            continue
        keep.add(token)
        if token in made_by:
            stack.extend(made_by[token])
    kept_merges = [merge for merge in merges if "".join(merge) in keep]
    base = vocab[:512]
    small_vocab = base + ["".join(m) for m in kept_merges] + SPECIAL
    write_tokenizer(OUT, small_vocab, kept_merges)

    small = CLIPTokenizer.from_pretrained(OUT)
    for text in corpus:  # the same tokens as full CLIP, for every caption
        assert small.tokenize(text) == full.tokenize(text), text
    print(f"wrote {OUT}: {len(small_vocab)} tokens, {len(kept_merges)} merges; every caption tokenizes as in CLIP")


if __name__ == "__main__":
    main()
