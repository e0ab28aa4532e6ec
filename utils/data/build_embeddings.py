"""Build a stand-in for GPT-1's `embeddings.npz` offline, from the Wikitext-2 training split.

    python -m utils.build_embeddings --out data/embeddings.npz          # from the project's data/

Tokens: PPMI + truncated SVD (Levy, Goldberg & Dagan, 2015). Co-occurrences are counted in a
symmetric window of 5 tokens that never crosses a line, weighted (w - d + 1) / w by distance d
(word2vec's "dynamic window"); context probabilities are smoothed with exponent 0.75; negative
PMI is clipped to 0. The (seen x seen) PPMI matrix is factorised by a seeded randomized SVD
(Halko, Martinsson & Tropp, 2011) and a token's vector is its row of U * sqrt(S).

Positions: sinusoids (Vaswani et al., 2017), scaled to the same per-entry RMS as the tokens, so
that, as in the Transformer, neither term of token + position swamps the other.

Ids: row 0 (padding) is exactly zero. An id never seen in training gets the mean of the rows of
the ids seen exactly once (Good-Turing's intuition: an unseen id behaves like the rarest seen
ones), or of all seen rows if no id was seen once; the tied classifier then learns to keep such
ids as unlikely as hapaxes instead of leaving them at an arbitrary logit.

Scale (--scale, default 0.1) is the RMS entry of the seen rows. The classifier is tied, so row
norms set the logit scale. We ASSUME, without the file to check, that pretrained GPT-1 token rows
have a per-entry std of roughly 0.1-0.2 (row norm ~3-5), and take the low end: MiniGPT1's features
are post-LayerNorm, norm ~sqrt(768) = 27.7, and at initialisation they still point along the input
token's own row, so the current token gets a logit of ~27.7 x its row norm (~768 x scale on
average, more for frequent tokens, whose rows are longest). At 0.15 a MiniGPT1 started at loss 86
and was at 14.8 after 12 small steps; at 0.1, 57 -> 10.8; at 0.05, 28 -> 9.3. The LSTM, whose
ReLU features must grow to reach the same logits, prefers larger rows (loss after 30 small steps:
9.18 at 0.15, 9.38 at 0.1, 9.48 at 0.05). 0.1 serves both and stays in the assumed GPT-1 range.

The output is written atomically with fixed zip timestamps, so the same data, seed and BLAS give
the same bytes, and a JSON sidecar `<out>.json` records how it was made (see describe_embeddings).
A full build took 65-115 s and 1.1 GB peak RSS on 2 shared CPU cores.
"""
import argparse
import json
import os
import resource
import sys
import time
import zipfile

import numpy as np
import scipy.sparse as sp

from utils.data import PROJECT_DATA
from utils.data.embeddings import GPT1_EMBEDDING_SIZE, GPT1_VOCABULARY_SIZE, file_sha256
from utils.data.wikitext2 import load_split
from utils.runs.atomic import atomic_write, atomic_write_json

WINDOW, ALPHA, EIG_POWER, SCALE, N_POSITIONS = 5, 0.75, 0.5, 0.1, 512
OVERSAMPLE, POWER_ITERS = 16, 2
UNKNOWN = {"kind": "unknown (e.g. GPT-1 pretrained)"}
METHOD = (
    "PPMI (symmetric window {window}, weights (w-d+1)/w, no line crossing, context smoothing {alpha}) "
    "+ randomized SVD, rows U*S^{eig_power}, RMS entry {scale}; unseen ids = mean of hapax rows; "
    "sinusoidal positions with the same RMS"
)


def cooccurrence(ids, sizes, n, window=WINDOW):
    """Symmetric (n, n) CSR of distance-weighted co-occurrence counts of compact ids within lines."""
    line = np.repeat(np.arange(len(sizes)), sizes)
    counts = sp.csr_matrix((n, n), dtype=np.float64)
    for d in range(1, window + 1):
        same = line[:-d] == line[d:]
        left, right = ids[:-d][same], ids[d:][same]
        weight = np.full(len(left), (window - d + 1) / window)
        pairs = sp.coo_matrix((weight, (left, right)), shape=(n, n)).tocsr()
        counts = counts + pairs + pairs.T
    return counts


def ppmi(counts, alpha=ALPHA):
    """Positive PMI with context-distribution smoothing: max(0, log P(w,c) / (P(w) P_alpha(c)))."""
    coo = counts.tocoo()
    rows = np.asarray(counts.sum(axis=1)).ravel()
    contexts = np.asarray(counts.sum(axis=0)).ravel() ** alpha
    contexts /= contexts.sum()
    pmi = np.log(coo.data) - np.log(rows[coo.row]) - np.log(contexts[coo.col])
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape, dtype=np.float32)


