"""The stand-in methods behind `python -m utils.build_embeddings`, registered by name in METHODS.
Both models tie the frozen rows to a bias-free classifier, so the rows must make a good OUTPUT layer
(why, and the methods measured: docs/embeddings.md).

next-token-svd (default):
1. For d = 1..window, M_d[c, v] = log(1 + P_d(v | c) / P(v)) over ordered pairs within lines: up to
   a per-context constant, log P(v | c) - log P(v) for the bigram interpolated half-half with the
   unigram; 0 for unseen pairs (sparse).
2. The stacked M_d share one target factor V, S (their top right singular vectors, seeded
   randomized SVD); the context factor of d = 1 is U = M_1 V / S.
3. Row v = [U_v S^1/2, V_v S^1/2], (dim - 2) / 2 dims each, each half of norm scale * sqrt(dim / 2):
   one linear map (swap the halves) gives the bigram logits U_c S V_v^T. Equal norms, as MiniGPT1's
   LayerNormed features start along the input row: the current token's logit grows with |row|^2.
4. Centred log-frequency f_v (add-0.1 counts) on two reserved directions: FREQ_ONES * f along
   ones / sqrt(dim), which ReLU features and any LayerNorm bias reach at once (unigram from a
   constant feature); a_m * f along m, orthogonal to the rest, which every position row holds as
   POSITION_CONSTANT * m: MiniGPT1's LayerNorm then starts at the unigram logits and the current
   token's logit shrinks to ~sqrt(dim) * |row|^2 / POSITION_CONSTANT. Positions: sinusoids, RMS `scale`.
Unseen ids get the mean of the hapax rows' halves and their own lower log-frequency; row 0 is zero.

ppmi-svd: symmetric PPMI (Levy, Goldberg & Dagan, 2015) by randomized SVD (Halko, Martinsson &
Tropp, 2011), rows U * sqrt(S) at RMS entry `scale`; unseen ids and positions as above.
"""
import numpy as np
import scipy.sparse as sp

