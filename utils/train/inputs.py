"""What a run reads before it starts, each checked with a one-line UsageError: the device, the data
splits, the embeddings (against the data and the model), the batches of each process, the word table."""
import os

import torch

from utils.data import PROJECT_DATA
from utils.data.batches import TensorBatches
from utils.data.embeddings import EmbeddingsError, read_embeddings
from utils.data.wikitext2 import SPLITS, Wikitext2
from utils.data.words import word_end_table
from utils.models.registry import model_spec
from utils.train.distributed import SINGLE
from utils.train.settings import UsageError


def resolve_device(requested, dist=SINGLE, fallback=True):
    """The torch.device to use; without CUDA, `cuda` becomes the CPU (with a notice) when `fallback`."""
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise UsageError(f"Unknown device {requested!r}: use --device cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"Unsupported device {requested!r}: use --device cpu, cuda or cuda:N.")
    if device.type == "cuda" and not torch.cuda.is_available():
        if not fallback:
            raise UsageError(f"--device {requested}: CUDA is not available here; use --device cpu.")
        if dist.is_main:
            print("Note: CUDA is not available; running on the CPU.")
        return torch.device("cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {requested}: this machine has {torch.cuda.device_count()} GPU(s).")
    return dist.device(device)


def load_splits(folder, dist=SINGLE):
    """The splits in `folder`, or the project's data/ (with a notice) for the course's default elsewhere."""
    if os.path.normpath(folder) == "data" and not os.path.isfile(os.path.join(folder, "wiki.train.npz")) and \
            os.path.isfile(os.path.join(PROJECT_DATA, "wiki.train.npz")):
        if dist.is_main:
            print(f"Note: {folder} has no wiki.train.npz here; using the project's {PROJECT_DATA}.")
        folder = PROJECT_DATA
    if not os.path.isfile(os.path.join(folder, "wiki.train.npz")):
        raise UsageError(f"Missing data file {os.path.join(folder, 'wiki.train.npz')}: pass --data_folder with "
                         "wiki.{train,validation,test}.npz (the project's data/ has Wikitext-2; "
                         "python -m utils.prepare_data makes them from your text).")
    try:
        return {name: Wikitext2(folder, split=name) for name in SPLITS}
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None


def load_embeddings(settings, splits):
    """(tokens (V, E), position (P, E), description) checked against the data and the model."""
    from utils.data.build_embeddings import describe_embeddings

    path = settings.embeddings
    try:
        tokens, position = read_embeddings(path)
    except EmbeddingsError as err:
        raise UsageError(str(err)) from None
    max_id = max(int(ds.tokens.max()) for ds in splits.values())
    if max_id >= tokens.shape[0]:
        raise UsageError(f"{path} has {tokens.shape[0]} token rows but the data uses ids up to {max_id}.")
    problem = model_spec(settings.model).check(tokens.shape, position.shape, splits["train"].max_length)
    if problem:
        raise UsageError(f"{path}: {problem}.")
    return tokens, position, describe_embeddings(path)


def make_batches(splits, settings, device, dist=SINGLE):
    if settings.batch_size % dist.world:
        raise UsageError(f"--batch_size {settings.batch_size} does not divide among {dist.world} processes: use a "
                         f"multiple of {dist.world} (it is the global batch, shared by all processes).")
    return {name: TensorBatches(splits[name], settings.batch_size, shuffle=name == "train", seed=settings.seed,
                                device=device, rank=dist.rank, world=dist.world) for name in SPLITS}


def word_table(settings, device, dist=SINGLE):
    """Which token ids end a word, for word-level perplexity; None (with a notice) without the BPE files."""
    try:
        return word_end_table(settings.vocab_folder).to(device)
    except (OSError, ValueError) as err:
        if dist.is_main:
            print(f"Note: no word-level perplexity ({err}).")
        return None