def _orthonormal(block, rtol=1e-12):
    """An orthonormal basis of span(block) from the eigen-decomposition of its Gram matrix, in
    float64; directions below rtol of the top are dropped (rank-deficient input). Only BLAS-3 and a
    small eigh: numpy's Householder QR is ~50x slower on a (30k, 784) block with this OpenBLAS."""
    block = block.astype(np.float64)
    values, vectors = np.linalg.eigh(block.T @ block)
    keep = values > rtol * values[-1]
    return block @ (vectors[:, keep] / np.sqrt(values[keep]))


def _product(sparse, dense):
    # scipy's sparse x dense product is single-threaded and memory-bound: run it in float32.
    return sparse @ dense.astype(sparse.dtype)


def randomized_svd(matrix, rank, seed, oversample=OVERSAMPLE, power_iters=POWER_ITERS):
    """Top `rank` left singular vectors and values (U, S) of a sparse matrix (Halko et al., 2011,
    with power iterations); a numpy Generator seeded with `seed` draws the probe: deterministic."""
    width = min(rank + oversample, *matrix.shape)
    probe = np.random.default_rng(seed).standard_normal((matrix.shape[1], width))
    basis = _orthonormal(_product(matrix, probe))
    for _ in range(power_iters):  # sharpens the slowly decaying PPMI spectrum
        basis = _orthonormal(_product(matrix, _orthonormal(_product(matrix.T, basis))))
    # B = basis^T A; B B^T = U_B S^2 U_B^T gives U = basis U_B without the wide (width, n) SVD.
    projected = _product(matrix.T, basis).astype(np.float64)  # B^T, (n, width)
    values, vectors = np.linalg.eigh(projected.T @ projected)
    order = np.argsort(values)[::-1][:rank]
    return basis @ vectors[:, order], np.sqrt(np.clip(values[order], 0.0, None))


def unseen_vector(vectors, counts):
    """The documented vector for unseen ids: mean of rows seen once, else of all seen rows.
    vectors (n, E) rows of the seen ids, counts (n,) their training counts."""
    hapax = counts == 1
    return vectors[hapax].mean(axis=0) if hapax.any() else vectors.mean(axis=0)


def token_embeddings(tokens, sizes, vocabulary_size, dim, seed, scale=SCALE, window=WINDOW):
    """(vocabulary_size, dim) float32 token rows from a training stream of ids (see module doc)."""
    if len(tokens) == 0:
        raise ValueError("The training split has no tokens.")
    if tokens.min() < 0 or tokens.max() >= vocabulary_size:
        raise ValueError(f"Training ids span [{tokens.min()}, {tokens.max()}]: outside [0, {vocabulary_size}).")
    seen, compact, counts = np.unique(tokens, return_inverse=True, return_counts=True)
    u, s = randomized_svd(ppmi(cooccurrence(compact, sizes, len(seen), window)), dim, seed)
    vectors = np.zeros((len(seen), dim), np.float64)
    vectors[:, : u.shape[1]] = u * s**EIG_POWER  # fewer seen ids than dims: the rest stays 0
    vectors *= scale / np.sqrt(np.mean(vectors**2))
    table = np.empty((vocabulary_size, dim), np.float64)
    table[:] = unseen_vector(vectors, counts)
    table[seen] = vectors
    table[0] = 0.0  # padding, even if a corpus used id 0
    return table.astype(np.float32)


