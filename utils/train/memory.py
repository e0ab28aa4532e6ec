"""Will a run's batch fit? Checked on the built model before training, so an impossible --batch_size
is refused in one line. Per item, what the forward saves for backward is measured (two items minus
one: the weights' casts cancel); transient buffers come on top, so a refusal is never wrong."""
import torch

from utils.errors import UsageError
from utils.models.losses import tied_token_nll


def saved_bytes(model, items, length, precision):
    """Bytes autograd keeps for backward in TokenNLL's forward pass of `items` items of `length` tokens."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    device = next(model.parameters()).device
    tokens = torch.ones(items, length, dtype=torch.long, device=device)  # (B, T)
    training = model.training
    model.eval()  # no dropout, and the RNG forked besides: the run's numbers do not change
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), precision.autocast():
            features = model.sequence_features(tokens)  # (B, T, E)
            tied_token_nll(features.reshape(items * length, -1), model.tied_weight, tokens.reshape(-1))
    finally:
        model.train(training)
    return sum(seen.values())


def available_bytes(device):
    """Free memory where the run's tensors live: the GPU's, else the host's MemAvailable (None: unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def check_batch_fits(model, batch_size, items, length, precision, world=1):
    """UsageError naming the largest batch that fits when the global `batch_size` (<= `items`) cannot."""
    one = saved_bytes(model, 1, length, precision)
    per_item = max(saved_bytes(model, 2, length, precision) - one, 1)
    learnable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    fixed = max(one - per_item, 0) + 3 * learnable  # + gradients and up to two optimizer moments (Adam)
    device = next(model.parameters()).device
    processes = world if device.type == "cpu" else 1  # on a CPU they share the host's memory
    rows = -(-min(batch_size, items) // world)
    free = available_bytes(device)
    if free is None or processes * (fixed + rows * per_item) <= free:
        return
    largest = max(free // processes - fixed, 0) // per_item * world
    where = f"the GPU ({device})" if device.type == "cuda" else "this machine"
    advice = f"use --batch_size {largest} or less" if largest else "not even one item fits: free some memory first"
    raise UsageError(f"--batch_size {batch_size} needs at least {processes * (fixed + rows * per_item) / 2**30:.1f} "
                     f"GiB, more than the {free / 2**30:.1f} GiB free on {where}: {advice}.")


def out_of_memory(err):
    """Exhausted memory: Python's MemoryError, CUDA's, or torch's CPU allocator (a plain RuntimeError)."""
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err))