SCALE = 0.1
DEFAULT_WINDOW = {"next-token-svd": 4, "ppmi-svd": 5}
# ppmi-svd
WINDOW, ALPHA, EIG_POWER = DEFAULT_WINDOW["ppmi-svd"], 0.75, 0.5
OVERSAMPLE, POWER_ITERS = 16, 2
# next-token-svd: log-frequency weight on ones / sqrt(dim), position constant norm, add-k smoothing.
FREQ_ONES, POSITION_CONSTANT, SMOOTHING = 0.5, 20.0, 0.1
PPMI_METHOD = (
    "PPMI (symmetric window {window}, weights (w-d+1)/w, no line crossing, context smoothing {alpha}) "
    "+ randomized SVD, rows U*S^{eig_power}, RMS entry {scale}; unseen ids = mean of hapax rows; "
    "sinusoidal positions with the same RMS"
)
NEXT_TOKEN_METHOD = (
    "next-token SVD: M_d[c,v] = log(1 + P_d(v|c)/P(v)) for distances d = 1..{window} within lines, stacked; "
    "randomized SVD; rows [U_1 S^1/2, V S^1/2], each half of norm {scale}*sqrt(dim/2); centred log-frequency "
    "(add-{smoothing}) x {freq_ones} along ones/sqrt(dim) and x {freq_position:.5f} along a direction m that every "
    "position row holds with norm {position_constant}; unseen ids = mean of hapax halves; sinusoidal positions "
    "of RMS {scale} + the constant"
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
    """An orthonormal basis of span(block) (float64) from its Gram matrix, dropping directions below
    rtol of the top: BLAS-3 and a small eigh, ~50x faster than numpy's QR on a (30k, 784) block."""
    block = block.astype(np.float64)
    values, vectors = np.linalg.eigh(block.T @ block)
    keep = values > rtol * values[-1]
    return block @ (vectors[:, keep] / np.sqrt(values[keep]))


def _product(sparse, dense):
    # scipy's sparse x dense product is single-threaded and memory-bound: run it in float32.
    return sparse @ dense.astype(sparse.dtype)


def randomized_svd(matrix, rank, seed, oversample=OVERSAMPLE, power_iters=POWER_ITERS):
    """Top `rank` left singular vectors and values (U, S) of a sparse matrix (Halko et al.), seeded."""
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
    """Unseen ids' vector: mean of the rows (n, E) seen once (counts (n,)), else of all seen rows."""
    hapax = counts == 1
    return vectors[hapax].mean(axis=0) if hapax.any() else vectors.mean(axis=0)


def check_ids(tokens, sizes, vocabulary_size):
    if len(tokens) == 0:
        raise ValueError("The training split has no tokens.")
    if not np.any(np.asarray(sizes) >= 2):
        raise ValueError("The training split has no line of two tokens or more: there is no pair to count.")
    if tokens.min() < 0 or tokens.max() >= vocabulary_size:
        raise ValueError(f"Training ids span [{tokens.min()}, {tokens.max()}]: outside [0, {vocabulary_size}).")


def ppmi_svd(tokens, sizes, vocabulary_size, dim, n_positions, seed, scale, window):
    """(token rows (vocabulary_size, dim) float32, position rows, record fields) of the ppmi-svd method."""
    check_ids(tokens, sizes, vocabulary_size)
    seen, compact, counts = np.unique(tokens, return_inverse=True, return_counts=True)
    u, s = randomized_svd(ppmi(cooccurrence(compact, sizes, len(seen), window)), dim, seed)
    vectors = np.zeros((len(seen), dim), np.float64)
    vectors[:, : u.shape[1]] = u * s**EIG_POWER  # fewer seen ids than dims: the rest stays 0
    vectors *= scale / np.sqrt(np.mean(vectors**2))
    table = np.empty((vocabulary_size, dim), np.float64)
    table[:] = unseen_vector(vectors, counts)
    table[seen] = vectors
    table[0] = 0.0  # padding, even if a corpus used id 0
    method = PPMI_METHOD.format(window=window, alpha=ALPHA, eig_power=EIG_POWER, scale=scale)
    return table.astype(np.float32), sinusoidal_positions(n_positions, dim, scale), {"method": method}


def directional_counts(ids, sizes, n, distance):
    """(n, n) CSR: how often compact id c is followed, `distance` tokens later in the same line, by v."""
    line = np.repeat(np.arange(len(sizes)), sizes)
    same = line[:-distance] == line[distance:]
    pairs = (np.ones(int(same.sum())), (ids[:-distance][same], ids[distance:][same]))
    return sp.coo_matrix(pairs, shape=(n, n)).tocsr()  # duplicates are summed


def next_token_pmi(counts, unigram):
    """log(1 + P(v | c) / P(v)) on the observed pairs (see the module doc), float32 CSR."""
    coo = counts.tocoo()
    per_context = np.asarray(counts.sum(axis=1)).ravel()
    values = np.log1p(coo.data / per_context[coo.row] / unigram[coo.col])
    return sp.csr_matrix((values.astype(np.float32), (coo.row, coo.col)), shape=counts.shape)


def top_right_singular(matrix, rank, seed, oversample=OVERSAMPLE, power_iters=POWER_ITERS, rtol=1e-6):
    """Top right singular vectors (n, r) and values (r,) of a sparse (m, n) matrix, r <= rank, values
    below rtol of the top dropped; a seeded range finder on M^T M keeps only (n, width) blocks."""
    width = min(rank + oversample, matrix.shape[1])
    basis = np.random.default_rng(seed).standard_normal((matrix.shape[1], width))
    for _ in range(power_iters + 1):
        basis = _orthonormal(_product(matrix.T, _product(matrix, basis)))
    projected = _product(matrix, basis).astype(np.float64)  # M Q, (m, width)
    values, vectors = np.linalg.eigh(projected.T @ projected)  # (M Q)^T M Q = W S^2 W^T
    order = np.argsort(values)[::-1][:rank]
    singular = np.sqrt(np.clip(values[order], 0.0, None))
    keep = singular > rtol * singular[0]
    return basis @ vectors[:, order[keep]], singular[keep]


def next_token_factors(ids, sizes, n, counts, rank, window, seed):
    """(context (n, r), target (n, r)) rows U_1 S^1/2 and V S^1/2, r <= rank (module doc, steps 1-2)."""
    unigram = counts / counts.sum()
    blocks = [next_token_pmi(directional_counts(ids, sizes, n, d), unigram) for d in range(1, window + 1)]
    target, singular = top_right_singular(sp.vstack(blocks, format="csr"), rank, seed)
    context = _product(blocks[0], target).astype(np.float64) / np.sqrt(singular)  # M_1 V S^-1/2
    return context, target * np.sqrt(singular)


def unit_rows(vectors, norm):
    """Rows rescaled to `norm`; zero rows (e.g. an id never followed by anything) stay zero."""
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, lengths, out=np.zeros_like(vectors), where=lengths > 0) * norm


