"""utils.runs.schema's metric table is the one definition: a real epoch's record has exactly its
keys, the report's columns, formats, reductions and seed summaries all come from it, and the
sweep summary reads a skipped run's numbers back from the folder the writer made."""
import contextlib
import io
import json
import math
import os
import tempfile
import unittest
from dataclasses import asdict

from tests import fixtures

from utils.report import compute, fmt, tables
from utils.runs import schema
from utils.runs.run_dir import RunDir
import run_exp
from utils.train.settings import Arguments
from utils.study.sweep import config_job, format_summary, recorded_numbers, run_job


def tiny_settings(folder, **overrides):
    fields = dict(data_folder=folder, embeddings=os.path.join(folder, "emb.npz"), model="lstm", layers=1, epochs=1,
                  batch_size=4, device="cpu", log_dir=os.path.join(folder, "logs"), exp_id="run", max_batches=2,
                  print_every=1000, num_workers=0, log=False)
    fields.update(overrides)
    return Arguments(**fields)


class EpochRecordHasExactlyTheSchemaKeys(unittest.TestCase):
    def test_a_real_epoch_and_test_pass(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = fixtures.write_corpus(tmp)
            fixtures.write_embeddings(os.path.join(folder, "emb.npz"))
            settings = tiny_settings(folder, log=True)
            with contextlib.redirect_stdout(io.StringIO()):
                run_exp.main(settings)
            run_dir = RunDir(settings.log_dir, settings.exp_id)
            with open(run_dir.file(schema.METRICS)) as handle:
                [record] = [json.loads(line) for line in handle]
            with open(run_dir.file(schema.TEST_METRICS)) as handle:
                test = json.load(handle)
        self.assertEqual(list(record), list(schema.EPOCH_KEYS))
        self.assertEqual(sorted(test), sorted(schema.TEST_KEYS))  # the file is written with sorted keys
        self.assertEqual(record["epoch"], 1)
        for split in ("train", "valid"):
            self.assertAlmostEqual(record[f"{split}_ppl"], math.exp(record[f"{split}_loss"]), places=9)
        self.assertAlmostEqual(record["train_tokens_per_s"], record["train_tokens"] / record["train_seconds"])
        self.assertEqual(record["lr"], settings.lr)
        self.assertIsNone(record["peak_memory_mb"])  # a CPU: not measured
        self.assertAlmostEqual(test["test_ppl"], math.exp(test["test_loss"]), places=9)

    def test_a_key_outside_the_table_or_a_missing_one_is_refused(self):
        splits = {s: {"loss": 1.0, "ppl": math.e, "seconds": 1.0, "tokens": 4, "tokens_per_s": 4.0, "words": 2,
                      "word_ppl": 9.0} for s in ("train", "valid")}
        values = dict(epoch=1, lr=0.1, peak_memory_mb=None, peak_memory_mb_per_rank=None)
        self.assertEqual(list(schema.epoch_record(splits, **values)), list(schema.EPOCH_KEYS))
        with self.assertRaisesRegex(KeyError, "no_such_metric"):
            schema.epoch_record(splits, no_such_metric=1.0, **values)
        with self.assertRaises(KeyError):
            schema.epoch_record(splits, epoch=1)


class QuantitiesByName(unittest.TestCase):
    """A pass sums its quantities by name (schema.PASS_SUMS and every step_mean metric): a checkpoint
    written before a quantity existed resumes with it at 0, and a new one needs no position."""

    def test_a_snapshot_without_a_quantity_resumes_and_a_new_one_is_summed(self):
        import torch

        from utils.train.passes import Pass
        from utils.train.precision import Precision
        from utils.train.run import Position, Run

        fp32 = Precision("fp32", "cpu")
        old = {"nll_sum": 6.0, "tokens": 3.0, "seconds": 2.0}  # no "steps", "words" or any later quantity
        run = Run(Arguments(print_every=10**6), torch.nn.Linear(2, 2), None, None, fp32, fp32.make_scaler(),
                  position=Position(0, 1, [old]))
        batch = {"mask": torch.ones(1, 2), "target": torch.ones(1, 2, dtype=torch.long)}
        steps = Pass(run, "train", 0, [batch, batch])
        self.assertEqual((steps.start, steps.snapshot()["steps"], steps.snapshot()["nll_sum"]), (1, 0.0, 6.0))
        steps.add(torch.full((1, 2), 1.5), batch, grad_norm=torch.tensor(4.0))
        result = steps.result()
        self.assertEqual((result.nll_sum, result.tokens), (9.0, 5))
        self.assertEqual(result.values["grad_norm"], 4.0)  # its mean over the pass's steps
        self.assertAlmostEqual(result.values["loss"], 9.0 / 5)


class EveryReaderUsesTheTable(unittest.TestCase):
    def test_each_entry_names_things_that_exist(self):
        known = set(schema.EPOCH_KEYS) | set(schema.TEST_KEYS) | {schema.STEADY_MEMORY}
        for m in schema.RUN_METRICS:
            self.assertIn(m.source, known, m.key)
            self.assertIn(m.reduce, compute.REDUCERS, m.key)
            self.assertIn(m.over_seeds, compute.OVER_SEEDS, m.key)
        for m in schema.EPOCH_METRICS + schema.TEST_PASS_METRICS + schema.RUN_METRICS:
            self.assertIn(m.fmt, fmt.FORMATS, m.key)
        for m in schema.EPOCH_METRICS:
            self.assertTrue(m.panel is None or m.panel in schema.PANELS, m.key)
        self.assertEqual(schema.TXT_LOGS, ("train_loss", "train_ppl", "train_time", "valid_loss", "valid_ppl",
                                           "valid_time", "test_loss", "test_ppl", "test_time",
                                           "avg_steady_state_memory"))  # the course's save_logs order

    def test_the_report_columns_are_the_tables(self):
        keys = [m.key for m in schema.RUN_METRICS]
        run_keys = [k for k, _ in tables.RUN_COLUMNS]
        self.assertEqual([k for k in run_keys if k in keys], keys)
        self.assertEqual([k for k in tables.CSV_KEYS if k in keys], keys)
        self.assertEqual([k for k, _ in tables.GROUP_COLUMNS if k in keys], [m.key for m in schema.RUN_METRICS
                                                                              if m.group])
        self.assertEqual([h for k, h in tables.LATEX_COLUMNS if k in keys], [m.latex for m in schema.RUN_METRICS if m.latex])
        from tests.report_fixtures import memory_run

        run = memory_run("1", 1)
        row = compute.summarise(run)
        (group,) = compute.build_groups([run], [row])
        self.assertEqual(list(group.stats), keys)
        self.assertEqual((row["best_valid_ppl"], row["time_per_epoch_s"], row["train_time_s"]), (200.0, 10.0, 20.0))


def splits(ppl, seconds):
    """A pass's quantities as the runner hands them to the schema."""
    return {"loss": math.log(ppl), "ppl": ppl, "seconds": seconds, "tokens": 10, "tokens_per_s": 1.0, "words": 5,
            "word_ppl": ppl}


def write_completed(job):
    """The folder a completed 2-epoch run of `job` leaves: best valid ppl 250, test ppl 260, 144 s in all."""
    folder = RunDir(job.settings.log_dir, job.settings.exp_id)
    folder.reset()
    folder.write_args(asdict(job.settings))
    epochs = [schema.epoch_record({"train": splits(400.0, 60.0), "valid": splits(ppl, 6.0)}, epoch=e, lr=1e-3,
                                  peak_memory_mb=None, peak_memory_mb_per_rank=None)
              for e, ppl in ((1, 300.0), (2, 250.0))]
    folder.write_epochs(epochs)
    folder.write_final(schema.test_record(splits(260.0, 12.0)), math.nan)
    folder.write_status(schema.COMPLETED, 2)


class SweepSummaryOfSkippedRuns(unittest.TestCase):
    def test_a_run_skipped_as_complete_shows_its_recorded_numbers(self):
        with tempfile.TemporaryDirectory() as tmp:
            job = config_job(1, log_dir=tmp, epochs=2)
            write_completed(job)
            summary = run_job(job)
        self.assertEqual((summary["status"], summary["best_valid_ppl"], summary["test_ppl"]), ("skipped", 250.0, 260.0))
        self.assertEqual(summary["seconds"], 2 * (60.0 + 6.0) + 12.0)
        line = format_summary([summary]).splitlines()[1]
        self.assertRegex(line, r"skipped\s+250\.0\s+260\.0\s+2\.4\s+already complete")

    def test_the_local_launcher_lists_a_skipped_run_with_its_numbers(self):
        from utils.train.distributed import SINGLE
        from utils.study.launchers import get_launcher

        with tempfile.TemporaryDirectory() as tmp:
            job = config_job(1, log_dir=tmp, epochs=2)
            write_completed(job)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                summaries, handles = get_launcher("local").run([job], {"launcher": "local"}, SINGLE, None)
        self.assertEqual(handles, [])  # nothing submitted
        self.assertEqual([(s["status"], s["best_valid_ppl"]) for s in summaries], [("skipped", 250.0)])
        self.assertRegex(out.getvalue(), r"skipped\s+250\.0\s+260\.0")

    def test_a_validation_only_run_shows_its_best_valid_ppl(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = RunDir(tmp, "search")
            folder.reset()
            folder.write_epochs([dict(epoch=1, valid_ppl=321.0, train_seconds=3.0, valid_seconds=1.0,
                                      train_loss=6.0, train_ppl=400.0, valid_loss=5.8)])
            self.assertEqual(recorded_numbers(folder), {"best_valid_ppl": 321.0, "seconds": 4.0})
            self.assertEqual(recorded_numbers(RunDir(tmp, "absent")), {})


if __name__ == "__main__":
    unittest.main()
