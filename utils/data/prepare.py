"""Tokenize a text file into the course's format, so utils.wikitext2.Wikitext2(out, split) reads it:

    python -m utils.prepare_data --input my.txt --out data/mycorpus/ [--split train]

writes `<out>/wiki.<split>.npz` (atomically) with `tokens` uint16 (all lines, concatenated) and
`sizes` int64 (tokens per line), one entry per line that encodes to at least one token (blank lines
are skipped, as in the course files). Tokenization: utils.tokenizer.GPT1Tokenizer.
"""
import argparse
import io
import os
import sys

import numpy as np

from utils.runs.atomic import atomic_write
from utils.data.tokenizer import GPT1Tokenizer
from utils.data.wikitext2 import SPLITS


def encode_lines(lines, tokenizer):
    """(tokens uint16 (N,), sizes int64 (L,)) of the lines that encode to something."""
    encoded = [ids for ids in (tokenizer.encode(line) for line in lines) if ids]
    sizes = np.array([len(ids) for ids in encoded], dtype=np.int64)
    flat = [i for ids in encoded for i in ids]
    # uint16 holds ids up to 65535; GPT-1's 40479 fit, a larger custom vocabulary would not.
    if flat and max(flat) > np.iinfo(np.uint16).max:
        raise ValueError(f"Token id {max(flat)} does not fit the course's uint16 format.")
    return np.array(flat, dtype=np.uint16), sizes


def write_split(path, tokens, sizes):
    """Write the npz atomically: a crash never leaves a half-written split behind."""
    buffer = io.BytesIO()
    np.savez(buffer, tokens=tokens, sizes=sizes)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def prepare(input_path, out_folder, split="train", tokenizer=None):
    """Tokenize `input_path` into `out_folder/wiki.<split>.npz`; return (path, tokens, sizes)."""
    tokenizer = tokenizer or GPT1Tokenizer()
    with open(input_path, encoding="utf-8") as handle:
        tokens, sizes = encode_lines(handle, tokenizer)
    if len(sizes) == 0:
        raise ValueError(f"{input_path} has no line with any token.")
    path = os.path.join(out_folder, f"wiki.{split}.npz")
    write_split(path, tokens, sizes)
    return path, tokens, sizes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="UTF-8 text file, one line/document per line")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--bpe_folder", default=None, help="GPT-1 BPE folder (default: ../shared/data/gpt1_bpe)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if not os.path.isfile(args.input):
            raise FileNotFoundError(f"Input file {args.input} not found.")
        path, tokens, sizes = prepare(args.input, args.out, args.split, GPT1Tokenizer(args.bpe_folder))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    unknown = int((tokens == 1).sum())
    print(f"wrote {path}: {len(sizes)} lines, {len(tokens)} tokens ({unknown} <unk>)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
