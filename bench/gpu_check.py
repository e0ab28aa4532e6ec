"""The device check: on one GPU, in at most 8 minutes, one table of what must hold there.

    python -m bench.gpu_check            # on a CUDA machine
    python -m bench.gpu_check --dry      # the same code path on the CPU, tiny sizes (tests run it)

Rows: the CUDA-capable tests (tests/test_gpu_paths.py with LM_TEST_DEVICE=cuda); quiet training
steps under torch.cuda.set_sync_debug_mode("error") (and the host-read counter of
bench/host_syncs.py); seconds per epoch (train + validation at the study's 16 x 256) of LSTM and
MiniGPT1 at 1, 2 and 4 layers in the auto precision and at 1 and 4 in fp16, EXTRAPOLATED from
--steps timed steps after --warmup ones (576 training and 60 validation steps per epoch); the
achieved fraction of the GPU's matmul rate (the step's analytic matmul FLOPs per second against
an 8192^3 matmul in the same dtype); peak memory; and the 12-configuration x 10-epoch study
time, one run at a time and with K runs sharing the GPU (`--launcher local --max_parallel K`),
extrapolated from K concurrent worker processes. Targets (docs/gpu.md) are printed beside the
figures; they are the benchmark's, not the tests'. The table also goes to --out as JSON.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch

from bench.gpu_epoch_times import TRAIN_ITEMS

DEFAULT_OUT = os.path.join("bench", "results", "gpu_check.json")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VALID_ITEMS, TEST_ITEMS = 958, 1090  # Wikitext-2's validation and test items of 256 targets
EPOCHS = 10  # the study's epochs per configuration
# (compute capability floor, label, bf16/auto seconds per 1-layer epoch, study minutes) from issue 20.
TARGETS = (((8, 0), "A100/H100 class, auto (bf16)", 5.0, 12.0), ((0, 0), "T4 class, fp16", 25.0, 60.0))
FULL = dict(batch=16, seq_len=256, vocab=40479, width=768)
TINY = dict(batch=2, seq_len=16, vocab=500, width=48)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes: the same code path, meaningless figures")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 20; 1 dry)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 1 dry)")
    parser.add_argument("--parallel", default=None, help="numbers of runs sharing the GPU to time (default 2,4; 2 dry)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds; later sections are skipped past it")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one concurrent run
    parser.add_argument("--go", default=None, help=argparse.SUPPRESS)  # internal: the start barrier's folder
    return parser.parse_args(argv)


class Check:
    """The sizes, device and clock of one check."""

    def __init__(self, args):
        self.args, self.dry = args, args.dry
        if not self.dry and not torch.cuda.is_available():
            raise SystemExit("error: no CUDA device here: run it on a GPU, or with --dry on a CPU.")
        self.device = torch.device("cpu" if self.dry else "cuda")
        self.sizes = TINY if self.dry else FULL
        self.steps = args.steps or (1 if self.dry else 20)
        self.warmup = args.warmup if args.warmup is not None else (1 if self.dry else 3)
        self.started = time.perf_counter()
        self.rows, self.record = [], {}

    def left(self):
        return self.args.budget - (time.perf_counter() - self.started)

    def precision(self, name):
        """The precision a run would get; fp16 on the CPU only in dry mode (resolve() refuses it there)."""
        from utils.train.precision import Precision

        if self.dry and name == "fp16":
            return Precision("fp16", "cpu", "dry run: fp16 autocast on the CPU")
        chosen = Precision.resolve(name, self.device)
        chosen.configure()
        return chosen

    def row(self, check, value, target=""):
        self.rows.append((check, value, target))
        print(f"  {check}: {value}", flush=True)


# ----------------------------------------------------------------------------- the pieces
class RandomItems:
    """A split of n random full-length items, as TensorBatches reads it (the tests use it too)."""

    def __init__(self, n, seq_len, vocab, seed=0):
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randint(1, vocab, (n, seq_len + 1), generator=generator)
        self.tensors = {"source": tokens[:, :-1], "target": tokens[:, 1:], "mask": torch.ones(n, seq_len)}

    def __len__(self):
        return len(self.tensors["source"])

    def as_tensors(self):
        return self.tensors


def build_run(check, model, layers, precision_name, seed=0):
    """(TokenNLL module, optimizer, precision, scaler, batches) as a run builds them."""
    from types import SimpleNamespace

    from bench.common import LR, WEIGHT_DECAY, project_model
    from utils.data.batches import TensorBatches
    from utils.models.base import TokenNLL
    from utils.train.optim import make_optimizer

    s = check.sizes
    network = project_model(model, layers, s["seq_len"], seed, check.device, s["vocab"], s["width"])
    settings = SimpleNamespace(optimizer="adamw", lr=LR, weight_decay=WEIGHT_DECAY, momentum=0.9)
    precision = check.precision(precision_name)
    items = RandomItems(s["batch"] * (check.warmup + check.steps + 1), s["seq_len"], s["vocab"], seed)
    batches = TensorBatches(items, s["batch"], shuffle=True, seed=seed, device=check.device)
    fused = True if check.dry else None  # dry: the optimizer CUDA gets
    return TokenNLL(network), make_optimizer(settings, network, fused=fused), precision, precision.make_scaler(), batches


def run_tests(check):
    """The CUDA-capable tests on the device (dry: the capability tests on the CPU)."""
    env = dict(os.environ, LM_TEST_DEVICE=str(check.device))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu_paths.py",
               "-k", "PrecisionByCapability" if check.dry else "not GpuCheckDryRun"]  # never itself again
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(check.left(), 60))
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    check.record["tests"] = {"returncode": done.returncode, "summary": summary}
    check.row("tests/test_gpu_paths.py on " + str(check.device), summary, "all pass")
    if done.returncode:
        print(done.stdout[-3000:] + done.stderr[-2000:], file=sys.stderr)


def quiet_steps(check, model):
    """Train steps 2..n of an epoch with no reporter: under CUDA's sync debug mode ("error") and the
    host-read counter. Returns the number of would-synchronise calls (0 expected)."""
    from bench.host_syncs import count_host_syncs, cuda_branches
    from bench.common import loop_train

    nll, optimizer, precision, scaler, batches = build_run(check, model, 1, "auto")
    steps = check.warmup + check.steps
    seen = {}

    def hook(step):  # steps 2..steps run inside the strict window
        if step == 1:
            _set_sync_debug(check.device, "error")
            seen["start"] = counter.calls
        if step == steps:
            _set_sync_debug(check.device, "default")
            seen["end"] = counter.calls

    error = None
    with cuda_branches(), count_host_syncs() as counter:
        try:
            loop_train(nll, batches, optimizer, precision, scaler, stop=steps, on_step=hook)
        except RuntimeError as err:  # what set_sync_debug_mode("error") raises on a synchronisation
            error = (str(err).strip().splitlines() or ["RuntimeError"])[0][:200]
        finally:
            _set_sync_debug(check.device, "default")
    calls = seen.get("end", counter.calls) - seen.get("start", 0)
    check.record.setdefault("quiet_step_syncs", {})[model] = {"calls": calls, "where": counter.where[:5],
                                                              "error": error}
    check.row(f"{model}: host syncs in {steps - 1} quiet steps ({precision})", error or str(calls), "0")
    return calls + (error is not None)


def _set_sync_debug(device, mode):
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode(mode)


def time_epoch(check, model, layers, precision_name):
    """Seconds per epoch (train + validation), extrapolated from timed steps; peak memory; FLOP rate."""
    from bench.step_variants import step_flops
    import run_exp
    from bench.common import loop_run, loop_train

    nll, optimizer, precision, scaler, batches = build_run(check, model, layers, precision_name)
    s = check.sizes
    batches.set_epoch(0)
    loop_train(nll, batches, optimizer, precision, scaler, stop=check.warmup)  # warm-up
    if check.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(check.device)
    train = loop_train(nll, batches, optimizer, precision, scaler, start=check.warmup,
                       stop=check.warmup + check.steps)  # its time is taken after a synchronisation
    run = loop_run(nll, optimizer, precision, scaler, stop=check.steps)
    valid = run_exp.evaluate(0, nll.model, batches, run.settings, "valid", run)
    train_step, valid_step = train[2] / check.steps, valid[2] / check.steps
    per_epoch = _steps(TRAIN_ITEMS, s["batch"]) * train_step + _steps(VALID_ITEMS, s["batch"]) * valid_step
    flops = step_flops(model, s["batch"], s["seq_len"], layers, s["vocab"], s["width"])
    peak = torch.cuda.max_memory_allocated(check.device) / 2**20 if check.device.type == "cuda" else None
    result = {"model": model, "layers": layers, "precision": str(precision), "train_step_s": train_step,
              "valid_step_s": valid_step, "epoch_s": per_epoch, "test_pass_s": _steps(TEST_ITEMS, s["batch"]) * valid_step,
              "step_tflops": flops / train_step / 1e12, "peak_memory_mb": peak, "train_loss": train[0]}
    del nll, optimizer, batches
    if check.device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _steps(items, batch):
    return -(-items // batch)


def matmul_tflops(check, dtype, size=None, repeats=5):
    """Best rate of a size^3 matmul in `dtype` (8192 on a GPU), after a synchronisation."""
    size = size or (64 if check.dry else 8192)
    a = torch.randn(size, size, device=check.device, dtype=dtype)
    b = torch.randn(size, size, device=check.device, dtype=dtype)
    best = math.inf
    for _ in range(repeats + 1):
        _synchronize(check.device)
        start = time.perf_counter()
        a @ b
        _synchronize(check.device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- several runs at once
def worker(args):
    """One of K concurrent runs: MiniGPT1 x1 training steps; prints its seconds per step."""
    from bench.common import loop_train

    check = Check(args)
    nll, optimizer, precision, scaler, batches = build_run(check, "gpt1", 1, "auto")
    loop_train(nll, batches, optimizer, precision, scaler, stop=check.warmup)
    open(os.path.join(args.go, f"ready-{os.getpid()}"), "w").close()
    while not os.path.exists(os.path.join(args.go, "go")):
        time.sleep(0.01)
    result = loop_train(nll, batches, optimizer, precision, scaler, start=check.warmup,
                        stop=check.warmup + check.steps)
    print("RESULT " + json.dumps({"step_s": result[2] / check.steps}), flush=True)
    return 0


def concurrent_step_seconds(check, k):
    """Mean seconds per step of each of k runs training at once (MiniGPT1 x1), or None on failure."""
    with tempfile.TemporaryDirectory() as go:
        command = [sys.executable, "-m", "bench.gpu_check", "--worker", "gpt1", "--go", go, "--steps",
                   str(check.steps), "--warmup", str(check.warmup)] + (["--dry"] if check.dry else [])
        procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(k)]
        deadline = time.perf_counter() + max(check.left(), 60)
        while sum(name.startswith("ready-") for name in os.listdir(go)) < k:
            if time.perf_counter() > deadline or any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        open(os.path.join(go, "go"), "w").close()
        try:
            outputs = [p.communicate(timeout=max(deadline - time.perf_counter(), 10)) for p in procs]
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            print(f"{k} concurrent runs did not finish in the time budget", file=sys.stderr)
            return None
    steps = [json.loads(line[len("RESULT "):])["step_s"] for out, _ in outputs for line in out.splitlines()
             if line.startswith("RESULT ")]
    if len(steps) < k:
        print(f"{k} concurrent runs failed: {outputs[0][1][-1500:]}", file=sys.stderr)
        return None
    return sum(steps) / k


# ----------------------------------------------------------------------------- the whole check
def study_seconds(epochs):
    """The 12-configuration x 10-epoch study, one run at a time: each configuration's epochs (its
    model and depth, timed in auto precision) plus one test pass."""
    from utils.study.configs import CONFIGS

    by = {(e["model"], e["layers"]): e for e in epochs}
    return sum(EPOCHS * by[(c.model, c.layers)]["epoch_s"] + by[(c.model, c.layers)]["test_pass_s"]
               for c in CONFIGS.values())


def targets_for(check):
    if check.dry:
        return None
    capability = torch.cuda.get_device_capability(check.device)
    return next(t for t in TARGETS if capability >= t[0])


def run(check):
    name = "CPU (dry run)" if check.dry else torch.cuda.get_device_name(check.device)
    print(f"gpu_check on {name}, torch {torch.__version__}, budget {check.args.budget:.0f}s", flush=True)
    check.record.update(device=name, torch=torch.__version__, dry=check.dry, sizes=check.sizes,
                        steps=check.steps, warmup=check.warmup, date=time.strftime("%Y-%m-%d"))
    target = targets_for(check)
    run_tests(check)
    for model in ("lstm", "gpt1"):
        quiet_steps(check, model)
    epochs = []
    plan = [(m, n, "auto") for n in (1, 2, 4) for m in ("lstm", "gpt1")]
    if check.precision("auto").name != "fp16":  # on a T4, auto is fp16 already
        plan += [(m, n, "fp16") for n in (1, 4) for m in ("lstm", "gpt1")]
    for model, layers, precision in plan:
        if check.left() < 60:
            check.row(f"{model} x{layers} {precision}", "skipped: time budget")
            continue
        result = time_epoch(check, model, layers, precision)
        epochs.append(dict(result, asked=precision))
        goal = f"<= {target[2]:.0f} s" if target and layers == 1 and precision == "auto" else ""
        peak = "" if result["peak_memory_mb"] is None else f", peak {result['peak_memory_mb']:,.0f} MB"
        check.row(f"{model} x{layers} {precision} ({result['precision']}): s/epoch", f"{result['epoch_s']:.1f}{peak}", goal)
    check.record["epochs"] = epochs
    autos = [e for e in epochs if e["asked"] == "auto"]
    if autos:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(autos[0]["precision"], torch.float32)
        rate = matmul_tflops(check, dtype)
        check.record["matmul_tflops"] = rate
        for e in autos:
            if e["layers"] == 1:
                check.row(f"{e['model']} x1: fraction of the {rate:.3g} TFLOP/s matmul rate",
                          f"{e['step_tflops'] / rate:.0%}")
    if len(autos) == 6:
        alone = study_seconds(autos)
        check.record["study_s_one_at_a_time"] = alone
        goal = f"<= {target[3]:.0f} min" if target else ""
        check.row("12 x 10 study, one run at a time (extrapolated)", f"{alone / 60:.1f} min", goal)
        single = next(e["train_step_s"] for e in autos if e["model"] == "gpt1" and e["layers"] == 1)
        for k in (int(v) for v in (check.args.parallel or ("2" if check.dry else "2,4")).split(",") if v):
            if check.left() < 60:
                check.row(f"12 x 10 study, {k} runs sharing the GPU", "skipped: time budget")
                continue
            shared = concurrent_step_seconds(check, k)
            if shared is None:
                check.row(f"12 x 10 study, {k} runs sharing the GPU", "failed (see stderr)")
                continue
            speedup = k * single / shared
            check.record.setdefault("shared", {})[k] = {"step_s": shared, "speedup": speedup}
            check.row(f"12 x 10 study, {k} runs sharing the GPU (--max_parallel {k})",
                      f"{alone / speedup / 60:.1f} min (x{speedup:.2f} throughput)", goal)
    return check


def table(check):
    lines = ["| check | result | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in check.rows]
    note = (f"Seconds per epoch are extrapolated from {check.steps} timed steps (after {check.warmup}) to "
            f"{_steps(TRAIN_ITEMS, check.sizes['batch'])} training + {_steps(VALID_ITEMS, check.sizes['batch'])} "
            f"validation steps of {check.sizes['batch']} x {check.sizes['seq_len']}.")
    if check.dry:
        note += " DRY RUN: CPU, tiny sizes; the figures mean nothing."
    return "\n".join(lines) + "\n\n" + note


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    check = run(Check(args))
    text = table(check)
    print("\n" + text, flush=True)
    from bench.common import write_json

    write_json(args.out, dict(check.record, table=text))
    failed = check.record["tests"]["returncode"] != 0 or any(
        v["calls"] or v["error"] for v in check.record["quiet_step_syncs"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
