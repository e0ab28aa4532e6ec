"""Run checkpoints: what is learned, the optimizer, and where the run stands, written atomically.

Only the learned parameters: the frozen 124 MB embedding is recorded by its file's sha256, and a
run or generate.py rebuilds it from that file, refusing another. A checkpoint may come from
elsewhere: it is read with torch.load(weights_only=True) (no unpickled objects), never via a link.
"""
import errno
import os
import pickle
import warnings
import zipfile

from utils.runs.atomic import atomic_write
from utils.runs.schema import CHECKPOINT

FORMAT = 3  # what load_checkpoint reads: tensors and plain values, the data files' sha256 ("data")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line that says what to do."""


def save_checkpoint(run_dir, state):
    import torch

    atomic_write(os.path.join(run_dir, CHECKPOINT), lambda f: torch.save(dict(state, format=FORMAT), f))


def load_checkpoint(run_dir, map_location="cpu"):
    """The checkpoint's dict; CheckpointError when it is missing, truncated or not ours."""
    import torch

    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.lexists(path):
        raise CheckpointError(f"No checkpoint at {path}: train the run first (python run_exp.py ...).")
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as handle, \
                warnings.catch_warnings():  # a foreign pickle's protocol warning: the refusal below says it all
            warnings.simplefilter("ignore")
            if not zipfile.is_zipfile(handle):  # torch.save writes a zip: a bare pickle, a torn file are not ours
                raise zipfile.BadZipFile("not a zip archive")
            handle.seek(0)
            state = torch.load(handle, map_location=map_location, weights_only=True)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise CheckpointError(f"cannot read {path} ({err.strerror or err}): check its permissions.") from None
        raise CheckpointError(f"{path} is a symbolic link, which the kit never follows: put the run's own "
                              "checkpoint there, or rerun with --force to start over.") from None
    except pickle.UnpicklingError:  # the weights-only unpickler met something else than tensors and plain values
        raise CheckpointError(f"{path} holds objects other than tensors and plain values, so it is not loaded "
                              "(unpickling them could run code): delete it, or rerun with --force.") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as err:  # torch's message runs over lines
        raise CheckpointError(f"{path} is unreadable (truncated or damaged: {type(err).__name__}): rerun with "
                              "--force to start the run over, or restore the file.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this version of the project: rerun with --force "
                              "to start the run over.")
    return state


def learned_state(model):
    """model's state_dict without its frozen parameters (tied aliases included)."""
    frozen = set(model.frozen_parameter_names())
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def restore_model(model, state, embeddings_sha256):
    """Load a checkpoint's learned parameters into a model built on the same embeddings file."""
    recorded = state["embeddings_sha256"]
    if recorded != embeddings_sha256:
        raise CheckpointError(f"the checkpoint was trained on embeddings with sha256 {recorded[:12]}..., not "
                              f"{embeddings_sha256[:12]}...: pass the same --embeddings file, or --force to start over.")
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    if set(missing) != set(model.frozen_parameter_names()) or unexpected:
        raise CheckpointError(f"the checkpoint does not fit this model (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}): rerun with --force to start over.")


def check_data(state, data):
    """CheckpointError unless `data` (provenance.data_identity) has the content the checkpoint was trained on."""
    for split, now in data.items():
        was = state["data"].get(split, {})
        if was.get("sha256") != now["sha256"]:
            raise CheckpointError(f"the checkpoint was trained on {split} data {was.get('path')} (sha256 "
                                  f"{str(was.get('sha256'))[:12]}...), not {now['path']} (sha256 {now['sha256'][:12]}"
                                  "...): pass the --data_folder it was trained on, or --force to start over.")


def load_trained_model(run_dir, device="cpu", embeddings=None):
    """(model in eval mode, settings) from run_dir's checkpoint and its embeddings, checked by sha256."""
    from utils.data.embeddings import EmbeddingsError, file_sha256, read_embeddings
    from types import SimpleNamespace

    from utils.models.registry import model_spec

    state = load_checkpoint(run_dir)
    settings = state["settings"]
    path = embeddings or settings["embeddings"]
    try:
        tokens, position = read_embeddings(path)
    except EmbeddingsError as err:
        raise CheckpointError(f"{err} (the run was trained on it; pass --embeddings PATH)") from None
    model = model_spec(settings["model"]).build(SimpleNamespace(**settings), tokens, position)
    restore_model(model, state, file_sha256(path))
    return model.to(device).eval(), settings
