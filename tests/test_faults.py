"""Fault injection: a run killed at every write point ends, after a plain rerun, identical to an
uninterrupted run; a second process on a folder in use is refused, a dead one's lock is not in
the way; the kit never deletes a folder it did not write; a full disk keeps the last checkpoint;
a second Ctrl-C during a checkpoint write leaves it whole. Kills are injected at named write
points (utils.runs.atomic.fault_point) or at training steps, never timed."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path
from unittest import mock

import pytest
import torch

from tests import fixtures
from tests.test_resilience import RunCase, at_step, send
from utils.runs import atomic, lock
from utils.runs.schema import CHECKPOINT, LOCK, MARKER

TIME_FILES = ("train_time.txt", "valid_time.txt", "test_time.txt")


class Killed(BaseException):
    """Stands for kill -9 in-process: no `except Exception` handler sees it, nothing more is written."""


def kill_at(index, events=None):
    """Patch the write points: record each (point, file name) in `events`; raise Killed at the index-th."""
    seen = [] if events is None else events

    def point(where, path):
        seen.append((where, os.path.basename(path)))
        if len(seen) - 1 == index:
            raise Killed(f"killed at {where} {os.path.basename(path)}")

    return mock.patch.object(atomic, "fault_point", point)


def read_text(path):
    with open(path) as handle:
        return handle.read()


class FaultCase(RunCase):
    def argv(self, exp_id="run", *extra, model="lstm"):
        return super().argv(exp_id, "--max_batches", "2", *extra, model=model)

    def outcome(self, exp_id):
        """Everything a finished run leaves that does not depend on the clock."""
        folder = os.path.join(self.logs, exp_id)
        texts = {n: read_text(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
                 if n.endswith(".txt") and n not in TIME_FILES}
        test = {k: v for k, v in self.read_json(exp_id, "test_metrics.json").items() if k != "test_seconds"}
        status = self.read_json(exp_id, "status.json")
        args = {k: v for k, v in self.read_json(exp_id, "args.json").items() if k != "exp_id"}
        return {"metrics": self.metrics(exp_id), "test": test, "txt": texts, "args": args,
                "status": (status["status"], status["epoch"], status["message"])}

    def kill_and_rerun(self, exp_id, index, *extra, complete=False):
        """complete: the kill came after the run's last write, so the rerun finds it complete."""
        with kill_at(index), self.assertRaises(Killed):
            self.cli(*self.argv(exp_id, *extra))
        code, out, err = self.cli(*self.argv(exp_id, *extra))
        if complete:
            self.assert_refused(code, err, "already complete")
        else:
            self.assertEqual(code, 0, err)
        return out


@pytest.mark.slow  # in-process training runs: the slow tier (CI runs it)
class KilledAtWritePoints(FaultCase):
    """The kills the issue saw lose an epoch (after the last epoch's checkpoint, before its logs), and others."""

    def test_kill_after_the_last_checkpoint_before_its_logs(self):
        events = []
        with kill_at(-1, events):
            self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        last_checkpoint = max(i for i, e in enumerate(events) if e == ("replaced", CHECKPOINT))
        for index in (last_checkpoint, last_checkpoint + 1, len(events) - 2):  # + the final status, unwritten
            with self.subTest(point=events[index]):
                exp_id = f"cut{index}"
                out = self.kill_and_rerun(exp_id, index)
                self.assertEqual(self.outcome(exp_id), self.outcome("whole"))
                if index <= last_checkpoint + 1:
                    self.assertIn("after its last epoch (2 of 2; the test split is evaluated next)", out)


