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
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
    """The model named by run args (a dict with "model" and "layers"), with default sizes.
    Without weights the embeddings are random; load a state_dict over them."""
    from gpt1_solution import MiniGPT1
    from lstm_solution import LSTM

    learn = bool(args.get("learn_embeddings", False))
    if args["model"] == "lstm":
        return LSTM(hidden_size=512, num_layers=args["layers"], learn_embeddings=learn, _embedding_weight=tokens_weight)
    if args["model"] == "gpt1":
        return MiniGPT1(
            num_layers=args["layers"], learn_embeddings=learn,
            _tokens_embedding_weight=tokens_weight, _positional_embedding_weight=position_weight,
        )
    raise ValueError(f"Unknown model {args['model']!r}: use lstm or gpt1.")


def load_trained_model(run_dir, device="cpu"):
    """(model in eval mode, run args dict) from `run_dir/checkpoint.pt`."""
    state = load_checkpoint(run_dir, map_location=device)
    model = build_model(state["args"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state["args"]
