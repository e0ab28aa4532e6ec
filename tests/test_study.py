"""Seeds and the learning-rate search: folders, skipping, the choice on validation only."""
import builtins
import json
import os
import tempfile
import unittest
from unittest import mock

import pytest

from tests import fixtures
import run_exp
from utils.runs import schema
from utils.runs.run_dir import RunDir
from utils.study import tuning
from utils.train.optim import OPTIMIZERS


class ChoiceIsMadeOnValidationOnly(unittest.TestCase):
    def write_point(self, folder, model, optimizer, lr, valid_ppls, test_ppl, status="completed"):
        run_dir = os.path.join(folder, schema.tuning_run_id(model, optimizer, lr))
        os.makedirs(run_dir)
        with open(os.path.join(run_dir, schema.METRICS), "w") as handle:
            handle.writelines(json.dumps({"epoch": i + 1, "valid_ppl": v}) + "\n" for i, v in enumerate(valid_ppls))
        with open(os.path.join(run_dir, schema.STATUS), "w") as handle:
            json.dump({"status": status}, handle)
        with open(os.path.join(run_dir, schema.TEST_METRICS), "w") as handle:
            json.dump({"test_ppl": test_ppl}, handle)  # a search run has none; here to prove it is ignored

    def test_lowest_best_validation_perplexity_wins_and_test_is_never_opened(self):
        with tempfile.TemporaryDirectory() as logs:
            folder = tuning.tuning_dir(logs)
            self.write_point(folder, "lstm", "sgd", 0.1, [900.0, 700.0], test_ppl=10.0)  # best test: must not matter
            self.write_point(folder, "lstm", "sgd", 0.3, [800.0, 650.0, 690.0], test_ppl=900.0)  # best valid: 650
            self.write_point(folder, "lstm", "sgd", 1.0, [600.0, float("nan")], test_ppl=5.0, status="diverged")
            opened, real_open = [], builtins.open

            def spy(path, *args, **kwargs):
                opened.append(os.path.basename(str(path)))
                return real_open(path, *args, **kwargs)

            settings = type("S", (), {"batch_size": 16, "seed": 42})()
            grids = {"sgd": (0.1, 0.3, 1.0)}
            with mock.patch.object(builtins, "open", spy):  # configuration 3 is LSTM with sgd
                record, path = tuning.record_search([3], grids, {"epochs": 1, "max_batches": 5}, logs, settings)
            self.assertEqual(record["choice"], {"lstm/sgd": 0.3})
            self.assertFalse([name for name in opened if name.startswith("test")], opened)
            by_lr = {r["lr"]: r for r in record["results"]}
            self.assertEqual((by_lr[0.3]["best_valid_ppl"], by_lr[1.0]["status"]), (650.0, "diverged"))
            self.assertEqual(record["budget"], {"epochs": 1, "max_batches": 5, "batch_size": 16, "seed": 42})
            with open(path) as handle:
                self.assertEqual(json.load(handle), json.loads(json.dumps(record)))

    def test_no_completed_point_means_no_choice(self):
        results = [dict(model="gpt1", optimizer="sgd", lr=0.1, status="failed", best_valid_ppl=None),
                   dict(model="gpt1", optimizer="adam", lr=1e-3, status="completed", best_valid_ppl=300.0)]
        self.assertEqual(tuning.choose(results), {("gpt1", "adam"): 1e-3})

    def test_grid_flag(self):
        grids = tuning.parse_grid("sgd=0.1,1;adam=3e-4")
        self.assertEqual((grids["sgd"], grids["adam"], grids["adamw"]), ((0.1, 1.0), (3e-4,), OPTIMIZERS["adamw"].grid))
        for bad in ("no_such_optimizer=0.1", "sgd=", "sgd=-1", "sgd=a"):
            with self.assertRaises(ValueError):
                tuning.parse_grid(bad)


