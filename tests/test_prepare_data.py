"""`python -m utils.prepare_data` (utils/data/prepare.py): your text -> the course's
wiki.{train,validation,test}.npz, read back by Wikitext2 and trained on by run_exp.py; bad input ->
one line on stderr, exit 2, nothing written."""
import argparse
import contextlib
import io
import os
import shlex
import tempfile
import unittest
from unittest import mock

from tests import fixtures

import numpy as np

import generate
import run_exp
from utils.data import build_embeddings
from utils.data.prepare import Part, build_parser, encode_file, main, prepare
from utils.data.tokenizer import GPT1Tokenizer
from utils.data.wikitext2 import SPLITS, Wikitext2, load_split

BPE_FOLDER = fixtures.BPE
WIKITEXT2 = fixtures.WIKITEXT2

TINY_ENCODER = {"<unk>": 0, "a": 1, "b": 2, "a</w>": 3, "b</w>": 4, "ab</w>": 5}
TINY = GPT1Tokenizer(encoder=TINY_ENCODER, merges=[("a", "b</w>")])

# Twenty distinct lines of running text, line 5 blank: line k mentions the number k.
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
           "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
STORY = [f"Line {word} of the story, where the river meets the sea." for word in NUMBERS]
STORY[4] = ""


def write_text(folder, lines, name="corpus.txt"):
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def run_main(*argv):
    """(exit code, stdout, stderr) of `python -m utils.prepare_data ARGV` with the project's BPE."""
    return fixtures.run_main(main, *argv, *([] if "--bpe_folder" in argv else ["--bpe_folder", BPE_FOLDER]))


def file_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def encode(lines):
    """What a split of these lines must hold: (tokens, sizes) of the lines with tokens."""
    tok = GPT1Tokenizer(BPE_FOLDER)
    ids = [tok.encode(line) for line in lines if tok.encode(line)]
    return [i for line in ids for i in line], [len(line) for line in ids]


class PrepareTinyTest(unittest.TestCase):
    def test_format_and_wikitext2_reads_it(self):
        with tempfile.TemporaryDirectory() as folder:
            text = write_text(folder, ["ab a", "", "   ", "b ab ab", "A B"])
            out = os.path.join(folder, "corpus")
            [(_, path, _, _)] = prepare(out, [Part("validation", text, encode_file(text, TINY))])
            self.assertEqual(path, os.path.join(out, "wiki.validation.npz"))
            with np.load(path) as data:
                self.assertEqual(data["tokens"].dtype, np.uint16)
                self.assertEqual(data["sizes"].dtype, np.int64)
                self.assertEqual(data["sizes"].tolist(), [2, 3, 2])  # blank lines skipped
                self.assertEqual(data["tokens"].tolist(), [6, 4, 5, 6, 6, 4, 5])
            tokens, sizes = load_split(out, "validation")
            self.assertEqual(sizes.tolist(), [2, 3, 2])
            dataset = Wikitext2(out, "validation", break_mode="lines", max_length=4)
            self.assertEqual(dataset.num_targets(), 4)  # one target fewer than tokens per line
            self.assertEqual(sorted(os.listdir(out)), ["wiki.validation.npz"])  # no temporary left

    def test_ids_beyond_uint16_are_refused(self):
        big = GPT1Tokenizer(encoder={"<unk>": 0, "a</w>": 70000}, merges=[])
        with tempfile.TemporaryDirectory() as folder:
            text = write_text(folder, ["a a"])
            with self.assertRaisesRegex(ValueError, "70001 does not fit"):
                prepare(os.path.join(folder, "out"), [Part("train", text, encode_file(text, big))])
            self.assertFalse(os.path.exists(os.path.join(folder, "out")))


