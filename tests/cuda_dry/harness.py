"""The CUDA dry run: the kit's own GPU code path on a CPU build of torch, without a GPU.

Tensors claiming device "cuda" are FakeTensorMode's (shapes, dtypes and devices, no data). A CPU
build still refuses them a device guard and CUDA hooks, so fake_cuda.cpp (built once with
torch.utils.cpp_extension into build/cuda_dry/, git-ignored) registers a do-nothing guard and hooks
saying one device and cuDNN exist, and the CUDA build's route from nn.LSTM to cuDNN (at::lstm's
cuDNN stub, _cudnn_rnn's autocast cast); _register_cudnn_rnn gives _cudnn_rnn and its backward
their fake kernels. ATen looks its hooks up once, early in `import torch`, so the library is
loaded (activate) BEFORE torch is imported: the dry run lives in its own process (`python -m
tests.cuda_dry.harness`, one JSON line out; tests/test_cuda_dry.py and bench/roofline.py run it).

What it checks for free: device mixing raises (FakeTensorMode); a host read (.item(), .tolist(), a
copy to the CPU) is counted per step, and answered with a placeholder so the code runs on. Every
aten op is logged with its bytes read and written (views: none; gathers and scatters: what they
touch), its FLOPs (torch.utils.flop_counter's formulas; cuDNN's RNN: _rnn_cost) and its dtypes; ops
inside the LSTM's recurrence are tagged. What it cannot do: let SDPA choose its kernel (the one it
would pick is called by name), fused SGD (no fake kernel: an unfused stand-in), or time anything.
"""
import argparse
import contextlib
import ctypes
import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build", "cuda_dry")
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_cuda.cpp")
# name: (compute capability, device name as torch.cuda.get_device_name gives it)
GPUS = {"T4": ((7, 5), "Tesla T4"), "A100": ((8, 0), "NVIDIA A100-SXM4-80GB"), "H100": ((9, 0), "NVIDIA H100 80GB HBM3")}
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
FULL = dict(batch_size=16, seq_len=256)  # the study's batches: what the byte counts are for
VOCAB, WIDTH = 40479, 768


