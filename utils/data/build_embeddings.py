"""`python -m utils.build_embeddings`: a stand-in for GPT-1's `embeddings.npz` from a training split
(methods: utils/data/standins.py), written atomically with fixed zip timestamps (same data, seed and
BLAS, same bytes), with a JSON sidecar `<out>.json` saying how it was made (describe_embeddings)."""
import argparse
import json
import os
import sys
import time
import zipfile

import numpy as np

from utils.data import PROJECT_DATA
from utils.data.embeddings import GPT1_EMBEDDING_SIZE, GPT1_VOCABULARY_SIZE, file_sha256
from utils.data.standins import DEFAULT_WINDOW, METHODS, SCALE
from utils.data.wikitext2 import load_split
from utils.errors import UsageError
from utils.memory import peak_rss_mb
from utils.runs.atomic import atomic_write, atomic_write_json

N_POSITIONS = 512
DEFAULT_METHOD = next(iter(METHODS))
UNKNOWN = {"kind": "unknown (e.g. GPT-1 pretrained)"}


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
    """{"path", "sha256", **how it was made} from the file's sidecar; UNKNOWN without a matching one."""
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
          seed=0, scale=SCALE, window=None, method=DEFAULT_METHOD):
    """(arrays {"tokens", "position"}, record) built from `data_folder/wiki.train.npz` alone."""
    window = DEFAULT_WINDOW[method] if window is None else window
    tokens, sizes = load_split(data_folder, "train")
    table, positions, fields = METHODS[method](tokens, sizes, vocabulary_size, dim, n_positions, seed, scale, window)
    record = dict(fields, kind=method, seed=seed, scale=scale, window=window, vocabulary_size=vocabulary_size,
                  dim=dim, n_positions=n_positions, seen_ids=int(np.unique(tokens).size),
                  train_sha256=file_sha256(os.path.join(data_folder, "wiki.train.npz")))
    return {"tokens": table, "position": positions}, record


def save(out, arrays, record):
    """Write `out` then its sidecar, each atomically; the sidecar carries the file's sha256."""
    atomic_write(out, lambda handle: write_npz(handle, arrays))
    atomic_write_json(sidecar_path(out), dict(record, sha256=file_sha256(out)))


def norm_stats(table):
    """Row-norm summary of the non-padding rows, for the log line."""
    norms = np.linalg.norm(table[1:], axis=1)
    return {"mean": float(norms.mean()), "std": float(norms.std()), "min": float(norms.min()),
            "max": float(norms.max()), "entry_rms": float(np.sqrt(np.mean(table[1:] ** 2)))}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m utils.build_embeddings", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a stand-in for GPT-1's embeddings.npz offline, from a training split (the project's\n"
                    "Wikitext-2 by default), made to work as the models' tied output layer (next-token-svd) or\n"
                    "as word vectors (ppmi-svd). The same data, seed and BLAS give the same bytes; a <out>.json\n"
                    "sidecar records how it was made. Methods: the top of utils/data/standins.py.",
        epilog="examples:\n"
               "  python -m utils.build_embeddings --out data/embeddings.npz\n"
               "  python -m utils.build_embeddings --data_folder data/mycorpus --out data/mycorpus/embeddings.npz\n"
               "then: python run_exp.py --embeddings data/embeddings.npz ...")
    parser.add_argument("--data_folder", default=PROJECT_DATA, metavar="FOLDER",
                        help="folder with wiki.train.npz, e.g. one from utils.prepare_data (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="the .npz to write; a <out>.json sidecar goes beside it (required)")
    parser.add_argument("--method", choices=list(METHODS), default=DEFAULT_METHOD,
                        help="next-token-svd: rows that give unigram and next-token logits; ppmi-svd: the previous "
                             "word vectors (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomized SVD (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=SCALE,
                        help="RMS entry of the token rows (next-token-svd: of each half) and of the sinusoids; sets "
                             "the tied classifier's logit scale (default: %(default)s)")
    parser.add_argument("--window", type=int, default=None,
                        help="distances counted, in tokens, never crossing a line (default: "
                             + ", ".join(f"{k} {v}" for k, v in DEFAULT_WINDOW.items()) + ")")
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
    args, start = parse_args(argv), time.perf_counter()
    bad_window = args.window is not None and args.window < 1
    try:
        if os.path.exists(args.out) and not args.force:
            raise UsageError(f"{args.out} already exists; pass --force to overwrite it.")
        if args.scale <= 0 or bad_window or args.dim < 4 or args.dim % 2 or args.vocabulary_size < 2:
            raise UsageError("need --scale > 0, --window >= 1, an even --dim >= 4 and --vocabulary_size >= 2.")
        arrays, record = build(args.data_folder, args.vocabulary_size, args.dim, args.n_positions,
                               args.seed, args.scale, args.window, args.method)
    except (FileNotFoundError, ValueError) as err:  # UsageError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    record.update(seconds=round(time.perf_counter() - start, 1), peak_rss_mb=round(peak_rss_mb(), 1),
                  row_norms=norm_stats(arrays["tokens"]))
    save(args.out, arrays, record)
    print(json.dumps({k: record[k] for k in ("seconds", "peak_rss_mb", "row_norms", "seen_ids")}))
    print(f"wrote {args.out} and {sidecar_path(args.out)}")
    return 0
