"""A shared run folder cannot run code or eat files (issue 25): a planted malicious pickle is never
unpickled (a rerun, generate.py), a symlinked .lock or checkpoint.pt never reaches its target,
a user's folder holding only files with the kit's names is not taken over, a dangling-symlink
run folder is named as such; other data at resume is refused, an impossible batch is refused before
anything is written, memory running out and signals outside training are one line each with the
right exit code and a consistent status.json."""
import builtins
import hashlib
import json
import os
import pickle
import shutil
import signal
import tempfile
import unittest
import warnings
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

import generate
from tests import fixtures
from tests.test_resilience import RunCase, at_step, send
from utils.data import BPE_FOLDER
from utils.data.wikitext2 import SPLITS, Wikitext2
from utils.errors import UsageError
from utils.models.registry import model_spec
from utils.runs.checkpoint import CheckpointError, check_data
from utils.runs.provenance import data_identity
from utils.runs.schema import ARGS, CHECKPOINT, LOCK, MARKER, STATUS
from utils.train import memory, passes
from utils.train.precision import Precision


class Planted:
    """Unpickling this writes a file: the proof that a load ran code."""

    def __init__(self, proof):
        self.proof = proof

    def __reduce__(self):
        return builtins.exec, (f"with open({self.proof!r}, 'w') as f: f.write('code ran')",)


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class UntrustedCase(RunCase):
    def argv(self, exp_id="run", *extra, model="lstm"):
        return super().argv(exp_id, "--max_batches", "2", *extra, model=model)

    def interrupted(self, exp_id="run"):
        """A run stopped by SIGTERM in epoch 1 (status interrupted, a real checkpoint)."""
        with at_step(1, send(signal.SIGTERM)):
            self.assertEqual(self.cli(*self.argv(exp_id))[0], 143)
        return os.path.join(self.logs, exp_id)

    def generate(self, folder):
        return fixtures.run_main(generate.main, "--run", folder, "--prompt", "the history of", "--max_new_tokens",
                                 "3", "--bpe_folder", BPE_FOLDER)

    def assert_untouched(self, folder, before):
        self.assertEqual({n: digest(os.path.join(folder, n)) for n in before}, before)
        lock = os.path.join(folder, LOCK)
        if os.path.isfile(lock) and not os.path.islink(lock):
            self.assertEqual(Path(lock).read_text(), "", "a refused command left its .lock record")

    def files(self, folder):
        return {n: digest(os.path.join(folder, n)) for n in os.listdir(folder)
                if n != LOCK and not os.path.islink(os.path.join(folder, n))}


class MaliciousCheckpoint(UntrustedCase):
    def test_a_planted_pickle_never_runs_under_a_rerun_or_generate(self):
        folder = self.interrupted()
        proof = os.path.join(self.tmp, "proof")
        planted = {"format": 3, "model": Planted(proof)}
        makers = {"torch.save": (lambda f: torch.save(planted, f), lambda p: torch.load(p, weights_only=False),
                                 ("not loaded", "could run code")),
                  "plain pickle": (lambda f: pickle.dump(planted, f), lambda p: pickle.loads(Path(p).read_bytes()),
                                   ("unreadable", "--force"))}  # not even a zip, as torch.save writes
        for kind, (write, unsafe_load, refusal) in makers.items():
            with self.subTest(kind=kind):
                with open(os.path.join(folder, CHECKPOINT), "wb") as handle:
                    write(handle)
                with open(os.path.join(self.tmp, "check"), "wb") as handle:  # the planted file does run code
                    write(handle)
                unsafe_load(os.path.join(self.tmp, "check"))
                self.assertTrue(os.path.exists(proof))
                os.remove(proof)
                before = self.files(folder)
                for argv in (self.argv(), self.argv("run", "--epochs", "3")):
                    code, _, err = self.cli(*argv)
                    self.assert_refused(code, err, *refusal)
                with warnings.catch_warnings(record=True) as shown:  # no torch warning on top of the line
                    warnings.simplefilter("always")
                    code, out, err = self.generate(folder)
                self.assertEqual([str(w.message) for w in shown], [])
                self.assert_refused(code, err, refusal[0])
                self.assertEqual(out, "")
                self.assertFalse(os.path.exists(proof), f"unpickling {kind} ran code")
                self.assert_untouched(folder, before)
                status = json.loads(Path(folder, STATUS).read_text())
                self.assertEqual((status["status"], status["epoch"], status["step"]), ("interrupted", 1, 1))

    def test_the_kits_own_checkpoint_still_resumes(self):
        folder = self.interrupted()
        with open(os.path.join(folder, CHECKPOINT), "rb") as handle:
            state = torch.load(handle, weights_only=True)  # what the kit writes is plain enough for the safe loader
        self.assertEqual(state["position"]["step"], 1)
        code, out, err = self.cli(*self.argv())
        self.assertEqual(code, 0, err)
        self.assertIn("from its checkpoint at epoch 1, step 1", out)

    def test_no_unsafe_load_in_the_library(self):
        banned = ("weights_only=" + "False", "allow_pickle=" + "True")
        found = []
        for root, dirs, names in os.walk(fixtures.REPO_ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "tests"]
            for name in names:
                if name.endswith(".py"):
                    text = Path(root, name).read_text()
                    found += [f"{name}: {b}" for b in banned if b in text]
        self.assertEqual(found, [])


