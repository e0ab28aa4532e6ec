"""GPT-1 byte-pair encoding, written from the merge list: text <-> the course's dataset ids.
Dataset id k >= 1 is entry k - 1 of `encoder_bpe_40000.json` (so id 1 is `<unk>`); id 0 is padding.

Pre-tokenization: not GPT-1's ftfy + spacy, for the course's Wikitext-2 files hold no spacy pieces
("n't</w>"), no accents ("senjō" is "senjo") and every punctuation mark is a word ("@-@" is "@</w>
-</w> @</w>"): BERT's "basic" pre-tokenizer, approximated. Lower-case, NFD without combining marks
or control characters; a word is a run of letters/digits (`\\w` without "_"), any other non-space
character a word of its own; literal "<unk>" is the unknown token (id 1), also inside a word. So
"don't" -> don ' t, mojibake is not repaired, an en dash is <unk> (as in the course data); unlike
BERT, non-ASCII symbols ("25°c" -> 25 ° c) split off and CJK is not spaced.

A character missing from the vocabulary never merges: each becomes one <unk>. <unk> carries no
"</w>", so decode puts a space after a run of <unk>s that starts a word; encode reads it back.
"""
import json
import os
import re
import unicodedata

ENV_VAR = "GPT1_BPE_FOLDER"
ENCODER_FILE = "encoder_bpe_40000.json"
MERGES_FILE = "vocab_40000.bpe"
WORD_END = "</w>"
UNK = "<unk>"
PADDING_ID = 0

# A word: letters/digits and literal "<unk>"s; otherwise one non-space character.
_WORD_RE = re.compile(r"(?:<unk>|[^\W_])+|\S")
_UNK_SPLIT_RE = re.compile(r"(<unk>)")
# Dropped after NFD: control/format characters (Cc, Cf, as BERT) and combining marks (Mn, accents).
_DROP_CATEGORIES = ("Cc", "Cf", "Mn")


def default_folder(folder=None):
    """The BPE folder: `folder`, else $GPT1_BPE_FOLDER, else the project's data/gpt1_bpe."""
    from utils.data import BPE_FOLDER

    return folder or os.environ.get(ENV_VAR) or BPE_FOLDER


def _require(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"GPT-1 BPE file {path} not found: pass the folder holding {ENCODER_FILE} and {MERGES_FILE} "
            f"or set ${ENV_VAR}."
        )
    return path


def load_encoder(folder=None):
    """piece -> encoder id (0-based, as in the json; dataset id = encoder id + 1)."""
    with open(_require(default_folder(folder), ENCODER_FILE), encoding="utf-8") as handle:
        return json.load(handle)


def load_merges(folder=None):
    """The ordered merge list [(left, right), ...]; the first line is a version header."""
    with open(_require(default_folder(folder), MERGES_FILE), encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    start = 1 if lines and lines[0].startswith("#") else 0
    return [tuple(line.split()) for line in lines[start:] if line.strip()]


def normalize(text):
    """Lower-case, strip accents and drop control characters (keeping whitespace as spaces)."""
    return "".join(" " if ch.isspace() else ch for ch in unicodedata.normalize("NFD", text.lower())
                   if ch.isspace() or (ch != "\ufffd" and unicodedata.category(ch) not in _DROP_CATEGORIES))


def pre_tokenize(text):
    """Words of `text` after normalisation, e.g. "The U.S.-led" -> ["the", "u", ".", "s", ".", "-", "led"]."""
    return _WORD_RE.findall(normalize(text))


def bpe(text, ranks, word_end=True):
    """BPE pieces of `text` (no spaces, no <unk>): characters ("</w>" on the last if it ends a word),
    merging the best-ranked (lowest) adjacent pair while one has a rank."""
    symbols = list(text)
    if word_end:
        symbols[-1] += WORD_END
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
        best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        symbols = _merge_pair(symbols, best)
    return symbols


def _merge_pair(symbols, pair):
    """Replace every non-overlapping occurrence of `pair`, left to right, by its concatenation."""
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged


class GPT1Tokenizer:
    """encode(text) -> dataset ids; decode(ids) -> text. Tables from `folder`, or encoder= and merges=."""

    def __init__(self, folder=None, encoder=None, merges=None):
        if (encoder is None) != (merges is None):
            raise ValueError("Pass both encoder and merges, or neither (to read them from a folder).")
        if encoder is None:
            folder = default_folder(folder)
            encoder, merges = load_encoder(folder), load_merges(folder)
        if UNK not in encoder:
            raise ValueError(f"The encoder has no {UNK!r} entry.")
        # Dataset ids are shifted by one so that 0 stays free for padding.
        self.piece_to_id = {piece: index + 1 for piece, index in encoder.items()}
        self.id_to_piece = {i: piece for piece, i in self.piece_to_id.items()}
        self.unk_id = self.piece_to_id[UNK]
        self.vocabulary_size = max(self.id_to_piece) + 1
        self.ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self._cache = {}

    def encode(self, text):
        """Dataset ids of `text` (a line or more; line breaks are plain spaces)."""
        ids = []
        for word in pre_tokenize(text):
            cached = self._cache.get(word)
            if cached is None:
                cached = self._cache[word] = self._word_ids(word)
            ids.extend(cached)
        return ids

    def _word_ids(self, word):
        """BPE each segment between literal <unk>s on its own, "</w>" only on the word's last one."""
        segments = [s for s in _UNK_SPLIT_RE.split(word) if s]
        ids = []
        for index, segment in enumerate(segments):
            if segment == UNK:
                ids.append(self.unk_id)
                continue
            pieces = bpe(segment, self.ranks, word_end=index == len(segments) - 1)
            ids.extend(self.piece_to_id.get(piece, self.unk_id) for piece in pieces)
        return ids

    def pieces(self, ids):
        """The BPE piece of each id (padding 0 skipped)."""
        return [self.id_to_piece[int(i)] for i in ids if int(i) != PADDING_ID]

    def decode(self, ids):
        """Text of dataset ids: "</w>" -> " ", padding skipped, no trailing space; a space after a run
        of <unk>s that starts a word (82% of the validation split's are whole words: dashes, symbols)."""
        pieces, text, word_start = self.pieces(ids), [], True
        for piece, following in zip(pieces, pieces[1:] + [WORD_END]):
            text.append(piece + " " if piece == UNK and word_start and following != UNK else piece)
            word_start = piece.endswith(WORD_END) or (piece == UNK and word_start)
        return "".join(text).replace(WORD_END, " ").rstrip(" ")
