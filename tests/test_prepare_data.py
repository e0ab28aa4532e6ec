"""utils/prepare_data.py: text file -> the course's wiki.<split>.npz, read back by Wikitext2."""
import contextlib
import io
import os
import sys
import tempfile
import unittest

import fixtures

import numpy as np

from utils.data.prepare import main, prepare
from utils.data.tokenizer import GPT1Tokenizer
from utils.data.wikitext2 import Wikitext2, load_split

BPE_FOLDER = fixtures.BPE
WIKITEXT2 = fixtures.WIKITEXT2

TINY_ENCODER = {"<unk>": 0, "a": 1, "b": 2, "a</w>": 3, "b</w>": 4, "ab</w>": 5}
TINY = GPT1Tokenizer(encoder=TINY_ENCODER, merges=[("a", "b</w>")])


def write_text(folder, lines):
    path = os.path.join(folder, "corpus.txt")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def run_main(*argv):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


class PrepareTinyTest(unittest.TestCase):
    def test_format_and_wikitext2_reads_it(self):
        with tempfile.TemporaryDirectory() as folder:
            text = write_text(folder, ["ab a", "", "   ", "b ab ab", "A B"])
            out = os.path.join(folder, "corpus")
            path, _, _ = prepare(text, out, "validation", tokenizer=TINY)
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

    def test_nothing_to_write_is_an_error(self):
        with tempfile.TemporaryDirectory() as folder:
            with self.assertRaises(ValueError):
                prepare(write_text(folder, ["", "  "]), folder, tokenizer=TINY)
            self.assertFalse(os.path.exists(os.path.join(folder, "wiki.train.npz")))


class PrepareRealTest(unittest.TestCase):
    def test_reproduces_course_lines(self):
        # Decoded course lines, written as text and prepared again, give the course's arrays back.
        tokens, sizes = load_split(WIKITEXT2, "test")
        n_lines = 60
        tok = GPT1Tokenizer(BPE_FOLDER)
        ends = np.cumsum(sizes[:n_lines])
        lines = [tok.decode(tokens[e - s:e]) for s, e in zip(sizes[:n_lines], ends)]
        with tempfile.TemporaryDirectory() as folder:
            text = write_text(folder, lines)
            code, err = run_main("--input", text, "--out", os.path.join(folder, "out"), "--split", "test",
                                 "--bpe_folder", BPE_FOLDER)
            self.assertEqual(code, 0, err)
            again, again_sizes = load_split(os.path.join(folder, "out"), "test")
        self.assertEqual(again_sizes.tolist(), sizes[:n_lines].tolist())
        self.assertEqual(again.tolist(), tokens[:ends[-1]].tolist())

    def test_cli_errors_exit_2(self):
        with tempfile.TemporaryDirectory() as folder:
            code, err = run_main("--input", os.path.join(folder, "missing.txt"), "--out", folder,
                                 "--bpe_folder", BPE_FOLDER)
            self.assertEqual(code, 2)
            self.assertIn("missing.txt", err)
            code, err = run_main("--input", write_text(folder, ["a"]), "--out", folder, "--bpe_folder", "/no/bpe")
            self.assertEqual(code, 2)
            self.assertIn("/no/bpe", err)