class Symlinks(UntrustedCase):
    def victim(self, content=b"a file the user cares about\n"):
        path = os.path.join(self.tmp, "victim")
        with open(path, "wb") as handle:
            handle.write(content)
        return path

    def test_a_symlinked_lock_never_empties_its_target(self):
        self.assertEqual(self.cli(*self.argv("done", "--epochs", "1"))[0], 0)
        for exp_id, extra in (("done", ()), ("done", ("--force",)), ("fresh", ())):
            with self.subTest(exp_id=exp_id, extra=extra):
                victim = self.victim()
                folder = os.path.join(self.logs, exp_id)
                os.makedirs(folder, exist_ok=True)
                if exp_id == "fresh":
                    open(os.path.join(folder, MARKER), "w").close()
                if os.path.lexists(os.path.join(folder, LOCK)):
                    os.remove(os.path.join(folder, LOCK))
                os.symlink(victim, os.path.join(folder, LOCK))
                code, _, err = self.cli(*self.argv(exp_id, "--epochs", "1", *extra))
                self.assert_refused(code, err, "symbolic link", LOCK)
                self.assertEqual(Path(victim).read_bytes(), b"a file the user cares about\n")
                self.assertTrue(os.path.islink(os.path.join(folder, LOCK)))

    def test_a_symlinked_checkpoint_is_refused_and_never_written_through(self):
        folder = self.interrupted()
        real = os.path.join(folder, CHECKPOINT)
        victim = self.victim(Path(real).read_bytes())  # even a genuine checkpoint is not read through a link
        before = digest(victim)
        os.remove(real)
        os.symlink(victim, real)
        code, _, err = self.cli(*self.argv())
        self.assert_refused(code, err, "symbolic link", CHECKPOINT)
        code, out, err = self.generate(folder)
        self.assert_refused(code, err, "symbolic link")
        self.assertEqual(json.loads(Path(folder, STATUS).read_text())["status"], "interrupted")
        self.assertEqual(self.cli(*self.argv("run", "--force"))[0], 0)  # starting over replaces the link itself
        self.assertFalse(os.path.islink(real))
        self.assertEqual(digest(victim), before)
        self.assertEqual(json.loads(Path(folder, STATUS).read_text())["status"], "completed")

    def test_a_dangling_symlink_run_folder_is_named(self):
        os.makedirs(self.logs)
        os.symlink(os.path.join(self.tmp, "gone"), os.path.join(self.logs, "run"))
        code, _, err = self.cli(*self.argv())
        self.assert_refused(code, err, "symbolic link", "does not exist")
        self.assertNotIn("File exists", err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "gone")))


class FolderWithKitNames(UntrustedCase):
    def test_a_users_folder_with_only_kit_named_files_is_not_taken_over(self):
        folder = os.path.join(self.logs, "mine2")
        os.makedirs(folder)
        for name, text in ((ARGS, '{"mine": true}\n'), ("train_loss.txt", "1.0\n"),
                           (STATUS, '{"status": "completed"}\n')):
            with open(os.path.join(folder, name), "w") as handle:
                handle.write(text)
        before = self.files(folder)
        for extra in ((), ("--force",)):
            code, _, err = self.cli(*self.argv("mine2", *extra))
            self.assert_refused(code, err, "did not write")
            self.assertEqual(self.files(folder), before)
            self.assertEqual(sorted(os.listdir(folder)), sorted(before))
        open(os.path.join(folder, MARKER), "w").close()  # adopted explicitly: now the kit's to start over
        code, _, err = self.cli(*self.argv("mine2", "--epochs", "1", "--force"))
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(Path(folder, STATUS).read_text())["status"], "completed")

    def test_a_copied_run_folder_keeps_its_marker_and_resumes(self):
        folder = self.interrupted()
        copy = os.path.join(self.logs, "copy")
        shutil.copytree(folder, copy)
        code, out, err = self.cli(*self.argv("copy"))
        self.assertEqual(code, 0, err)
        self.assertIn("Continuing", out)


