"""GPT-1 BPE tokenizer (utils/data/tokenizer.py) and word-normalised perplexity (utils/data/words.py)."""
import math
import os
import unittest
from unittest import mock

from tests import fixtures

import numpy as np
import torch

from utils.data import tokenizer as tokenizer_module
from utils.data.tokenizer import GPT1Tokenizer, bpe, pre_tokenize
from utils.data.words import count_words, word_end_table, word_level_perplexity

BPE_FOLDER = fixtures.BPE
WIKITEXT2 = fixtures.WIKITEXT2

# A hand-made vocabulary: piece -> 0-based encoder id (dataset id = encoder id + 1).
TINY_PIECES = ["<unk>", "a", "b", "c", "a</w>", "b</w>", "c</w>", ",</w>", "ab", "ab</w>", "abc</w>", "ca"]
TINY_ENCODER = {piece: index for index, piece in enumerate(TINY_PIECES)}
TINY_MERGES = [("a", "b"), ("ab", "c</w>"), ("a", "b</w>"), ("c", "a")]


def tiny_tokenizer():
    return GPT1Tokenizer(encoder=TINY_ENCODER, merges=TINY_MERGES)


def load_split(split):
    with np.load(os.path.join(WIKITEXT2, f"wiki.{split}.npz")) as data:
        return data["tokens"].astype(np.int64), data["sizes"].astype(np.int64)


def round_trip_figure(tokenizer, tokens, sizes):
    """(tokens whose line decodes and re-encodes identically, all tokens, lines that do not)."""
    same, bad_lines, start = 0, [], 0
    for size in sizes.tolist():
        line = tokens[start:start + size].tolist()
        start += size
        if tokenizer.encode(tokenizer.decode(line)) == line:
            same += size
        else:
            bad_lines.append(line)
    return same, len(tokens), bad_lines


class SyntheticBPETest(unittest.TestCase):
    def test_merges_follow_rank_and_word_end(self):
        ranks = {pair: rank for rank, pair in enumerate(TINY_MERGES)}
        self.assertEqual(bpe("abc", ranks), ["abc</w>"])  # a b c</w> -> ab c</w> -> abc</w>
        self.assertEqual(bpe("ab", ranks), ["ab</w>"])
        # (a, b</w>) outranks (c, a): "cab" -> c ab</w>, never ca b</w>.
        self.assertEqual(bpe("cab", ranks), ["c", "ab</w>"])
        self.assertEqual(bpe("cab", ranks, word_end=False), ["c", "ab"])
        self.assertEqual(bpe("c", ranks), ["c</w>"])

    def test_encode_decode_round_trip(self):
        tok = tiny_tokenizer()
        ids = tok.encode("ABC ab,cab")
        self.assertEqual(tok.pieces(ids), ["abc</w>", "ab</w>", ",</w>", "c", "ab</w>"])
        self.assertEqual(ids, [TINY_ENCODER[p] + 1 for p in tok.pieces(ids)])  # dataset id = encoder id + 1
        self.assertEqual(tok.decode(ids), "abc ab , cab")
        self.assertEqual(tok.encode(tok.decode(ids)), ids)

    def test_unknown_characters_and_padding(self):
        tok = tiny_tokenizer()
        ids = tok.encode("axb")  # x is not in the vocabulary: one <unk>, and it blocks merges
        self.assertEqual(tok.pieces(ids), ["a", "<unk>", "b</w>"])
        self.assertEqual(tok.decode(ids), "a<unk>b")
        self.assertEqual(tok.encode("a<unk>b"), ids)
        self.assertEqual(tok.decode([0] + ids + [0, 0]), "a<unk>b")  # padding skipped

    def test_an_unknown_word_is_spaced_from_the_next(self):
        tok = tiny_tokenizer()
        cases = [(["a</w>", "<unk>", "b</w>"], "a <unk> b"),  # generate.py printed "a <unk>b"
                 (["<unk>", "ab</w>", "c</w>"], "<unk> ab c"),
                 (["a</w>", "<unk>", "<unk>", "c</w>"], "a <unk><unk> c"),  # one unknown word of two characters
                 (["a", "<unk>", "b</w>", "<unk>"], "a<unk>b <unk>"),  # inside a word: glued
                 (["a</w>", "<unk>"], "a <unk>")]
        for pieces, text in cases:
            with self.subTest(pieces=pieces):
                ids = [TINY_ENCODER[p] + 1 for p in pieces]
                self.assertEqual(tok.decode(ids), text)
                self.assertEqual(tok.encode(text), ids)

    def test_pre_tokenizer(self):
        self.assertEqual(
            pre_tokenize("The U.S.-led Café,\tnaïve\n3°C"),
            ["the", "u", ".", "s", ".", "-", "led", "cafe", ",", "naive", "3", "°", "c"],
        )
        self.assertEqual(pre_tokenize("don't <UNK>x"), ["don", "'", "t", "<unk>x"])
        self.assertEqual(pre_tokenize("  \n "), [])

    def test_in_memory_tables_need_both(self):
        with self.assertRaises(ValueError):
            GPT1Tokenizer(encoder=TINY_ENCODER)

    def test_missing_folder_names_the_path(self):
        with self.assertRaises(FileNotFoundError) as caught:
            GPT1Tokenizer("/nonexistent/bpe")
        self.assertIn("/nonexistent/bpe", str(caught.exception))
        self.assertEqual(len(str(caught.exception).splitlines()), 1)

    def test_default_folder_resolution(self):
        with mock.patch.dict(os.environ, {tokenizer_module.ENV_VAR: "/from/env"}):
            self.assertEqual(tokenizer_module.default_folder("/explicit"), "/explicit")
            self.assertEqual(tokenizer_module.default_folder(), "/from/env")
        with mock.patch.dict(os.environ, {tokenizer_module.ENV_VAR: ""}):
            self.assertEqual(tokenizer_module.default_folder(), os.path.normpath(BPE_FOLDER))


