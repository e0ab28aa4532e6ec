"""What identifies a run in the report (issue 26 items 2-3, issue 25 item 8, issue 28 item 4): every
setting but the incidental ones keeps runs apart and reaches the tables by itself, a run folder written
before a metric existed still reports, the pooled "Seeds" column counts seeds, a run whose status is
unreadable is never an answer, and the empty-folder hint's commands write into the reported folder."""
import os
import re
import tempfile
import unittest

from tests import fixtures
from tests.report_fixtures import memory_run, write_seed_run

from utils.report import markdown, read_report
from utils.report.__main__ import main as report_main
from utils.report.compute import REDUCERS, answers, best_epoch, build_groups, summarise
from utils.report.tables import csv_text, group_table, markdown_table


def groups_and_rows(runs):
    rows = [summarise(r) for r in runs]
    return build_groups(runs, rows), rows


class EverySettingIdentifiesARun(unittest.TestCase):
    def test_a_new_setting_keeps_runs_apart_and_gets_a_column(self):
        runs = [memory_run("1", 1, dropout=0.0), memory_run("1-seed1", 1, seed=1, dropout=0.0),
                memory_run("1-seed2", 1, seed=2, dropout=0.3, valid=(300.0, 120.0)),
                memory_run("1-seed3", 1, seed=3)]  # written before --dropout existed: its default, 0
        (group,), rows = groups_and_rows(runs)
        self.assertEqual(sorted(group.members), [1, 3, 42])  # the dropout-0.3 run is no seed of the others
        self.assertEqual(rows[2]["not_counted_why"], "made with other dropout than 1, the run its configuration's "
                                                     "seeds share")
        table, _ = markdown_table(rows)
        header = table.splitlines()[0].split(" | ")
        at = header.index("dropout")
        self.assertEqual(header[at - 1], "lr")  # after the optimizer's settings (adam reads lr only)
        self.assertEqual([line.split(" | ")[at] for line in table.splitlines()[2:]], ["0", "0", "0.3", "—"])
        self.assertIn("dropout", csv_text(rows).splitlines()[0].split(","))

    def test_a_setting_that_differs_between_configurations_shows_in_the_table_over_seeds(self):
        groups, _ = groups_and_rows([memory_run("1", 1, grad_clip=None), memory_run("2", 2, grad_clip=1.0)])
        table, _ = group_table(groups)
        self.assertEqual(table.splitlines()[0].split(" | ")[4], "grad_clip")  # after lr
        self.assertEqual([line.split(" | ")[4] for line in table.splitlines()[2:]], ["—", "1"])

    def test_incidental_fields_do_not_split_seeds(self):
        runs = [memory_run("1", 1, device="cuda", log_dir="a", print_every=10),
                memory_run("1-seed1", 1, seed=1, device="cpu", log_dir="b", print_every=99)]
        (group,), rows = groups_and_rows(runs)
        self.assertEqual((sorted(group.members), [r["counted"] for r in rows]), ([1, 42], [True, True]))
        table, _ = markdown_table(rows)
        for field in ("device", "log_dir", "print_every", "exp_id"):
            self.assertNotIn(f" {field} ", table.splitlines()[0])