class ThreeSplitsTest(unittest.TestCase):
    def test_three_files_give_three_readable_splits(self):
        texts = {"train": STORY[:12], "validation": ["", "The sea is calm; café – 25°C."], "test": STORY[15:]}
        with tempfile.TemporaryDirectory() as folder:
            paths = {s: write_text(folder, lines, f"{s}.txt") for s, lines in texts.items()}
            out = os.path.join(folder, "new", "mycorpus")  # parents are created too
            code, stdout, err = run_main("--train", paths["train"], "--validation", paths["validation"],
                                         "--test", paths["test"], "--out", out)
            self.assertEqual(code, 0, err)
            self.assertEqual(sorted(os.listdir(out)), [f"wiki.{s}.npz" for s in ("test", "train", "validation")])
            for split, lines in texts.items():
                tokens, sizes = encode(lines)
                dataset = Wikitext2(out, split)
                self.assertEqual(dataset.tokens.tolist(), tokens)
                self.assertEqual(load_split(out, split)[1].tolist(), sizes)
                self.assertEqual(dataset.num_targets(), len(tokens) - 1)
                self.assertIn(os.path.join(out, f"wiki.{split}.npz"), stdout)
            # The en dash is not in GPT-1's BPE: one <unk>, as in the course's Wikitext-2.
            self.assertRegex(stdout, r"validation +1 lines +11 tokens +1 <unk>")
            self.assertIn(f"python run_exp.py --data_folder {out}", stdout)

    def test_one_file_cut_by_ratio_into_contiguous_line_ranges(self):
        with tempfile.TemporaryDirectory() as folder:
            text = write_text(folder, STORY)
            out = os.path.join(folder, "out")
            code, stdout, err = run_main("--input", text, "--split_ratio", "0.6,0.25,0.15", "--out", out)
            self.assertEqual(code, 0, err)
            ranges = {"train": (1, 12), "validation": (13, 17), "test": (18, 20)}
            for split, (first, last) in ranges.items():
                tokens, sizes = encode(STORY[first - 1:last])
                again, again_sizes = load_split(out, split)
                self.assertEqual(again.tolist(), tokens)
                self.assertEqual(again_sizes.tolist(), sizes)
                self.assertIn(f"{text} (lines {first}-{last})", stdout)
            self.assertEqual(len(load_split(out, "train")[1]), 11)  # the blank line 5 counts in the ratio, is not kept

    def test_default_ratio_is_80_10_10(self):
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "out")
            code, stdout, err = run_main("--input", write_text(folder, STORY), "--out", out)
            self.assertEqual(code, 0, err)
            self.assertEqual([len(load_split(out, s)[1]) for s in SPLITS], [15, 2, 2])
            self.assertIn("(lines 17-18)", stdout)

    def test_printed_command_trains(self):
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "my corpus")  # a space: the printed command must quote it
            code, stdout, err = run_main("--input", write_text(folder, STORY * 3), "--split_ratio", "0.6,0.2,0.2",
                                         "--out", out)
            self.assertEqual(code, 0, err)
            command = shlex.split(stdout.strip().splitlines()[-1].split(": ", 1)[1])
            self.assertEqual(command[:2], ["python", "run_exp.py"])
            embeddings = fixtures.write_embeddings(os.path.join(folder, "emb.npz"), vocab=40479, width=24,
                                                   positions=256)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as log:
                code = run_exp.cli(command[2:] + ["--epochs", "1", "--max_batches", "1", "--batch_size", "2",
                                                  "--device", "cpu", "--embeddings", embeddings,
                                                  "--log_dir", os.path.join(folder, "logs")])
            self.assertEqual(code, 0, log.getvalue())

    def test_reproduces_course_lines(self):
        # Decoded course lines, written as text and prepared again, give the course's arrays back.
        tokens, sizes = load_split(WIKITEXT2, "test")
        n_lines = 60
        tok = GPT1Tokenizer(BPE_FOLDER)
        ends = np.cumsum(sizes[:n_lines])
        lines = [tok.decode(tokens[e - s:e]) for s, e in zip(sizes[:n_lines], ends)]
        with tempfile.TemporaryDirectory() as folder:
            code, stdout, err = run_main("--input", write_text(folder, lines), "--out", os.path.join(folder, "out"),
                                         "--split", "test")
            self.assertEqual(code, 0, err)
            again, again_sizes = load_split(os.path.join(folder, "out"), "test")
        self.assertEqual(again_sizes.tolist(), sizes[:n_lines].tolist())
        self.assertEqual(again.tolist(), tokens[:ends[-1]].tolist())
        self.assertIn("still lacks wiki.train.npz, wiki.validation.npz", stdout)  # no train command yet


class OverwriteTest(unittest.TestCase):
    def test_refuses_existing_splits_unless_force(self):
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "out")
            self.assertEqual(run_main("--input", write_text(folder, STORY), "--out", out)[0], 0)
            before = {s: file_bytes(os.path.join(out, f"wiki.{s}.npz")) for s in SPLITS}
            other = write_text(folder, ["Another text, for the test split only."], "other.txt")
            for argv in (["--input", other, "--split", "test"], ["--input", write_text(folder, STORY * 2)]):
                code, stdout, err = run_main(*argv, "--out", out)
                self.assertEqual((code, stdout), (2, ""))
                self.assertIn("--force", err)
                self.assertEqual({s: file_bytes(os.path.join(out, f"wiki.{s}.npz")) for s in SPLITS}, before)
            code, stdout, err = run_main("--input", other, "--split", "test", "--out", out, "--force")
            self.assertEqual(code, 0, err)
            self.assertEqual(load_split(out, "test")[0].tolist(), encode(["Another text, for the test split only."])[0])
            for split in ("train", "validation"):  # the other splits are left as they were
                self.assertEqual(file_bytes(os.path.join(out, f"wiki.{split}.npz")), before[split])
            self.assertIn("train on it: python run_exp.py --data_folder", stdout)