class WordCountTest(unittest.TestCase):
    def setUp(self):
        encoder = dict(TINY_ENCODER, **{"the</w>": 12, "hist": 13, "ory</w>": 14, "of</w>": 15})
        self.table = word_end_table(encoder=encoder)
        self.ids = {piece: index + 1 for piece, index in encoder.items()}

    def test_table(self):
        self.assertEqual(self.table.shape, (17,))
        self.assertEqual(self.table.dtype, torch.bool)
        self.assertFalse(self.table[0])  # padding
        self.assertTrue(self.table[self.ids["<unk>"]])  # <unk> counts as a word by default
        self.assertTrue(self.table[self.ids["ory</w>"]])
        self.assertFalse(self.table[self.ids["hist"]])

    def test_count_words(self):
        pieces = ["the</w>", "hist", "ory</w>", "of</w>"]
        targets = torch.tensor([[self.ids[p] for p in pieces] + [0, 0]])  # (1, 6), padded
        mask = torch.tensor([[1.0, 1, 1, 1, 0, 0]])
        self.assertEqual(int(count_words(targets, mask, self.table)), 3)  # the / history / of
        # A masked-out word end is not counted, even if the id is a real token.
        self.assertEqual(int(count_words(targets, torch.tensor([[1.0, 1, 1, 0, 0, 0]]), self.table)), 2)
        self.assertEqual(int(count_words(targets, mask.bool(), self.table)), 3)

    def test_word_level_perplexity(self):
        self.assertAlmostEqual(word_level_perplexity(6.0, 3), math.exp(2.0), places=12)
        self.assertAlmostEqual(word_level_perplexity(torch.tensor(6.0), torch.tensor(4)), math.exp(1.5), places=6)
        self.assertEqual(word_level_perplexity(1e6, 1), math.inf)
        with self.assertRaises(ValueError):
            word_level_perplexity(1.0, 0)


class RealDataTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tok = GPT1Tokenizer(BPE_FOLDER)
        cls.train = load_split("train")

    def test_validation_round_trip(self):
        tokens, sizes = load_split("validation")
        same, total, bad_lines = round_trip_figure(self.tok, tokens, sizes)
        # Measured: 245,046 / 245,046 tokens (all 2,461 lines) round-trip exactly.
        self.assertGreaterEqual(same / total, 0.999, f"{len(bad_lines)} lines differ")
        self.assertEqual(bad_lines, [])

    def test_first_train_line_is_readable(self):
        tokens, sizes = self.train
        self.assertEqual(self.tok.decode(tokens[:sizes[0]]), "= valkyria chronicles iii =")
        second = self.tok.decode(tokens[sizes[0]:sizes[0] + sizes[1]])
        self.assertTrue(second.startswith("senjo no valkyria 3 : unrecorded chronicles ( japanese : <unk>"))

    def test_unknown_dashes_read_as_words(self):
        tokens, _ = load_split("validation")
        at = int(next(i for i in range(1, len(tokens)) if tokens[i] == 1))  # the split's first <unk>: "5 – 6"
        self.assertEqual(self.tok.decode(tokens[at - 4:at + 4]), "weighing up to 5 <unk> 6 kilograms")

    def test_raw_wikitext_encodes_like_the_course_files(self):
        # The start of Wikitext-2-raw's second line, as published (accents, capitals, CJK).
        raw = (" Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese : 戦場のヴァルキュリア3 , lit . "
               "Valkyria of the Battlefield 3 ) , commonly referred to as Valkyria Chronicles III outside "
               "Japan , is a tactical role @-@ playing video game developed by Sega and Media.Vision")
        tokens, sizes = self.train
        ids = self.tok.encode(raw)
        self.assertEqual(ids, tokens[sizes[0]:sizes[0] + len(ids)].tolist())

    def test_word_table_and_validation_words(self):
        table = word_end_table(BPE_FOLDER)
        self.assertEqual(table.shape, (40479,))
        self.assertFalse(table[0])
        tokens, _ = load_split("validation")
        tokens = torch.from_numpy(tokens)
        words = int(count_words(tokens, torch.ones_like(tokens), table))
        self.assertEqual(words, 221723)  # 220,925 "</w>" ends + 798 <unk>: 1.105 tokens per word