def build(timeout=900):
    """Compile fake_cuda.cpp (ninja: nothing to do when unchanged); the library's path. RuntimeError
    with the compiler's last lines when it cannot be built."""
    os.makedirs(BUILD, exist_ok=True)
    code = ("import sys; from torch.utils.cpp_extension import load; "
            "load('fake_cuda', [sys.argv[1]], build_directory=sys.argv[2], is_python_module=False)")
    try:
        done = subprocess.run([sys.executable, "-c", code, SOURCE, BUILD], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(f"cannot build the CUDA dry run's extension: {err}") from None
    library = os.path.join(BUILD, "fake_cuda.so")
    if done.returncode or not os.path.isfile(library):
        raise RuntimeError("cannot build the CUDA dry run's extension (needs g++ and ninja):\n"
                           + (done.stderr or done.stdout)[-2000:])
    return library


def activate(library):
    """Load the fake CUDA guard and hooks; must run before torch is imported."""
    if "torch" in sys.modules:
        raise RuntimeError("activate() must run before torch is imported (ATen caches its CUDA hooks)")
    lib = os.path.join(importlib.util.find_spec("torch").submodule_search_locations[0], "lib")
    for name in ("libc10.so", "libtorch_cpu.so"):
        ctypes.CDLL(os.path.join(lib, name), mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
    import torch

    if not torch.ops.fake_cuda.hooks_active():
        raise RuntimeError("the fake CUDA hooks are not the ones ATen uses")
    _register_cudnn_rnn()


_KERNELS = []  # the Library objects holding the fake cuDNN RNN kernels (registered while alive)


def _register_cudnn_rnn():
    """Fake (Meta) kernels for cuDNN's RNN, the op nn.LSTM runs on CUDA (fake_cuda.cpp routes it there):
    torch's own _cudnn_rnn meta gives an empty reserve and passes no weight_buf on, so its outputs are
    remade here as cuDNN's kernel makes them; its backward has none."""
    import torch
    from torch._meta_registrations import _cudnn_rnn as shapes

    def forward(input, weight, weight_stride0, weight_buf, hx, cx, mode, hidden_size, proj_size, num_layers,
                batch_first, dropout, train, bidirectional, batch_sizes, dropout_state):
        output, hy, cy, _, _ = shapes(input, weight, weight_stride0, weight_buf, hx, cx, mode, hidden_size, proj_size,
                                      num_layers, batch_first, dropout, train, bidirectional, batch_sizes, dropout_state)
        # cuDNN's reserve size is opaque (cudnnGetRNNTrainingReserveSize): per layer, direction, time step
        # and row, the four gates, the cell and the hidden state it keeps for the backward pass
        rows = input.numel() // input.shape[-1]  # T x B (packed: the sum of the batch sizes)
        size = num_layers * (1 + bidirectional) * rows * 6 * hidden_size * input.element_size() if train else 0
        if weight_buf is None:  # the kernel copies unflattened weights into a buffer of its own and returns it
            weight_buf = input.new_empty(sum(w.numel() for w in weight))
        return output, hy, cy, input.new_empty(size, dtype=torch.uint8), weight_buf

    def backward(input, weight, weight_stride0, weight_buf, hx, cx, output, grad_output, grad_hy, grad_cy, mode,
                 hidden_size, proj_size, num_layers, batch_first, dropout, train, bidirectional, batch_sizes,
                 dropout_state, reserve, output_mask):
        # the input's gradients always (cuDNN's weight pass needs its data pass), the weights' when asked
        weights = [w.new_empty(w.shape) for w in weight] if output_mask[3] else []
        return input.new_empty(input.shape), hx.new_empty(hx.shape), cx.new_empty(cx.shape), weights

    library = torch.library.Library("aten", "IMPL")
    library.impl("_cudnn_rnn", forward, "Meta")
    library.impl("_cudnn_rnn_backward", backward, "Meta")
    _KERNELS.append(library)


def _placeholder(dtype):
    """What a host read of a fake tensor returns: no step counter or flag is ever 'set' (-1, False)."""
    import torch

    if dtype == torch.bool:
        return False
    return 1.0 if dtype.is_floating_point else -1


class OpLog:
    """Per-phase sums of one dry run: bytes, FLOPs, host reads, CPU-side ops, dtypes by op group."""

    def __init__(self):
        self.phases, self.phase, self.region = {}, "setup", None

    def start(self, phase):
        self.phase = phase
        return self.record()

    def record(self):
        return self.phases.setdefault(self.phase, dict(bytes=0, flops=0, host_reads=0, cpu_ops=[], dtypes={},
                                                        regions={}, by_op={}, flops_half=0, flops_fp32=0))

    def add(self, name, nbytes, flops, dtypes, on_cpu):
        entry = self.record()
        entry["bytes"] += nbytes
        entry["flops"] += flops
        entry["flops_half" if {"float16", "bfloat16"} & set(dtypes) else "flops_fp32"] += flops
        key = f"{self.region or 'model'}:{name}"
        entry["by_op"][key] = entry["by_op"].get(key, 0) + nbytes
        region = entry["regions"].setdefault(self.region or "model", [0, 0])  # [bytes, FLOPs]
        region[0] += nbytes
        region[1] += flops
        if on_cpu:
            entry["cpu_ops"].append(name)
        if dtypes and flops:  # what the matmuls run in
            group = entry["dtypes"].setdefault(self.region or "other", [])
            for dtype in dtypes:
                if dtype not in group:
                    group.append(dtype)

    def host_read(self):
        self.record()["host_reads"] += 1


# Ops that touch only what their index names (their full inputs are not read).
SPARSE = {"gather", "index", "index_select", "embedding", "index_put", "index_put_", "scatter_add_", "scatter_add",
          "scatter", "scatter_", "index_add_", "embedding_dense_backward", "_index_put_impl_", "masked_fill_"}


def _rnn_cost(name, args, out, nbytes):
    """(bytes, FLOPs) of cuDNN's RNN forward or backward. Bytes: every tensor read or written once (a floor:
    cuDNN re-reads W_hh from L2 at each time step), weight_buf not on top of the weights (flattened, they
    are the same memory). FLOPs: the gates' matmuls, 2 x T x B x 4H x (in + H) per layer forward; the
    backward's data pass as many, its weight pass as many again."""
    read = [args[0], *args[1], args[4], args[5]]  # input, weights, hx, cx
    if name == "_cudnn_rnn":
        written = out[:4]  # output, hy, cy, reserve
    else:
        read += [*args[6:10], args[20]]  # output, its three gradients, reserve
        written = [*out[:3], *out[3]]
    rows = args[0].numel() // args[0].shape[-1]  # T x B (packed: the sum of the batch sizes)
    flops = 2 * rows * sum(w.numel() for w in args[1] if w.dim() == 2)
    if name == "_cudnn_rnn_backward":
        flops *= 1 + bool(args[21][3])
    return sum(nbytes(t) for t in [*read, *written] if t is not None), flops


def _logging_mode(log):
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    from torch.utils.flop_counter import flop_registry

    def nbytes(t):
        return t.numel() * t.element_size()

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten._local_scalar_dense.default:
                log.host_read()
                return _placeholder(args[0].dtype)
            out = func(*args, **kwargs)
            name = func._overloadpacket.__name__
            inputs = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
            outputs = [o for o in tree_leaves(out) if isinstance(o, torch.Tensor)]
            if name in ("_to_copy", "copy_") and any(i.is_cuda for i in inputs) and any(
                    o.device.type == "cpu" for o in outputs):
                log.host_read()  # a device-to-host copy waits for the device
            written = outputs or [a for arg, value in zip(func._schema.arguments, args) if arg.alias_info is not None
                                  and arg.alias_info.is_write for a in tree_leaves(value) if isinstance(a, torch.Tensor)]
            flops = 0
            if name in ("_cudnn_rnn", "_cudnn_rnn_backward"):  # no formula in flop_counter
                moved, flops = _rnn_cost(name, args, out, nbytes)
            elif not written or func.is_view or name in ("detach", "alias", "lift_fresh", "_unsafe_view", "t", "expand",
                                                       "empty", "empty_like", "empty_strided", "new_empty", "set_"):
                moved = 0  # no data moves (a view, a device query, an allocation, a tensor pointed at a storage)
            elif name in SPARSE:
                touched = outputs[0] if not func._schema.name.endswith("_") else inputs[-1]
                moved = 2 * nbytes(touched) + sum(nbytes(i) for i in inputs if i.dtype in (torch.long, torch.int))
            else:
                moved = sum(nbytes(t) for t in inputs) + sum(nbytes(t) for t in written)
            if func._overloadpacket in flop_registry:
                flops = flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
            on_cpu = any(t.device.type == "cpu" and t.dim() > 0 for t in inputs + outputs) and name not in (
                "_to_copy", "copy_")
            dtypes = sorted({str(t.dtype).replace("torch.", "") for t in outputs if t.dtype.is_floating_point})
            log.add(name, moved, flops, dtypes, on_cpu)
            return out

    return Mode()


@contextlib.contextmanager
def fake_gpu(gpu, log):
    """Inside: torch.cuda says one `gpu` (a GPUS key) exists, tensors are fake, every op is logged."""
    import torch
    from unittest import mock
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    capability, device_name = GPUS[gpu]
    real_tolist = torch.Tensor.tolist

    def tolist(tensor):
        if isinstance(tensor, FakeTensor):
            log.host_read()
            return _nested(tensor.shape, _placeholder(tensor.dtype))
        return real_tolist(tensor)

    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        """The kernel SDPA picks on such a GPU (flash from sm_80 in half precision, else memory-efficient),
        called by name: the fake CUDA cannot run SDPA's choice and would take the (B, nh, T, T) math path."""
        if attn_mask is not None or not q.is_cuda or kwargs:
            return real_sdpa(q, k, v, attn_mask, dropout_p, is_causal, **kwargs)
        if capability >= (8, 0) and q.dtype in (torch.float16, torch.bfloat16):
            return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal)[0]
        return torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, dropout_p, is_causal)[0]

    patches = [mock.patch("torch.cuda.is_available", lambda: True),
               mock.patch("torch.cuda.device_count", lambda: 1),
               mock.patch("torch.cuda.current_device", lambda: 0),
               mock.patch("torch.cuda.set_device", lambda device: None),
               mock.patch("torch.cuda.get_device_capability", lambda device=None: capability),
               mock.patch("torch.cuda.get_device_name", lambda device=None: device_name),
               mock.patch("torch.cuda.is_bf16_supported", lambda including_emulation=True: True),
               mock.patch("torch.cuda.synchronize", lambda device=None: None),
               mock.patch("torch.cuda.memory_allocated", lambda device=None: 0),
               mock.patch("torch.cuda.max_memory_allocated", lambda device=None: 0),
               mock.patch("torch.cuda.reset_peak_memory_stats", lambda device=None: None),
               mock.patch("torch.cuda.manual_seed_all", lambda seed: None),
               mock.patch.object(torch.Tensor, "tolist", tolist),
               mock.patch("torch.nn.functional.scaled_dot_product_attention", sdpa),
               # a real one-element constant must not really move to "cuda" (there is none)
               mock.patch.object(FakeTensorMode, "avoid_device_init", property(lambda self: True))]
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
        stack.enter_context(_logging_mode(log))
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def _nested(shape, value):
    return value if not shape else [_nested(shape[1:], value) for _ in range(shape[0])]