@pytest.mark.slow
class SmokeStudyWithSeedsAndSearch(unittest.TestCase):
    """Configurations 2 (LSTM) and 6 (MiniGPT1), 2 seeds, a 2-value grid, the smoke preset, tiny data."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        data = fixtures.write_corpus(os.path.join(cls.tmp.name, "data"))
        emb = fixtures.write_embeddings(os.path.join(cls.tmp.name, "emb.npz"))
        cls.logs = os.path.join(cls.tmp.name, "logs")
        cls.argv = ["--config", "2,6", "--seeds", "0,1", "--tune_lr", "--tune_grid", "adamw=1e-3,1e-2", "--smoke",
                    "--data_folder", data, "--embeddings", emb, "--device", "cpu", "--log_dir", cls.logs,
                    "--print_every", "1000"]
        cls.first = cls.cli(cls.argv)
        cls.second = cls.cli(cls.argv)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @staticmethod
    def cli(argv):
        return fixtures.run_main(run_exp.cli, *argv)

    def test_every_run_has_its_folder_and_completed(self):
        self.assertEqual(self.first[0], 0, self.first[2])
        expected = {f"{c}{arm}-seed{s}" for c in (2, 6) for arm in ("", "-tuned") for s in (0, 1)}
        self.assertEqual(set(os.listdir(self.logs)) - {schema.TUNING_DIR}, expected)
        for exp_id in expected:
            run_dir = RunDir(self.logs, exp_id)
            self.assertTrue(run_dir.is_completed(), exp_id)
            args = run_dir.recorded_settings()
            self.assertEqual(args["seed"], int(exp_id[-1]))
            self.assertEqual(args["lr_from"] is not None, "tuned" in exp_id)

    def test_search_runs_never_evaluate_test(self):
        folder = tuning.tuning_dir(self.logs)
        points = sorted(n for n in os.listdir(folder) if not n.startswith(".") and n != schema.TUNING_RECORD)
        self.assertEqual(points, ["gpt1-adamw-lr0.001", "gpt1-adamw-lr0.01", "lstm-adamw-lr0.001", "lstm-adamw-lr0.01"])
        for name in points:
            files = os.listdir(os.path.join(folder, name))
            self.assertFalse([f for f in files if f.startswith("test")], files)
            self.assertEqual(RunDir(folder, name).recorded_settings()["layers"], 1)

    def test_tuned_runs_use_the_choice(self):
        with open(os.path.join(tuning.tuning_dir(self.logs), schema.TUNING_RECORD)) as handle:
            record = json.load(handle)
        for config, model in ((2, "lstm"), (6, "gpt1")):
            args = RunDir(self.logs, f"{config}-tuned-seed0").recorded_settings()
            self.assertEqual(args["lr"], record["choice"][f"{model}/adamw"])
            course = RunDir(self.logs, f"{config}-seed0").recorded_settings()
            self.assertEqual((course["lr"], course["lr_from"]), (1e-3, None))

    def test_a_rerun_skips_everything(self):
        self.assertEqual(self.second[0], 0, self.second[2])
        self.assertEqual(self.second[1].count("skipped"), 4 + 8)  # the 4 search runs and the 8 study runs
        self.assertNotIn("epoch 1/", self.second[1])

    def test_status_lists_every_run(self):
        code, out, _ = self.cli(self.argv + ["--status"])
        self.assertEqual(code, 0)
        for label in ("2: LSTM x1, adamw, seed 1", "6: MiniGPT1 x1, adamw, tuned lr", "search lstm/adamw lr 0.01"):
            self.assertIn(label, out)
        self.assertEqual(out.count("completed"), 12)


    def test_the_report_aggregates_seeds_and_shows_the_search(self):
        import csv

        from utils.report import generate_report

        out = os.path.join(self.tmp.name, "plots")
        report = generate_report(self.logs, out)
        self.assertEqual(len(report.runs), 8)
        with open(os.path.join(out, "results_groups.csv")) as handle:
            groups = {row["name"]: row for row in csv.DictReader(handle)}
        self.assertEqual(sorted(groups), ["2", "2-tuned", "6", "6-tuned"])
        for row in groups.values():
            self.assertEqual((row["n"], row["seeds"]), ("2", "0 1"))
            lo, mean, hi = (float(row[k]) for k in ("best_valid_ppl_lo", "best_valid_ppl_gmean", "best_valid_ppl_hi"))
            self.assertLess(lo, mean)
            self.assertLess(mean, hi)
        for name in ("compare_lstm_optimizers.png", "compare_gpt1_optimizers.png", "results.md", "results.tex"):
            self.assertTrue(os.path.isfile(os.path.join(out, name)), name)
        with open(os.path.join(out, "results.md")) as handle:
            text = handle.read()
        self.assertIn("1e-2", text.replace("0.01", "1e-2"))  # the grid is shown
        self.assertIn("tuned", text)


@pytest.mark.slow
class TunedArmAtTheCourseLrIsReused(unittest.TestCase):
    """--tune_lr where the search chooses the course's lr (the grid holds only 1e-3): the tuned arm
    is the course run's records, not a second training at identical settings."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        data = fixtures.write_corpus(os.path.join(cls.tmp.name, "data"))
        emb = fixtures.write_embeddings(os.path.join(cls.tmp.name, "emb.npz"))
        cls.logs = os.path.join(cls.tmp.name, "logs")
        argv = ["--config", "2", "--tune_lr", "--tune_grid", "adamw=1e-3", "--smoke", "--data_folder", data,
                "--embeddings", emb, "--device", "cpu", "--log_dir", cls.logs, "--print_every", "1000"]
        cls.trained = []

        def counted(settings, *args, **kwargs):  # every run the study trains goes through run_exp.main
            cls.trained.append(settings.exp_id)
            return main(settings, *args, **kwargs)

        main = run_exp.main
        with mock.patch.object(run_exp, "main", counted):
            cls.first = SmokeStudyWithSeedsAndSearch.cli(argv)
            cls.trained_first = list(cls.trained)
            cls.second = SmokeStudyWithSeedsAndSearch.cli(argv)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_only_the_search_point_and_the_course_run_train(self):
        self.assertEqual(self.first[0], 0, self.first[1] + self.first[2])
        self.assertEqual(self.trained_first, [schema.tuning_run_id("lstm", "adamw", 1e-3), "2"])
        self.assertEqual(self.trained, self.trained_first)  # the rerun trains nothing
        self.assertIn("reused", self.first[1])
        self.assertEqual(self.second[0], 0, self.second[2])

    def test_args_json_says_reused_and_the_records_are_the_course_runs(self):
        course, tuned = RunDir(self.logs, "2"), RunDir(self.logs, "2-tuned")
        args = tuned.recorded_settings()
        self.assertEqual(args["reused_from"], "2")
        self.assertEqual((args["lr"], args["exp_id"]), (1e-3, "2-tuned"))
        self.assertTrue(args["lr_from"].endswith(schema.TUNING_RECORD))
        self.assertTrue(tuned.is_completed())
        self.assertFalse(tuned.has_checkpoint())
        for name in (schema.METRICS, schema.TEST_METRICS):
            with open(course.file(name)) as a, open(tuned.file(name)) as b:
                self.assertEqual(a.read(), b.read())

    def test_the_report_says_the_tuned_arm_is_reused(self):
        from utils.report import generate_report

        out = os.path.join(self.tmp.name, "plots")
        generate_report(self.logs, out)
        with open(os.path.join(out, "results.md")) as handle:
            text = handle.read()
        self.assertIn("the tuned arm is the course's runs, reused (same settings, not run again)", text)


class StudyFlagErrors(unittest.TestCase):
    def test_refused_with_one_line(self):
        cases = [["--seeds", "0,1"], ["--config", "1", "--seeds", "0,0"], ["--config", "1", "--seeds", "a"],
                 ["--config", "1", "--tune_lr", "--lr", "0.1"], ["--config", "1", "--seeds", "0,1", "--seed", "3"],
                 ["--config", "1", "--tune_lr", "--tune_grid", "sgd=x"]]
        for argv in cases:
            with self.subTest(argv=argv):
                code, _, err = fixtures.run_main(run_exp.cli, *argv, "--device", "cpu")
                self.assertEqual(code, 2, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)


if __name__ == "__main__":
    unittest.main()
