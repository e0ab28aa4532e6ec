"""Word-normalised perplexity for the BPE-tokenized Wikitext-2: exp(total NLL / number of words).

What a "word" is here: a real target token (mask 1) that ENDS a word, i.e. whose GPT-1 piece ends
in "</w>" ("the</w>", "ory</w>", ",</w>"), or that is <unk> (id 1). Counting word ENDS (not
starts) means a word split across two items, or whose first pieces are not targets, is still
counted exactly once, together with the NLL of all its predicted pieces. <unk> counts as a word
because almost every <unk> in the course data is a whole word that the vocabulary lacks (an en dash
"–", one CJK character); its piece hides whether a "</w>" followed (see utils/data/tokenizer.py).

Words are those of the pre-tokenizer, so every punctuation mark is a word: "1 @,@ 000" is 5 words
and "'s" is 2 ("'", "s"), where Wikitext's word-level files have 3 and 1. Wikitext's counts also
include one <eos> per line (blank lines too), which the course data has no token for. So these
perplexities are close to, not equal to, published word-level Wikitext-2 figures. Tokens per word
on the course's splits (validation 1.105: word perplexity ~= token perplexity ** 1.105): docs/results.md.
"""
import math

import torch

from utils.data.tokenizer import PADDING_ID, UNK, WORD_END, load_encoder


def word_end_table(folder=None, encoder=None):
    """BoolTensor (V,) with V = len(encoder) + 1 (40479): True at dataset id k when k's piece ends in
    "</w>", and at <unk>; False at padding id 0. `encoder` (piece -> 0-based id) overrides reading
    `folder` (default: see utils.data.tokenizer.default_folder)."""
    if encoder is None:
        encoder = load_encoder(folder)
    table = torch.zeros(max(encoder.values()) + 2, dtype=torch.bool)
    for piece, index in encoder.items():
        table[index + 1] = piece.endswith(WORD_END) or piece == UNK
    table[PADDING_ID] = False
    return table


def count_words(target_ids, mask, table):
    """Words among the real targets (mask nonzero, any shape, e.g. (B, T)), as a 0-d int64 tensor on
    target_ids' device: no host sync. Keep `table` (word_end_table) on that device to avoid copies."""
    table = table.to(target_ids.device)
    return (table[target_ids] & (mask != 0)).sum()


def word_level_perplexity(total_nll, num_words):
    """exp(total_nll / num_words): total_nll is the summed NLL (nats) of every real target of a split,
    num_words its count_words total. Accepts floats, ints or 0-d tensors; returns a float."""
    num_words = float(num_words)
    if num_words <= 0:
        raise ValueError(f"num_words must be positive, got {num_words}.")
    try:
        return math.exp(float(total_nll) / num_words)
    except OverflowError:  # a diverged run: report inf rather than crash the evaluation
        return math.inf