def _embeddings(seq_len, vocab, width):
    import torch

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(vocab, width, generator=generator) * 0.15
    tokens[0] = 0.0
    return tokens, torch.randn(max(seq_len, FULL["seq_len"]), width, generator=generator) * 0.15


def _build(model, layers, tables):
    """The model as a run builds it (the registry), real and on the CPU: parameters are made fake
    by .to("cuda") inside fake_gpu (FakeTensorMode cannot swap a fake parameter's device)."""
    import torch
    from utils.models.registry import model_spec
    from utils.train.settings import Arguments

    torch.manual_seed(0)
    return model_spec(model).build(Arguments(model=model, layers=layers), *tables)


def has_fake_fused_kernel(optimizer):
    import torch

    kernel = {"sgd": "_fused_sgd_", "momentum": "_fused_sgd_", "adam": "_fused_adam_", "adamw": "_fused_adamw_"}
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{kernel[optimizer]}", "Meta")


def state_layout(optimizer):
    """{state key: [device type, dtype]} over every tensor of the optimizer's state (one entry per
    key: the test asserts all parameters agree)."""
    import torch

    layout = {}
    for per_param in optimizer.state.values():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                entry = [value.device.type, str(value.dtype).replace("torch.", "")]
                layout.setdefault(key, entry)
                if layout[key] != entry:
                    layout[key] = ["mixed", "mixed"]
    return layout


