"""Atomic files and run checkpoints: nothing half-written survives a crash or a kill."""
import json
import os
import tempfile

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def atomic_write(path, write):
    """Call write(file_object) on a temporary file beside `path`, then rename it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_checkpoint(run_dir, state):
    """state: dict with "model", "optimizer", "args", "epoch", "rng", "metrics" (see run_exp)."""
    atomic_write(os.path.join(run_dir, CHECKPOINT_NAME), lambda f: torch.save(state, f))


def load_checkpoint(run_dir, map_location="cpu"):
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path}: train the run first (python run_exp.py ...).")
    return torch.load(path, map_location=map_location, weights_only=False)


def build_model(args, tokens_weight=None, position_weight=None):
    """The model named by run args (a dict with "model" and "layers"); its vocabulary and width
    come from `tokens_weight` (V, E) when given, else the GPT-1 defaults with random embeddings."""
    from gpt1_solution import MiniGPT1
    from lstm_solution import LSTM

    learn = bool(args.get("learn_embeddings", False))
    sizes = {} if tokens_weight is None else dict(vocabulary_size=tokens_weight.shape[0],
                                                  embedding_size=tokens_weight.shape[1])
    if args["model"] == "lstm":
        return LSTM(hidden_size=512, num_layers=args["layers"], learn_embeddings=learn,
                    _embedding_weight=tokens_weight, **sizes)
    if args["model"] == "gpt1":
        return MiniGPT1(num_layers=args["layers"], learn_embeddings=learn, _tokens_embedding_weight=tokens_weight,
                        _positional_embedding_weight=position_weight, **sizes)
    raise ValueError(f"Unknown model {args['model']!r}: use lstm or gpt1.")


TIED_KEYS = {"lstm": ("embedding.weight", None), "gpt1": ("embedding.tokens.weight", "embedding.position.weight")}


def load_trained_model(run_dir, device="cpu"):
    """(model in eval mode, run args dict) from `run_dir/checkpoint.pt`; sizes come from the
    checkpoint's own embedding matrices, so no embeddings file is needed."""
    state = load_checkpoint(run_dir, map_location="cpu")
    args = state["args"]
    tokens_key, position_key = TIED_KEYS[args["model"]]
    weights = state["model"]
    model = build_model(args, weights[tokens_key].clone(), weights[position_key].clone() if position_key else None)
    model.load_state_dict(weights)
    return model.to(device).eval(), args