def centred_log_frequency(tokens, vocabulary_size, smoothing=SMOOTHING):
    """(vocabulary_size,) add-`smoothing` log p(v) minus its token-weighted mean (frequent ids near 0)."""
    counts = np.bincount(tokens, minlength=vocabulary_size).astype(np.float64)
    log_p = np.log((counts + smoothing) / (counts.sum() + smoothing * vocabulary_size))
    return log_p - counts @ log_p / counts.sum()


def reflect_first_to_ones(table):
    """Reflect `table`'s rows in place, e_0 -> ones / sqrt(dim); returns m, the image of e_1."""
    dim = table.shape[1]
    normal = -np.full(dim, 1.0 / np.sqrt(dim))
    normal[0] += 1.0
    normal /= np.linalg.norm(normal)
    table -= 2.0 * np.outer(table @ normal, normal)
    return np.eye(dim)[1] - 2.0 * normal[1] * normal


def position_weight(scale, dim, position_constant):
    """a_m, the weight of f along m that makes MiniGPT1's initial logits the unigram's: LayerNorm
    maps position + token row to norm sqrt(dim), leaving ~sqrt(dim) * position_constant / |sum| on m."""
    row = scale * np.sqrt(dim)
    return np.sqrt(position_constant**2 + 2 * row**2) / (np.sqrt(dim) * position_constant)


def next_token_svd(tokens, sizes, vocabulary_size, dim, n_positions, seed, scale, window):
    """(token rows (vocabulary_size, dim) float32, position rows, record fields): module doc, steps 1-4."""
    check_ids(tokens, sizes, vocabulary_size)
    seen, compact, counts = np.unique(tokens, return_inverse=True, return_counts=True)
    half = (dim - 2) // 2
    context, target = next_token_factors(compact, sizes, len(seen), counts, half, window, seed)
    body = np.zeros((len(seen), dim))
    body[:, 2 : 2 + context.shape[1]] = unit_rows(context, scale * np.sqrt(dim / 2))
    body[:, 2 + half : 2 + half + target.shape[1]] = unit_rows(target, scale * np.sqrt(dim / 2))
    table = np.empty((vocabulary_size, dim))
    table[:] = unseen_vector(body, counts)
    table[seen] = body
    frequency = centred_log_frequency(tokens, vocabulary_size)
    weights = {"freq_ones": FREQ_ONES, "freq_position": position_weight(scale, dim, POSITION_CONSTANT),
               "position_constant": POSITION_CONSTANT, "smoothing": SMOOTHING}
    table[:, 0] = FREQ_ONES * frequency
    table[:, 1] = weights["freq_position"] * frequency
    m = reflect_first_to_ones(table)
    table[0] = 0.0  # padding, even if a corpus used id 0
    positions = (sinusoidal_positions(n_positions, dim, scale) + POSITION_CONSTANT * m).astype(np.float32)
    method = NEXT_TOKEN_METHOD.format(window=window, scale=scale, **weights)
    return table.astype(np.float32), positions, dict(weights, method=method)


def sinusoidal_positions(n_positions, dim, rms):
    """(n_positions, dim) float32: sin/cos pairs at geometric wavelengths, per-entry RMS `rms`."""
    position = np.arange(n_positions, dtype=np.float64)[:, None]
    frequency = 10000.0 ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.zeros((n_positions, dim), np.float64)
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency[: dim // 2])
    return (table * rms / np.sqrt(np.mean(table**2))).astype(np.float32)


# name -> builder(tokens, sizes, vocabulary_size, dim, n_positions, seed, scale, window); the first is the default
METHODS = {"next-token-svd": next_token_svd, "ppmi-svd": ppmi_svd}
