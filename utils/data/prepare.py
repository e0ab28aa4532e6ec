"""`python -m utils.prepare_data`: your own text -> the course's format (DESCRIPTION, EXAMPLES below):
per split, `tokens` uint16 (its lines' ids, concatenated) and `sizes` int64 (tokens per non-blank line).
All is checked before anything is written, atomically: a refused command leaves the folder as it was.
"""
import argparse
import io
import os
import shlex
import sys
from dataclasses import dataclass

import numpy as np

from utils.data.tokenizer import GPT1Tokenizer
from utils.data.wikitext2 import SPLITS
from utils.errors import UsageError
from utils.runs.atomic import atomic_write

PROG = "python -m utils.prepare_data"
DEFAULT_RATIO = "0.8,0.1,0.1"
MIN_TOKENS = 2  # training cuts a split into (source, target) pairs: a lone token predicts nothing
GPT1_ROWS = 40479  # rows of GPT-1's embeddings.npz (ids 0..40478)
DESCRIPTION = """\
Tokenize your own text with GPT-1's BPE into the course's format: a folder with
wiki.{train,validation,test}.npz that `python run_exp.py --data_folder FOLDER` trains on.
Give three files, or one file that --split_ratio cuts into three contiguous blocks of lines.
Blank lines are skipped; split files already there are kept unless --force."""
EXAMPLES = f"""\
examples:
  {PROG} --train a.txt --validation b.txt --test c.txt --out data/mycorpus
  {PROG} --input all.txt --split_ratio 0.8,0.1,0.1 --out data/mycorpus
  {PROG} --input more.txt --split test --out data/mycorpus --force   # replace one split
then train on it:
  python run_exp.py --data_folder data/mycorpus

exit status: 0 written; 2 bad input (one line on stderr, nothing written)."""


@dataclass
class Part:
    """One split's lines as token ids per line (blank lines: []), and where they came from."""
    split: str
    source: str
    ids: list
    first: int = 1  # file line number of ids[0]
    whole_file: bool = True

    def where(self):
        if self.whole_file:
            return self.source
        last = self.first + len(self.ids) - 1
        return f"{self.source} (line {last})" if last == self.first else f"{self.source} (lines {self.first}-{last})"

    def arrays(self):
        """(tokens uint16 (N,), sizes int64 (L,)) of the lines that encode to something."""
        kept = [line for line in self.ids if line]
        flat = [i for line in kept for i in line]
        # uint16 holds ids up to 65535: GPT-1's fit, a larger custom vocabulary would not.
        if flat and max(flat) > np.iinfo(np.uint16).max:
            raise UsageError(f"{self.where()}: token id {max(flat)} does not fit the course's uint16 format: "
                             "use a BPE vocabulary of at most 65,535 pieces.")
        return np.array(flat, dtype=np.uint16), np.array([len(line) for line in kept], dtype=np.int64)


def read_lines(path):
    """The file's lines (split at \\n, \\r\\n or \\r); non-UTF-8 bytes refused with their line number."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found: check the path.") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder: pass a text file.") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read it ({err.strerror}).") from None
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise UsageError(f"{path} line {number} is not UTF-8 (byte 0x{raw[err.start]:02x} at column "
                             f"{err.start + 1}): save the file as UTF-8.") from None
    return lines


def encode_file(path, tokenizer):
    """Token ids of each line of `path`; refuses a file with no token at all."""
    ids = [tokenizer.encode(line) for line in read_lines(path)]
    if not any(ids):
        raise UsageError(f"{path}: no line has any token: it holds no text to train on.")
    return ids


def parse_ratio(text):
    """[train, validation, test] proportions from "0.8,0.1,0.1"."""
    usage = (f"--split_ratio must be three numbers summing to 1, for train,validation,test "
             f"(e.g. {DEFAULT_RATIO}); got {text!r}.")
    try:
        ratios = [float(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(usage) from None
    if len(ratios) != 3 or not abs(sum(ratios) - 1.0) <= 1e-6:  # "not <=" also refuses nan
        raise UsageError(usage)
    if not all(r > 0 for r in ratios):
        raise UsageError(usage[:-1] + ": each split needs a share > 0.")
    return ratios


def split_by_ratio(path, ids, ratios):
    """Three contiguous blocks of lines in file order, cut at round(n * cumulative ratio); not
    shuffled: scattered lines of running text would show training the context of each test line."""
    n = len(ids)
    cuts = [0, int(n * ratios[0] + 0.5), int(n * (ratios[0] + ratios[1]) + 0.5), n]
    return [Part(split, path, ids[a:b], first=a + 1, whole_file=False) for split, a, b in zip(SPLITS, cuts, cuts[1:])]


def check_part(part):
    """Refuse a split that training could not use (fewer than MIN_TOKENS tokens)."""
    count = sum(len(line) for line in part.ids)
    if count >= MIN_TOKENS:
        return
    problem = "is empty" if count == 0 else "has a single token"
    if not part.ids:  # the ratio gave it no line at all: there is no line range to show
        raise UsageError(f"the {part.split} part of {part.source} is empty: its share of the file's lines rounds "
                         "to none; use more lines or other ratios.")
    if part.whole_file:
        raise UsageError(f"{part.source}: the {part.split} split {problem}: it needs at least {MIN_TOKENS} "
                         "tokens of text.")
    raise UsageError(f"the {part.split} part of {part.where()} {problem}: use more lines or other ratios.")


def split_path(out, split):
    return os.path.join(out, f"wiki.{split}.npz")


def check_output(out, splits, force):
    """Refuse an --out that is a file, or split files that already exist unless --force."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file: pass a folder (it is created if missing).")
    existing = [os.path.basename(split_path(out, s)) for s in splits if os.path.exists(split_path(out, s))]
    if existing and not force:
        raise UsageError(f"{out} already has {', '.join(existing)}: pass --force to overwrite, or choose another "
                         "--out.")