def sinusoidal_positions(n_positions, dim, rms):
    """(n_positions, dim) float32: sin/cos pairs at geometric wavelengths, per-entry RMS `rms`."""
    position = np.arange(n_positions, dtype=np.float64)[:, None]
    frequency = 10000.0 ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.zeros((n_positions, dim), np.float64)
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency[: dim // 2])
    return (table * rms / np.sqrt(np.mean(table**2))).astype(np.float32)


def write_npz(handle, arrays):
    """np.savez's layout (stored .npy members) with fixed timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def sidecar_path(path):
    return path + ".json"


def describe_embeddings(path):
    """{"path", "sha256", **how it was made} for run logs: the sidecar written with the file, or
    UNKNOWN when there is none (e.g. the real GPT-1 file) or it belongs to another file."""
    sha = file_sha256(path)
    made = dict(UNKNOWN)
    try:
        with open(sidecar_path(path)) as handle:
            recorded = json.load(handle)
        if recorded.get("sha256") == sha:
            made = recorded
        else:
            made["note"] = f"{sidecar_path(path)} describes another file (sha256 mismatch)"
    except (OSError, ValueError, AttributeError):
        pass
    return dict(made, path=os.path.abspath(path), sha256=sha)


def build(data_folder, vocabulary_size=GPT1_VOCABULARY_SIZE, dim=GPT1_EMBEDDING_SIZE, n_positions=N_POSITIONS,
          seed=0, scale=SCALE, window=WINDOW):
    """(arrays {"tokens", "position"}, record) built from `data_folder/wiki.train.npz`."""
    tokens, sizes = load_split(data_folder, "train")
    table = token_embeddings(tokens, sizes, vocabulary_size, dim, seed, scale, window)
    arrays = {"tokens": table, "position": sinusoidal_positions(n_positions, dim, scale)}
    record = {
        "kind": "ppmi-svd", "method": METHOD.format(window=window, alpha=ALPHA, eig_power=EIG_POWER, scale=scale),
        "seed": seed, "scale": scale, "window": window, "vocabulary_size": vocabulary_size, "dim": dim,
        "n_positions": n_positions, "seen_ids": int(np.unique(tokens).size),
        "train_sha256": file_sha256(os.path.join(data_folder, "wiki.train.npz")),
    }
    return arrays, record


def save(out, arrays, record):
    """Write `out` then its sidecar, each atomically; the sidecar carries the file's sha256."""
    atomic_write(out, lambda handle: write_npz(handle, arrays))
    atomic_write_json(sidecar_path(out), dict(record, sha256=file_sha256(out)))


def norm_stats(table):
    """Row-norm summary of the non-padding rows, for the log line."""
    norms = np.linalg.norm(table[1:], axis=1)
    return {"mean": float(norms.mean()), "std": float(norms.std()), "min": float(norms.min()),
            "max": float(norms.max()), "entry_rms": float(np.sqrt(np.mean(table[1:] ** 2)))}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m utils.build_embeddings", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a stand-in for GPT-1's embeddings.npz offline, from a training split (the project's\n"
                    "Wikitext-2 by default): token rows by PPMI + randomized SVD of co-occurrence counts,\n"
                    "sinusoidal position rows. The same data, seed and BLAS give the same bytes; a <out>.json\n"
                    "sidecar records how it was made. Method: the top of utils/data/build_embeddings.py.",
        epilog="examples:\n"
               "  python -m utils.build_embeddings --out data/embeddings.npz\n"
               "  python -m utils.build_embeddings --data_folder data/mycorpus --out data/mycorpus/embeddings.npz\n"
               "then: python run_exp.py --embeddings data/embeddings.npz ...")
    parser.add_argument("--data_folder", default=PROJECT_DATA, metavar="FOLDER",
                        help="folder with wiki.train.npz, e.g. one from utils.prepare_data (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="the .npz to write; a <out>.json sidecar goes beside it (required)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomized SVD (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=SCALE,
                        help="RMS entry of token and position rows; sets the tied classifier's logit scale "
                             "(default: %(default)s)")
    parser.add_argument("--window", type=int, default=WINDOW,
                        help="co-occurrence window, in tokens each side, never crossing a line (default: %(default)s)")
    parser.add_argument("--vocabulary_size", type=int, default=GPT1_VOCABULARY_SIZE, metavar="N",
                        help="token rows: more than the highest id in the data (default: %(default)s, GPT-1's)")
    parser.add_argument("--dim", type=int, default=GPT1_EMBEDDING_SIZE, metavar="N",
                        help="embedding width, even; MiniGPT1 also needs a multiple of its 12 heads "
                             "(default: %(default)s, GPT-1's)")
    parser.add_argument("--n_positions", type=int, default=N_POSITIONS, metavar="N",
                        help="position rows; MiniGPT1 needs at least 256, its sequence length (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out (default: refuse)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        print(f"error: {args.out} already exists; pass --force to overwrite it.", file=sys.stderr)
        return 2
    if args.scale <= 0 or args.window < 1 or args.dim < 2 or args.dim % 2 or args.vocabulary_size < 2:
        print("error: need --scale > 0, --window >= 1, an even --dim >= 2 and --vocabulary_size >= 2.", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        arrays, record = build(args.data_folder, args.vocabulary_size, args.dim, args.n_positions,
                               args.seed, args.scale, args.window)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    record.update(seconds=round(time.perf_counter() - start, 1), peak_rss_mb=round(peak_rss_mb(), 1),
                  row_norms=norm_stats(arrays["tokens"]))
    save(args.out, arrays, record)
    print(json.dumps({k: record[k] for k in ("seconds", "peak_rss_mb", "row_norms", "seen_ids")}))
    print(f"wrote {args.out} and {sidecar_path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