@pytest.mark.slow
class KilledAtEveryWritePoint(FaultCase):
    def test_every_write_point(self):
        events = []
        with kill_at(-1, events):
            self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        points = [i for i, (where, _) in enumerate(events) if where != "begin"]  # begin == written for a kill
        self.assertGreater(len(points), 40)
        for index in points:
            with self.subTest(point=events[index]):
                self.kill_and_rerun(f"cut{index}", index, complete=index == len(events) - 1)
                self.assertEqual(self.outcome(f"cut{index}"), self.outcome("whole"))

    def test_a_real_kill_mid_checkpoint_leaves_a_temporary_file_the_rerun_removes(self):
        """os._exit in the middle of the checkpoint write, in a real process: no handler runs."""
        self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        script = ("import os, sys, run_exp; from utils.runs import atomic\n"
                  "def point(where, path):\n"
                  "    if where == 'written' and path.endswith('checkpoint.pt'): os._exit(9)\n"
                  "atomic.fault_point = point\nsys.exit(run_exp.cli(sys.argv[1:]))")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([fixtures.REPO_ROOT, os.path.dirname(__file__)]))
        done = subprocess.run([sys.executable, "-c", script, *self.argv("cut")], cwd=fixtures.REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        self.assertEqual(done.returncode, 9, done.stderr)
        folder = os.path.join(self.logs, "cut")
        self.assertTrue([n for n in os.listdir(folder) if n.startswith(".tmp-")], "the kill left no temporary file")
        self.assertEqual(self.cli(*self.argv("cut"))[0], 0)
        self.assertEqual([n for n in os.listdir(folder) if n.startswith(".tmp-")], [])
        self.assertEqual(self.outcome("cut"), self.outcome("whole"))


class FoldersTheKitDidNotWrite(FaultCase):
    def test_a_foreign_folder_is_never_touched_even_with_force(self):
        folder = os.path.join(self.logs, "mydata")
        os.makedirs(folder)
        with open(os.path.join(folder, "notes.txt"), "w") as handle:
            handle.write("mine")
        for extra in ((), ("--force",)):
            code, _, err = self.cli(*self.argv("mydata", *extra))
            self.assert_refused(code, err, "did not write", "notes.txt")
            self.assertEqual(sorted(os.listdir(folder)), ["notes.txt"])

    def test_empty_or_path_like_exp_id_is_refused_before_anything_is_written(self):
        os.makedirs(os.path.join(self.logs, "1"))
        with open(os.path.join(self.logs, "1", "results.txt"), "w") as handle:
            handle.write("a user's results")
        for exp_id in ("", " ", ".", "..", "a/b", "../x", os.path.abspath(self.tmp)):
            with self.subTest(exp_id=exp_id):
                code, _, err = self.cli(*self.argv(exp_id))
                self.assert_refused(code, err, "--exp_id")
                self.assertEqual(os.listdir(self.logs), ["1"])
                self.assertEqual(os.listdir(os.path.join(self.logs, "1")), ["results.txt"])

    def test_files_in_the_way_and_read_only_folders(self):
        os.makedirs(self.logs)
        with open(os.path.join(self.logs, "afile"), "w") as handle:
            handle.write("x")
        code, _, err = self.cli(*self.argv("afile"))
        self.assert_refused(code, err, "is a file")
        argv = self.argv("run")
        argv[argv.index("--log_dir") + 1] = os.path.join(self.logs, "afile")
        code, _, err = self.cli(*argv)
        self.assert_refused(code, err, "is a file")
        with mock.patch("os.access", return_value=False):  # what access(2) says on a read-only file system
            code, _, err = self.cli(*self.argv("new"))
        self.assert_refused(code, err, "not writable")
        self.assertEqual(os.listdir(self.logs), ["afile"])

    def test_force_deletes_only_the_kits_files(self):
        self.assertEqual(self.cli(*self.argv("run", "--epochs", "1"))[0], 0)
        mine = os.path.join(self.logs, "run", "my-notes.md")
        with open(mine, "w") as handle:
            handle.write("kept")
        self.assertEqual(self.cli(*self.argv("run", "--epochs", "1", "--force"))[0], 0)
        self.assertTrue(os.path.isfile(mine))
        self.assertTrue(os.path.isfile(os.path.join(self.logs, "run", MARKER)))

    def test_leftover_temporary_files_are_removed_only_when_they_are_the_kits(self):
        with at_step(3, send(signal.SIGTERM)):
            self.assertEqual(self.cli(*self.argv("run"))[0], 143)
        folder = os.path.join(self.logs, "run")
        for name in (".tmp-abcd1234checkpoint.pt", ".tmp-abcd1234status.json", ".tmp-abcd1234notes.txt"):
            open(os.path.join(folder, name), "wb").close()
        self.assertEqual(self.cli(*self.argv("run"))[0], 0)
        self.assertEqual(sorted(n for n in os.listdir(folder) if n.startswith(".tmp-")), [".tmp-abcd1234notes.txt"])


class OneProcessPerFolder(FaultCase):
    def held(self, exp_id="run"):
        folder = os.path.join(self.logs, exp_id)
        os.makedirs(folder, exist_ok=True)
        other = lock.FolderLock(os.path.join(folder, LOCK))
        other.acquire()
        self.addCleanup(other.release)
        return other

    def test_a_folder_in_use_is_refused_and_free_again_after(self):
        other = self.held()
        code, _, err = self.cli(*self.argv())
        self.assert_refused(code, err, "in use by process", str(os.getpid()))
        self.assertEqual(os.listdir(os.path.join(self.logs, "run")), [LOCK])
        other.release()
        self.assertEqual(self.cli(*self.argv("run", "--epochs", "1"))[0], 0)
        self.assertEqual(Path(self.logs, "run", LOCK).read_text(), "", "released locks are emptied")

    def test_the_lock_of_a_dead_process_does_not_block(self):
        folder = os.path.join(self.logs, "run")
        os.makedirs(folder)
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        with open(os.path.join(folder, LOCK), "w") as handle:  # its flock went with it; its record stayed
            json.dump(dict(lock.me(), pid=int(dead.stdout)), handle)
        self.assertEqual(self.cli(*self.argv("run", "--epochs", "1"))[0], 0)

    def test_without_file_system_locks_the_record_decides(self):
        """Where flock is unsupported (ENOLCK): this host's dead pid or an old boot is stale; a live pid
        or a pid on another host (which cannot be checked) is refused with a way out."""
        folder = os.path.join(self.logs, "run")
        os.makedirs(folder)
        dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True).stdout)
        cases = [(dict(pid=os.getpid()), "in use by process"), (dict(host="elsewhere"), "cannot be checked"),
                 (dict(pid=dead), None), (dict(pid=os.getpid(), boot_id="an-earlier-boot"), None)]
        no_locks = mock.patch.object(lock.fcntl, "flock", side_effect=OSError(errno.ENOLCK, "No locks available"))
        for change, refusal in cases:
            with self.subTest(change=change):
                with open(os.path.join(folder, LOCK), "w") as handle:
                    json.dump(dict(lock.me(), **change), handle)
                folder_lock = lock.FolderLock(os.path.join(folder, LOCK))
                with no_locks:
                    if refusal:
                        with self.assertRaisesRegex(lock.FolderLocked, refusal):
                            folder_lock.acquire()
                    else:
                        folder_lock.acquire()
                        self.assertEqual(json.loads(Path(folder, LOCK).read_text())["pid"], os.getpid())
                        folder_lock.release()