class ErrorTest(unittest.TestCase):
    """Each bad input: exit 2, one line on stderr that names the user's data, nothing written."""

    def assert_refused(self, folder, argv, *expected):
        out = os.path.join(folder, "out")
        code, stdout, err = run_main(*argv, "--out", out)
        self.assertEqual(code, 2, err)
        self.assertEqual(stdout, "")
        self.assertTrue(err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err)
        for text in expected:
            self.assertIn(text, err)
        self.assertFalse(os.path.exists(out))

    def test_bad_files(self):
        with tempfile.TemporaryDirectory() as folder:
            story = write_text(folder, STORY)
            blank = write_text(folder, ["", "   ", "\t"], "blank.txt")
            single = write_text(folder, ["Sea"], "single.txt")
            latin1 = os.path.join(folder, "latin1.txt")
            with open(latin1, "wb") as handle:
                handle.write("first line\nsecond line\ncaf\u00e9 au lait\n".encode("latin-1"))
            self.assert_refused(folder, ["--input", os.path.join(folder, "missing.txt")], "missing.txt", "not found")
            self.assert_refused(folder, ["--input", folder], "is a folder")
            self.assert_refused(folder, ["--input", latin1], "latin1.txt line 3 is not UTF-8", "0xe9")
            self.assert_refused(folder, ["--input", blank], "blank.txt: no line has any token")
            self.assert_refused(folder, ["--train", story, "--validation", blank, "--test", story], "blank.txt")
            self.assert_refused(folder, ["--train", story, "--validation", story, "--test", single],
                                "single.txt", "single token", "test")

    def test_bad_ratios(self):
        with tempfile.TemporaryDirectory() as folder:
            story = write_text(folder, STORY)
            for ratio in ("0.8,0.1", "0.8,0.1,0.2", "a,b,c", "1,0,0", "0.9,0.2,-0.1", "nan,0.5,0.5", "80,10,10"):
                self.assert_refused(folder, ["--input", story, "--split_ratio", ratio],
                                    "--split_ratio must be three numbers summing to 1")
            # Line 5 is blank: 0.2,0.05,0.75 gives validation line 5 alone.
            self.assert_refused(folder, ["--input", story, "--split_ratio", "0.2,0.05,0.75"],
                                f"the validation part of {story} (line 5) is empty: use more lines or other ratios")
            lines = STORY[:4] + ["", "", "", "the end"]
            self.assert_refused(folder, ["--input", write_text(folder, lines, "short.txt"), "--split_ratio",
                                         "0.5,0.375,0.125"], "validation part", "(lines 5-7) is empty")
            self.assert_refused(folder, ["--input", story, "--split_ratio", "0.98,0.01,0.01"],
                                "the validation part", "is empty", "other ratios")

    def test_bad_flags(self):
        with tempfile.TemporaryDirectory() as folder:
            story = write_text(folder, STORY)
            self.assert_refused(folder, [], "no text given")
            self.assert_refused(folder, ["--train", story, "--test", story], "missing --validation")
            self.assert_refused(folder, ["--train", story, "--validation", story, "--test", story, "--input", story],
                                "not both")
            self.assert_refused(folder, ["--input", story, "--split", "test", "--split_ratio", "0.8,0.1,0.1"],
                                "pass one of them")
            self.assert_refused(folder, ["--input", story, "--split", "dev"], "invalid choice", "--help")
            self.assert_refused(folder, ["--input", story, "--bpe_folder", os.path.join(folder, "no_bpe")], "no_bpe")
        with tempfile.TemporaryDirectory() as folder:
            code, _, err = run_main("--input", write_text(folder, STORY), "--out", write_text(folder, ["x"], "out"))
            self.assertEqual(code, 2)
            self.assertIn("is a file", err)


class HelpTest(unittest.TestCase):
    """--help of prepare_data, generate.py and build_embeddings: a whole description, an example
    command, and each flag's help saying its default (or that it is required)."""

    def check_help(self, parser, example):
        text = parser.format_help()
        self.assertTrue(parser.description.rstrip().endswith("."), parser.description)
        self.assertIn(example, parser.epilog)
        for action in parser._actions:
            if action.dest != "help":
                self.assertRegex(action.help or "", r"\((default: |required\))", action.dest)
        return text

    def test_prepare_data(self):
        text = self.check_help(build_parser(), "python -m utils.prepare_data --train")
        self.assertIn("--split_ratio", text)

    def test_generate(self):
        parser = capture_parser(generate.parse_args, ["--run", "r", "--prompt", "p"])
        self.check_help(parser, "python generate.py --run")

    def test_build_embeddings(self):
        parser = capture_parser(build_embeddings.parse_args, ["--out", "e.npz"])
        self.check_help(parser, "python -m utils.build_embeddings --out")


def capture_parser(parse_args, argv):
    """The ArgumentParser a module's parse_args builds (it returns only the parsed flags)."""
    original = argparse.ArgumentParser.parse_args
    with mock.patch.object(argparse.ArgumentParser, "parse_args", autospec=True, side_effect=original) as spy:
        parse_args(argv)
    return spy.call_args.args[0]


if __name__ == "__main__":
    unittest.main()