def _batches(count, batch_size, seq_len, device, vocab):
    import torch

    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(count):
        tokens = torch.randint(1, vocab, (batch_size, seq_len + 1), generator=generator).to(device)
        out.append({"source": tokens[:, :-1], "target": tokens[:, 1:], "mask": torch.ones(batch_size, seq_len,
                                                                                         device=device)})
    return out


def _as_cpu_file(state):
    """A CUDA-written checkpoint as torch.load(map_location="cpu") gives it back: same keys, shapes and
    dtypes, on the CPU (a fake tensor has no values: zeros stand in)."""
    import torch
    from torch.utils._pytree import tree_map

    return tree_map(lambda v: torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor) else v, state)


def _reference(log, device, tokens, table, precision):
    vocab, width = table.shape
    """Bytes of the plain loss at this size: a half-precision mm + F.cross_entropy, with its backward
    (train) and without (eval), the table already in the compute dtype."""
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision.name, torch.float32)
    weight = table.to(device, dtype)
    targets = torch.randint(0, vocab, (tokens,), device=device)
    figures = {}
    for phase in ("train", "eval"):
        features = torch.randn(tokens, width, device=device, dtype=dtype, requires_grad=phase == "train")
        log.start(f"reference_{phase}")
        log.region = "loss"
        loss = torch.nn.functional.cross_entropy(features @ weight.t(), targets)
        if phase == "train":
            loss.backward()
        log.region = None
        figures[phase] = log.record()["regions"]["loss"][0]
    return figures