@pytest.mark.slow
class TwoRealProcesses(FaultCase):
    SCRIPT = ("import os, sys, time, test_resilience as t, run_exp\n"
              "def pause():\n"  # step 2: say so, then wait for the test's go (a file, not a delay)
              "    open(sys.argv[1] + '.ready', 'w').close()\n"
              "    while not os.path.exists(sys.argv[1] + '.go'): time.sleep(0.05)\n"
              "t.at_step(2, pause).start(); sys.exit(run_exp.cli(sys.argv[2:]))")

    def start(self, flag, argv):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([fixtures.REPO_ROOT, os.path.dirname(__file__)]))
        return subprocess.Popen([sys.executable, "-c", self.SCRIPT, flag, *argv], cwd=fixtures.REPO_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, flag, proc):
        while not os.path.exists(flag + ".ready"):
            self.assertIsNone(proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
            time.sleep(0.05)  # polling the file, not waiting for a duration

    def test_second_process_refused_then_a_killed_holder_does_not_block(self):
        flag = os.path.join(self.tmp, "a")
        first = self.start(flag, self.argv())
        self.wait_ready(flag, first)
        code, _, err = self.cli(*self.argv("run", "--lr", "0.01"))
        self.assert_refused(code, err, "in use by process", str(first.pid))
        open(flag + ".go", "w").close()
        self.assertEqual(first.wait(timeout=600), 0, first.stderr.read())
        self.assertEqual(self.read_json("run", "args.json")["lr"], 0.001)
        flag = os.path.join(self.tmp, "b")
        second = self.start(flag, self.argv("other"))
        self.wait_ready(flag, second)
        second.kill()  # SIGKILL while it holds the lock
        second.wait(timeout=60)
        code, out, err = self.cli(*self.argv("other"))
        self.assertEqual(code, 0, err)


@pytest.mark.slow  # in-process training runs: the slow tier (CI runs it)
class FullDiskAndSecondCtrlC(FaultCase):
    def interrupted(self, exp_id="run"):
        with at_step(3, send(signal.SIGTERM)):  # epoch 2, step 1
            self.assertEqual(self.cli(*self.argv(exp_id))[0], 143)
        with open(self.path(exp_id, CHECKPOINT), "rb") as handle:
            return handle.read()

    def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(self):
        self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        before = self.interrupted()
        real = atomic._Recorder.write

        def full(recorder, data):
            if recorder.path.endswith(CHECKPOINT):
                recorder.error = OSError(errno.ENOSPC, "No space left on device")
                raise recorder.error
            return real(recorder, data)

        with mock.patch.object(atomic._Recorder, "write", full):
            code, _, err = self.cli(*self.argv())
        self.assert_refused(code, err, "disk", "is full", "previous version is kept")
        self.assertNotIn("Traceback", err)
        with open(self.path("run", CHECKPOINT), "rb") as handle:
            self.assertEqual(handle.read(), before)
        self.assertEqual([n for n in os.listdir(os.path.join(self.logs, "run")) if n.startswith(".tmp-")], [])
        self.assertEqual(self.read_json("run", "status.json")["status"], "failed")
        self.assertEqual(self.cli(*self.argv())[0], 0)
        self.assertEqual(self.outcome("run"), self.outcome("whole"))

    def test_a_second_ctrl_c_during_a_checkpoint_write_waits_for_it(self):
        self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        real, sent = atomic._Recorder.write, []

        def write(recorder, data):  # both Ctrl-C arrive in the middle of torch.save
            if recorder.path.endswith(CHECKPOINT) and not sent:
                sent.append(1)
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            return real(recorder, data)

        with mock.patch.object(atomic._Recorder, "write", write):
            code, _, err = self.cli(*self.argv())
        self.assertEqual(code, 130, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertEqual(self.read_json("run", "status.json")["status"], "interrupted")
        state = torch.load(self.path("run", CHECKPOINT), weights_only=False)  # whole, readable
        self.assertEqual(state["position"]["epoch"], 1)
        self.assertEqual(self.cli(*self.argv())[0], 0)
        self.assertEqual(self.outcome("run"), self.outcome("whole"))


if __name__ == "__main__":
    unittest.main()