class DataIdentity(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name

    def splits(self, folder):
        return {name: Wikitext2(folder, split=name) for name in SPLITS}

    def test_the_data_files_sha256_are_recorded_and_checked(self):
        first = fixtures.write_corpus(os.path.join(self.tmp, "a"))
        identity = data_identity(self.splits(first))
        self.assertEqual(sorted(identity), sorted(SPLITS))
        for name in SPLITS:
            path = os.path.join(first, f"wiki.{name}.npz")
            self.assertEqual(identity[name], {"path": os.path.abspath(path), "sha256": digest(path)})
        state = {"data": identity}
        copy = shutil.copytree(first, os.path.join(self.tmp, "copy"))
        check_data(state, data_identity(self.splits(copy)))  # the same content elsewhere is the same data
        fixtures.write_corpus(first, seed=1)  # other content at the same path: hashed again, refused
        for folder in (first, fixtures.write_corpus(os.path.join(self.tmp, "b"), seed=2)):
            now = data_identity(self.splits(folder))
            self.assertNotEqual(now["train"]["sha256"], identity["train"]["sha256"])
            with self.assertRaises(CheckpointError) as caught:
                check_data(state, now)
            message = str(caught.exception)
            self.assertEqual(len(message.splitlines()), 1)
            for shown in (identity["train"]["sha256"][:12], now["train"]["sha256"][:12], now["train"]["path"]):
                self.assertIn(shown, message)


class MemoryEstimate(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        tokens = torch.randn(fixtures.TINY_VOCAB, fixtures.TINY_WIDTH)
        position = torch.randn(64, fixtures.TINY_WIDTH)
        settings = SimpleNamespace(model="gpt1", layers=2, learn_embeddings=False, dropout=0.0, init="course")
        self.nll = model_spec("gpt1").build(settings, tokens, position).train()
        self.precision = Precision.resolve("fp32", torch.device("cpu"))

    def test_one_items_activations_are_measured_without_touching_the_run(self):
        rng = torch.get_rng_state()
        sizes = [memory.saved_bytes(self.nll, n, 32, self.precision) for n in (1, 2, 3)]
        self.assertTrue(torch.equal(torch.get_rng_state(), rng))
        self.assertTrue(self.nll.training)
        per_item = sizes[1] - sizes[0]
        self.assertEqual(sizes[2] - sizes[1], per_item)  # linear in the batch
        # at least the (T, E) features per layer and the loss's fp32 gradient rows
        self.assertGreaterEqual(per_item, 32 * fixtures.TINY_WIDTH * 4 * 3)

    def test_the_largest_batch_named_fits_and_one_more_does_not(self):
        free = 50 * memory.saved_bytes(self.nll, 1, 32, self.precision)
        with mock.patch.object(memory, "available_bytes", return_value=free):
            with self.assertRaises(UsageError) as caught:
                memory.check_batch_fits(self.nll, 10 ** 12, 10 ** 13, 32, self.precision)
            message = str(caught.exception)
            largest = int(message.split("use --batch_size ")[1].split()[0])
            self.assertGreater(largest, 1)
            self.assertIn("--batch_size 1000000000000 needs at least", message)
            memory.check_batch_fits(self.nll, largest, 10 ** 13, 32, self.precision)
            with self.assertRaises(UsageError):
                memory.check_batch_fits(self.nll, largest + 1, 10 ** 13, 32, self.precision)
            memory.check_batch_fits(self.nll, 10 ** 12, largest, 32, self.precision)  # a batch is at most the split
        with mock.patch.object(memory, "available_bytes", return_value=10):
            with self.assertRaisesRegex(UsageError, "not even one item fits"):
                memory.check_batch_fits(self.nll, 1, 100, 32, self.precision)

    def test_exhausted_memory_is_recognised(self):
        for err in (MemoryError(), torch.OutOfMemoryError("CUDA out of memory"),
                    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes")):
            self.assertTrue(memory.out_of_memory(err), err)
        self.assertFalse(memory.out_of_memory(RuntimeError("shapes do not match")))


class SwappedDataAndImpossibleBatches(UntrustedCase):
    def test_other_data_at_resume_is_refused_showing_both(self):
        folder = self.interrupted()
        with open(os.path.join(folder, "provenance.json")) as handle:
            recorded = json.load(handle)["data"]
        train = os.path.join(self.data, "wiki.train.npz")
        self.assertEqual(recorded["train"], {"path": os.path.abspath(train), "sha256": digest(train)})
        with open(os.path.join(folder, CHECKPOINT), "rb") as handle:
            self.assertEqual(torch.load(handle, weights_only=True)["data"], recorded)
        other = fixtures.write_corpus(os.path.join(self.tmp, "other"), seed=3)
        argv = self.argv()
        argv[argv.index("--data_folder") + 1] = other
        fixtures.write_corpus(self.data, seed=4)  # and other content at the same path
        before = self.files(folder)
        code, _, err = self.cli(*argv)  # another folder: another run (data_folder identifies one)
        self.assert_refused(code, err, "data_folder", other)
        code, _, err = self.cli(*self.argv())  # the same path, other content: the checkpoint's sha256 decide
        self.assert_refused(code, err, "trained on train data", recorded["train"]["sha256"][:12],
                            digest(os.path.join(self.data, "wiki.train.npz"))[:12])
        self.assert_untouched(folder, before)
        self.assertEqual(json.loads(Path(folder, STATUS).read_text())["status"], "interrupted")

    def test_an_impossible_batch_is_refused_before_anything_is_written(self):
        per_item = memory.saved_bytes(self.tiny_model(), 2, 256, Precision.resolve("fp32", torch.device("cpu")))
        with mock.patch.object(memory, "available_bytes", return_value=3 * per_item):
            code, _, err = self.cli(*self.argv("huge", "--batch_size", str(10 ** 12)))
            self.assert_refused(code, err, "--batch_size 1000000000000 needs at least", "use --batch_size")
            self.assertFalse(os.path.exists(os.path.join(self.logs, "huge")))
            largest = err.split("use --batch_size ")[1].split()[0]
            self.assertGreaterEqual(int(largest), 2)
            code, _, err = self.cli(*self.argv("huge", "--batch_size", largest, "--epochs", "1"))
            self.assertEqual(code, 0, err)

    def tiny_model(self):
        from utils.data.embeddings import read_embeddings
        settings = SimpleNamespace(model="lstm", layers=1, learn_embeddings=False, dropout=0.0, init="course")
        return model_spec("lstm").build(settings, *read_embeddings(self.emb))

    def test_out_of_memory_during_a_run_is_one_line_and_keeps_the_checkpoint(self):
        self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        for error in (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\n(a long page)"),
                      MemoryError()):
            with self.subTest(error=type(error).__name__):
                def fail():
                    raise error
                with at_step(4, fail):  # epoch 2, step 2: epoch 1's checkpoint stands
                    code, _, err = self.cli(*self.argv("oom"))
                self.assert_refused(code, err, "out of memory", "lower --batch_size")
                status = json.loads(Path(self.logs, "oom", STATUS).read_text())
                self.assertEqual((status["status"], status["epoch"]), ("failed", 2))
                self.assertIn("lower --batch_size", status["message"])
                code, out, err = self.cli(*self.argv("oom"))
                self.assertEqual(code, 0, err)
                self.assertIn("from its checkpoint at the start of epoch 2 of 2", out)
                self.assertEqual(self.metrics("oom"), self.metrics("whole"))
                shutil.rmtree(os.path.join(self.logs, "oom"))

    def test_the_status_says_testing_during_the_test_split(self):
        seen = []
        real_init = passes.Pass.__init__

        def init(pass_, run, mode, *args, **kwargs):
            if mode == "test":
                seen.append(json.loads(Path(self.logs, "run", STATUS).read_text()))
            real_init(pass_, run, mode, *args, **kwargs)

        with mock.patch.object(passes.Pass, "__init__", init):
            self.assertEqual(self.cli(*self.argv("run"))[0], 0)
        self.assertEqual([(s["status"], s["epoch"]) for s in seen], [("running", 2)])
        self.assertIn("test split", seen[0]["message"])


class SignalsOutsideTraining(UntrustedCase):
    def test_sighup_stops_a_run_like_sigterm_and_a_rerun_continues(self):
        # SIGHUP as a terminal sends it: not ignored (a test started under nohup inherits SIG_IGN)
        previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        with at_step(3, send(signal.SIGHUP)):
            code, _, err = self.cli(*self.argv("hup"))
        self.assertEqual(code, 128 + signal.SIGHUP, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        status = json.loads(Path(self.logs, "hup", STATUS).read_text())
        self.assertEqual((status["status"], status["epoch"], status["step"]), ("interrupted", 2, 1))
        self.assertEqual(self.cli(*self.argv("hup"))[0], 0)
        self.assertEqual(self.metrics("hup"), self.metrics("whole"))

    def test_an_ignored_sighup_stays_ignored(self):  # nohup python run_exp.py ...
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        with at_step(3, send(signal.SIGHUP)):
            code, _, err = self.cli(*self.argv("nohup"))
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(Path(self.logs, "nohup", STATUS).read_text())["status"], "completed")


CHILD = """import importlib.abc, json, os, resource, signal, sys
kind, what = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as from a terminal, even when the tests run under nohup
def fire():
    os.kill(os.getpid(), getattr(signal, what))
class TorchImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" and kind == "import":
            sys.meta_path.remove(self)
            fire()
        return None
sys.meta_path.insert(0, TorchImport())
import run_exp
if kind in ("data", "locked"):
    import utils.train.run as run
    target = "load_splits" if kind == "data" else "check_batch_fits"
    real = getattr(run, target)
    def wrapped(*args, **kwargs):
        fire()
        return real(*args, **kwargs)
    setattr(run, target, wrapped)
if kind == "memory":
    import numpy, torch, utils.train.run
    used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + int(what) * 2 ** 20, resource.RLIM_INFINITY))
sys.exit(run_exp.cli(sys.argv[3:]))
"""


@pytest.mark.slow  # real processes
class FaultsAtStartUp(UntrustedCase):
    def child(self, kind, what, *argv):
        return fixtures.run_python("-c", CHILD, kind, what, *argv)

    def assert_one_line(self, done, code, *words):
        self.assertEqual(done.returncode, code, done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        for word in words:
            self.assertIn(word, done.stderr)

    def test_each_signal_at_start_up_is_one_line_and_its_exit_code(self):
        folder = self.interrupted()  # a run to continue: its status and files must stay as they are
        before = self.files(folder)
        for kind in ("import", "data", "locked"):
            for name in ("SIGTERM", "SIGUSR2", "SIGHUP"):
                with self.subTest(kind=kind, signal=name):
                    done = self.child(kind, name, *self.argv())
                    self.assert_one_line(done, 128 + getattr(signal, name), f"interrupted by {name}")
                    self.assert_untouched(folder, before)
                    fresh = self.child(kind, name, *self.argv("fresh"))
                    self.assert_one_line(fresh, 128 + getattr(signal, name))
                    self.assertFalse(os.path.exists(os.path.join(self.logs, "fresh")))
        self.assertEqual(json.loads(Path(folder, STATUS).read_text())["status"], "interrupted")

    def test_memory_exhausted_while_loading_is_one_line(self):
        big = fixtures.write_embeddings(os.path.join(self.tmp, "big.npz"), vocab=40479, width=768, positions=512)
        argv = self.argv("run")
        argv[argv.index("--embeddings") + 1] = big
        failed = []
        for limit in range(100, 2001, 100):  # MB more than the child holds: out while loading, building, training
            done = self.child("memory", str(limit), *argv)
            if done.returncode == 0:  # enough at last: the run completed
                break
            with self.subTest(limit=limit):
                self.assert_one_line(done, 2, "out of memory", "lower --batch_size")
                failed.append(limit)
                folder = os.path.join(self.logs, "run")
                if limit == 100:  # the 124 MB table does not fit: nothing was written
                    self.assertFalse(os.path.exists(folder))
                if os.path.exists(os.path.join(folder, STATUS)):
                    self.assertEqual(json.loads(Path(folder, STATUS).read_text())["status"], "failed")
                    self.assertEqual(Path(folder, LOCK).read_text(), "")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertGreaterEqual(len(failed), 2)


class ThreadCountAtResume(UntrustedCase):
    def test_a_rerun_continues_with_the_runs_thread_count(self):
        threads = torch.get_num_threads()
        self.addCleanup(torch.set_num_threads, threads)
        torch.set_num_threads(1)
        self.interrupted()
        with open(os.path.join(self.logs, "run", "provenance.json")) as handle:
            self.assertEqual(json.load(handle)["cpu_threads"], 1)
        torch.set_num_threads(2)
        code, out, err = self.cli(*self.argv())
        self.assertEqual(code, 0, err)
        self.assertIn("Note: continuing with the run's 1 CPU threads (this process had 2)", out)
        self.assertEqual(torch.get_num_threads(), 1)
        with open(os.path.join(self.logs, "run", "provenance.json")) as handle:
            self.assertEqual(json.load(handle)["resumes"][0]["threads"], {"checkpoint": 1, "now": 2})