def dry_run(gpu, model, layers, optimizer, precision="auto", batch_size=16, seq_len=256, steps=3, vocab=VOCAB,
            width=WIDTH, resume=True):
    """One configuration's whole path: a CPU run writes a checkpoint; on the fake `gpu` it is resumed,
    trained `steps` steps (the last prints), evaluated with word counts and checkpointed; that
    checkpoint is resumed on the CPU and trained one real step. Returns a JSON-able record.
    resume=False: the fake GPU's part alone, from a fresh model (what the benchmark counts)."""
    import io

    import torch
    from unittest import mock

    import run_exp
    import utils.models.base as base
    from utils.runs.checkpoint import learned_state
    from utils.train.optim import load_optimizer_state, make_optimizer
    from utils.train.precision import Precision
    from utils.train.run import Run
    from utils.train.settings import Arguments

    settings = Arguments(optimizer=optimizer, print_every=steps, epochs=1)  # the printing step: the last

    class DryRun(Run):
        def after_step(self, steps, done):  # the op log's phases: train1, train2, ..., train_end, eval1, ...
            mode = "train" if steps.training else "eval"
            log.start(f"{mode}{done + 1}" if done < steps.total else f"{mode}_end")

    def train(net, batches, opt, precision, scaler=None, run_class=Run, **extra):
        run = run_class(settings, net, base.TokenNLL(net), opt, precision, scaler or precision.make_scaler(), **extra)
        return run_exp.train(0, net, batches, opt, settings, run), run
    tables = _embeddings(seq_len, vocab, width)
    fp32 = Precision("fp32", "cpu")
    tiny = _batches(1, 2, 8, "cpu", vocab)

    # 1. A run on the CPU writes its checkpoint (a real step, on a tiny batch).
    written = None
    if resume:
        cpu_model = _build(model, layers, tables)
        cpu_optimizer = make_optimizer(settings, cpu_model)
        train(cpu_model, tiny, cpu_optimizer, fp32)
        buffer = io.BytesIO()
        torch.save({"model": learned_state(cpu_model), "optimizer": cpu_optimizer.state_dict()}, buffer)
        written = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)

    # 2. The fake GPU resumes it, trains, prints, evaluates and checkpoints.
    log, record = OpLog(), dict(gpu=gpu, model=model, layers=layers, optimizer=optimizer, batch_size=batch_size,
                               seq_len=seq_len, precision=precision, vocab=vocab, width=width)
    gpu_model = _build(model, layers, tables)
    real_nll = base.tied_token_nll

    def tagged_nll(*args, **kwargs):
        log.region = "loss"
        try:
            return real_nll(*args, **kwargs)
        finally:
            log.region = None

    with fake_gpu(gpu, log), mock.patch.object(base, "tied_token_nll", tagged_nll):
        device = torch.device("cuda")
        net = gpu_model.to(device)
        if written:
            net.load_state_dict(written["model"], strict=False)
        fused = has_fake_fused_kernel(optimizer)
        opt = make_optimizer(settings, net, fused=None if fused else False)
        record["fused"] = bool(opt.param_groups[0].get("fused"))
        if written:
            load_optimizer_state(opt, written["optimizer"])
        record["resumed_state"] = state_layout(opt)
        chosen = Precision.resolve(precision, device)
        chosen.configure()
        if getattr(net, "lstm", None) is not None:
            net.lstm.register_forward_pre_hook(lambda *_: setattr(log, "region", "recurrence"))
            net.lstm.register_forward_hook(lambda *_: setattr(log, "region", None))
        scaler = chosen.make_scaler()
        batches = _batches(steps, batch_size, seq_len, device, vocab)
        table = (torch.arange(vocab, device=device) % 3 == 0)  # words end at every third id
        log.start("train1")
        _, run = train(net, batches, opt, chosen, scaler, DryRun, word_table=table)
        record["trained_state"] = state_layout(opt)
        log.start("eval1")
        result = run_exp.evaluate(0, net, batches[:2], settings, "valid", run)
        record["eval_words"] = result.words is not None
        log.start("checkpoint")
        state = {"model": learned_state(net), "optimizer": opt.state_dict(), "scaler": scaler.state_dict()}
        record["checkpoint_devices"] = sorted({v.device.type for v in state["model"].values()})
        record["provenance"] = chosen.describe(net)
        record["reference"] = _reference(log, device, batch_size * seq_len, tables[0], chosen)
    record["phases"] = log.phases
    if not resume:
        return record
    cuda_written = _as_cpu_file(state)  # out of the fake mode: real zeros

    # 3. Back on the CPU: the GPU's checkpoint continues there.
    back = _build(model, layers, tables)
    back.load_state_dict(cuda_written["model"], strict=False)
    back_optimizer = make_optimizer(settings, back)
    load_optimizer_state(back_optimizer, cuda_written["optimizer"])
    loss = train(back, tiny, back_optimizer, fp32)[0].loss
    record["back_on_cpu"] = dict(state=state_layout(back_optimizer), fused=back_optimizer.param_groups[0].get("fused"),
                                 loss=loss)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run configurations on a fake GPU; one JSON line per run.")
    parser.add_argument("--library", required=True, help="fake_cuda.so from build()")
    parser.add_argument("--runs", required=True, help="JSON list of dry_run keyword dicts")
    args = parser.parse_args(argv)
    activate(args.library)
    for kwargs in json.loads(args.runs):
        print(json.dumps(dry_run(**kwargs)), flush=True)
    return 0


def run_all(runs, timeout=1200):
    """Build, then dry-run `runs` (dry_run keyword dicts) in fresh interpreters, one per GPU class at
    once; the records, in the order of `runs`."""
    library = build()
    groups = {}
    for index, run in enumerate(runs):
        groups.setdefault(run["gpu"], []).append((index, run))
    procs = {gpu: subprocess.Popen([sys.executable, "-m", "tests.cuda_dry.harness", "--library", library, "--runs",
                                    json.dumps([run for _, run in group])], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for gpu, group in groups.items()}
    records = [None] * len(runs)
    for gpu, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in procs.values():
                other.kill()
            raise RuntimeError(f"the CUDA dry run ({gpu}) took over {timeout} s") from None
        if proc.returncode:
            raise RuntimeError(f"the CUDA dry run ({gpu}) failed:\n" + err[-4000:])
        found = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        for (index, _), record in zip(groups[gpu], found):
            records[index] = record
    return records


if __name__ == "__main__":
    sys.exit(main())