class FoldersWrittenBeforeAMetricExisted(unittest.TestCase):
    def test_at_best_of_a_quantity_the_folder_never_logged_is_none(self):
        run = memory_run("1", 1)  # epochs without "valid_word_ppl": written before it was logged
        best = best_epoch(run.epochs)
        self.assertIsNone(REDUCERS["at_best"](run, "valid_word_ppl", best))  # was a KeyError
        self.assertIsNone(REDUCERS["sum"](run, "train_tokens", best))
        self.assertIsNone(REDUCERS["max"](run, "peak_memory_mb", best))
        self.assertEqual(REDUCERS["at_best"](run, "train_ppl", best), 200.0)

    def test_a_new_metric_is_one_table_entry_and_old_folders_still_report(self):
        # The schema gains one RunMetric before the report is imported, as a student's edit would.
        code = """if True:
            import sys, tempfile
            from utils.runs import schema
            schema.RUN_METRICS += (schema.RunMetric("word_ppl_at_best", "Word ppl at best", "ppl", "valid_word_ppl",
                                                    "at_best", latex="Word ppl"),)
            from tests.report_fixtures import write_seed_run
            from utils.report import generate_report
            logs = tempfile.mkdtemp()
            old = write_seed_run(logs, 1, 42, 100.0, 1.0, epochs=2, test_ppl=110.0)  # no valid_word_ppl logged
            new = write_seed_run(logs, 2, 42, 90.0, 1.0, epochs=2, test_ppl=95.0)
            lines = open(new + "/metrics.jsonl").read().splitlines()
            open(new + "/metrics.jsonl", "w").write("".join(l[:-1] + ', "valid_word_ppl": ' + str(300.0 + i) + "}\\n"
                                                             for i, l in enumerate(lines)))
            report = generate_report(logs, logs + "/out")
            print([r["word_ppl_at_best"] for r in report.rows])
            md = open(logs + "/out/results.md").read()
            print([line for line in md.splitlines() if line.startswith("| Config |") or line.startswith("| 1 |")
                   or line.startswith("| 2 |")][:3])
            print("Word ppl" in open(logs + "/out/results.tex").read())
        """
        done = fixtures.run_python("-c", code)
        self.assertEqual(done.returncode, 0, done.stderr)
        values, lines, tex = done.stdout.splitlines()
        self.assertEqual(values, "[None, 301.0]")
        header, old, new = eval(lines)
        column = header.split(" | ").index("Word ppl at best")
        self.assertEqual((old.split(" | ")[column], new.split(" | ")[column]), ("—", "301.00"))
        self.assertEqual(tex, "True")


class SeedsStatusesAndHints(unittest.TestCase):
    def test_the_pooled_seeds_column_counts_seeds_not_runs(self):
        runs = [memory_run(f"{n}{suffix}", n, seed=seed) for n in (1, 2) for seed, suffix in ((42, ""), (1, "-seed1"))]
        groups, _ = groups_and_rows(runs)
        per_model = answers(groups)["course"]["per_architecture"]
        self.assertEqual([(e["model"], e["n"], e["seeds"]) for e in per_model], [("LSTM", 2, 2)])  # not 4 runs

    def test_a_run_whose_status_is_unreadable_is_never_fastest_or_best(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_seed_run(tmp, 1, 42, 150.0, 10.0, test_ppl=160.0)
            bad = write_seed_run(tmp, 2, 42, 100.0, 1.0, test_ppl=105.0)  # faster and better, but...
            for content in ('{"status": ', '{"status": "done?"}', "[]"):
                with open(os.path.join(bad, "status.json"), "w") as handle:
                    handle.write(content)
                report = read_report(tmp, tmp)
                course = report.answers["course"]
                self.assertEqual((course["fastest"].name, course["best"].name), ("1", "1"), content)
                self.assertEqual(report.runs[1].status, "unreadable")
                md = markdown.render(report, "cmd")
                for line in md.splitlines():
                    if line.startswith(("- **Fastest", "- **Best generalising")):
                        self.assertNotIn("2: LSTM x1, adamw", line)
                self.assertIn("- 2: LSTM x1, adamw: unreadable", md)

    def test_the_empty_folder_hint_writes_into_the_reported_folder(self):
        with tempfile.TemporaryDirectory() as tmp:
            for logs in (os.path.join(tmp, "absent"), tmp):
                code, out, _ = fixtures.run_main(report_main, "--log_dir", logs, "--out", os.path.join(tmp, "p"))
                commands = re.findall(r"`(python run_exp\.py[^`]*)`", out)
                self.assertEqual((code, len(commands)), (2, 2), out)
                for command in commands:  # a --smoke run without --log_dir lands in logs_smoke/
                    self.assertTrue(command.endswith(f"--log_dir {logs}"), command)
                self.assertIn("--smoke", commands[1])


if __name__ == "__main__":
    unittest.main()
