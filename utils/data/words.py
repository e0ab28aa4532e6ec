"""Word-normalised perplexity for the BPE-tokenized Wikitext-2: exp(total NLL / number of words).

A "word" is a real target (mask 1) that ENDS a word: its piece ends in "</w>" or it is <unk>
(almost always a whole word the vocabulary lacks). Counting ends, a word split across two items is
counted once. Words are the pre-tokenizer's ("1 @,@ 000" is 5, Wikitext's files say 3) and
Wikitext also counts one <eos> per line, so these are close to, not equal to, published word-level
figures. Tokens per word on the course's splits (validation 1.105): docs/results.md.
"""
import math

import torch

from utils.data.tokenizer import PADDING_ID, UNK, WORD_END, load_encoder


def word_end_table(folder=None, encoder=None):
    """BoolTensor (V,), V = len(encoder) + 1: True at ids whose piece ends in "</w>" and at <unk>.
    `encoder` (piece -> 0-based id) overrides reading `folder` (tokenizer.default_folder)."""
    if encoder is None:
        encoder = load_encoder(folder)
    table = torch.zeros(max(encoder.values()) + 2, dtype=torch.bool)
    for piece, index in encoder.items():
        table[index + 1] = piece.endswith(WORD_END) or piece == UNK
    table[PADDING_ID] = False
    return table


def count_words(target_ids, mask, table):
    """Words among the real targets (mask nonzero, e.g. (B, T)): a 0-d int64 tensor, no host sync."""
    table = table.to(target_ids.device)
    return (table[target_ids] & (mask != 0)).sum()


def word_level_perplexity(total_nll, num_words):
    """exp(total_nll / num_words) as a float, from floats, ints or 0-d tensors."""
    num_words = float(num_words)
    if num_words <= 0:
        raise ValueError(f"num_words must be positive, got {num_words}.")
    try:
        return math.exp(float(total_nll) / num_words)
    except OverflowError:  # a diverged run: report inf rather than crash the evaluation
        return math.inf
