"""A shared run folder cannot run code or eat files (issue 25): a planted malicious pickle is never
unpickled (a rerun, generate.py), a symlinked .lock or checkpoint.pt never reaches its target,
a user's folder holding only files with the kit's names is not taken over, a dangling-symlink
run folder is named as such."""
import builtins
import hashlib
import json
import os
import pickle
import shutil
import signal
import warnings

import torch

import generate
from tests import fixtures
from tests.test_resilience import RunCase, at_step, send
from utils.data import BPE_FOLDER
from utils.runs.schema import ARGS, CHECKPOINT, LOCK, MARKER, STATUS


class Planted:
    """Unpickling this writes a file: the proof that a load ran code."""

    def __init__(self, proof):
        self.proof = proof

    def __reduce__(self):
        return builtins.exec, (f"open({self.proof!r}, 'w').write('code ran')",)


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
            self.assertEqual(open(lock).read(), "", "a refused command left its .lock record")

    def files(self, folder):
        return {n: digest(os.path.join(folder, n)) for n in os.listdir(folder)
                if n != LOCK and not os.path.islink(os.path.join(folder, n))}


class MaliciousCheckpoint(UntrustedCase):
    def test_a_planted_pickle_never_runs_under_a_rerun_or_generate(self):
        folder = self.interrupted()
        proof = os.path.join(self.tmp, "proof")
        planted = {"format": 2, "model": Planted(proof)}
        makers = {"torch.save": (lambda f: torch.save(planted, f), lambda p: torch.load(p, weights_only=False)),
                  "plain pickle": (lambda f: pickle.dump(planted, f), lambda p: pickle.load(open(p, "rb")))}
        for kind, (write, unsafe_load) in makers.items():
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
                    self.assert_refused(code, err, "not loaded", "could run code")
                with warnings.catch_warnings(record=True) as shown:  # no torch warning on top of the line
                    warnings.simplefilter("always")
                    code, out, err = self.generate(folder)
                self.assertEqual([str(w.message) for w in shown], [])
                self.assert_refused(code, err, "not loaded")
                self.assertEqual(out, "")
                self.assertFalse(os.path.exists(proof), f"unpickling {kind} ran code")
                self.assert_untouched(folder, before)
                status = json.load(open(os.path.join(folder, STATUS)))
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
                    text = open(os.path.join(root, name)).read()
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
                self.assertEqual(open(victim, "rb").read(), b"a file the user cares about\n")
                self.assertTrue(os.path.islink(os.path.join(folder, LOCK)))

    def test_a_symlinked_checkpoint_is_refused_and_never_written_through(self):
        folder = self.interrupted()
        real = os.path.join(folder, CHECKPOINT)
        victim = self.victim(open(real, "rb").read())  # even a genuine checkpoint is not read through a link
        before = digest(victim)
        os.remove(real)
        os.symlink(victim, real)
        code, _, err = self.cli(*self.argv())
        self.assert_refused(code, err, "symbolic link", CHECKPOINT)
        code, out, err = self.generate(folder)
        self.assert_refused(code, err, "symbolic link")
        self.assertEqual(json.load(open(os.path.join(folder, STATUS)))["status"], "interrupted")
        self.assertEqual(self.cli(*self.argv("run", "--force"))[0], 0)  # starting over replaces the link itself
        self.assertFalse(os.path.islink(real))
        self.assertEqual(digest(victim), before)
        self.assertEqual(json.load(open(os.path.join(folder, STATUS)))["status"], "completed")

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
            self.assert_refused(code, err, "did not write", "touch " + os.path.join(folder, MARKER))
            self.assertEqual(self.files(folder), before)
            self.assertEqual(sorted(os.listdir(folder)), sorted(before))
        open(os.path.join(folder, MARKER), "w").close()  # adopted explicitly: now the kit's to start over
        code, _, err = self.cli(*self.argv("mine2", "--epochs", "1", "--force"))
        self.assertEqual(code, 0, err)
        self.assertEqual(json.load(open(os.path.join(folder, STATUS)))["status"], "completed")

    def test_a_copied_run_folder_keeps_its_marker_and_resumes(self):
        folder = self.interrupted()
        copy = os.path.join(self.logs, "copy")
        shutil.copytree(folder, copy)
        code, out, err = self.cli(*self.argv("copy"))
        self.assertEqual(code, 0, err)
        self.assertIn("Continuing", out)