def prepare(out, parts, force=False):
    """Check every Part, then write each `out/wiki.<split>.npz`; [(part, path, tokens, sizes)]."""
    check_output(out, [p.split for p in parts], force)
    for part in parts:
        check_part(part)
    arrays = [part.arrays() for part in parts]
    written = []
    for part, (tokens, sizes) in zip(parts, arrays):
        path, buffer = split_path(out, part.split), io.BytesIO()
        np.savez(buffer, tokens=tokens, sizes=sizes)
        atomic_write(path, lambda handle: handle.write(buffer.getvalue()))  # never a half-written split
        written.append((part, path, tokens, sizes))
    return written


def choose_mode(args):
    """("files", {split: path}), ("one", split) or ("ratio", ratios); UsageError on a mix."""
    files = {s: getattr(args, s) for s in SPLITS if getattr(args, s) is not None}
    if files and (args.input or args.split or args.split_ratio):
        raise UsageError("pass either --train/--validation/--test or --input, not both.")
    if files:
        missing = [f"--{s}" for s in SPLITS if s not in files]
        if missing:
            raise UsageError(f"missing {', '.join(missing)}: pass all three files, or --input FILE --split NAME "
                             "to write one split.")
        return "files", files
    if not args.input:
        raise UsageError("no text given: pass --input FILE (cut by --split_ratio), or --train A --validation B "
                         "--test C.")
    if args.split and args.split_ratio:
        raise UsageError("--split puts all of --input into one split, --split_ratio cuts it into three: pass one "
                         "of them.")
    if args.split:
        return "one", args.split
    return "ratio", parse_ratio(args.split_ratio or DEFAULT_RATIO)


def read_parts(mode, value, args, tokenizer):
    if mode == "files":
        return [Part(split, path, encode_file(path, tokenizer)) for split, path in value.items()]
    ids = encode_file(args.input, tokenizer)
    if mode == "one":
        return [Part(value, args.input, ids)]
    return split_by_ratio(args.input, ids, value)


def load_tokenizer(folder):
    try:
        return GPT1Tokenizer(folder)
    except (OSError, ValueError) as err:
        raise UsageError(str(err)) from None


def summary(written, out, unk_id):
    """What was written, and how to train on it."""
    lines = []
    for part, path, tokens, sizes in written:
        lines.append(f"{part.split:<10} {len(sizes):>7,} lines {len(tokens):>10,} tokens "
                     f"{int((tokens == unk_id).sum()):>6,} <unk>   {part.where()} -> {path}")
    top = max(int(tokens.max()) for _, _, tokens, _ in written)
    lines.append(f"highest id {top:,}: the embeddings file needs at least {top + 1:,} token rows "
                 f"(GPT-1's {GPT1_ROWS:,} always fit).")
    missing = [os.path.basename(split_path(out, s)) for s in SPLITS if not os.path.isfile(split_path(out, s))]
    if missing:  # only after --split: say what run_exp.py would otherwise stop on
        lines.append(f"{out} still lacks {', '.join(missing)}: add each with {PROG} --input FILE --split NAME "
                     f"--out {shlex.quote(out)}")
    else:
        lines.append(f"train on it: python run_exp.py --data_folder {shlex.quote(out)}")
    return "\n".join(lines)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line through main's error handling, not argparse's usage dump."""
        raise UsageError(f"{message} ({PROG} --help lists every flag).")


def build_parser():
    parser = Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, description=DESCRIPTION,
                    epilog=EXAMPLES)
    three = parser.add_argument_group("three files, one per split")
    for split in SPLITS:
        three.add_argument(f"--{split}", metavar="FILE",
                           help=f"UTF-8 text of the {split} split (default: none; give all three)")
    one = parser.add_argument_group("one file")
    one.add_argument("--input", metavar="FILE",
                     help="UTF-8 text, cut into the three splits by --split_ratio (default: none)")
    one.add_argument("--split_ratio", metavar="TRAIN,VAL,TEST", help="train,validation,test shares of --input's lines, "
                     f"contiguous blocks in file order (default: {DEFAULT_RATIO})")
    one.add_argument("--split", choices=SPLITS, help="instead, write all of --input as this one split, e.g. into a "
                     "folder that has the others (default: none, cut by --split_ratio)")
    parser.add_argument("--out", required=True, metavar="FOLDER", help="output folder, created if missing (required)")
    parser.add_argument("--force", action="store_true", help="overwrite split files that already exist "
                        "(default: refuse)")
    parser.add_argument("--bpe_folder", metavar="FOLDER", help="GPT-1 BPE folder (default: $GPT1_BPE_FOLDER, "
                        "else the project's data/gpt1_bpe)")
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        mode, value = choose_mode(args)
        # Refuse a clash before the (possibly long) tokenization, not after it.
        check_output(args.out, [value] if mode == "one" else SPLITS, args.force)
        tokenizer = load_tokenizer(args.bpe_folder)
        written = prepare(args.out, read_parts(mode, value, args, tokenizer), args.force)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # writing failed (permissions, disk full): say where, without a traceback
        print(f"error: cannot write to {args.out}: {err.strerror or err}.", file=sys.stderr)
        return 2
    print(summary(written, args.out, tokenizer.unk_id))
    return 0
