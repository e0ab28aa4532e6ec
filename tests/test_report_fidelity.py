"""What the report shows and how: real paths, log scales decided together, optimizer settings only
where used, smoke runs marked on figures, a LaTeX table that fits a page, empty columns dropped with
a reason, scientific notation for huge perplexities, device and data-parallel size, which
embeddings, the MiniGPT1 epoch-1 note, band figures over seeds, and no torch import."""
import csv
import io
import math
import os
import re
import tempfile
import unittest

import pytest

from tests import fixtures
from tests.report_fixtures import ReportCase, config_args, seed_study, write_notebook_run, write_run, write_seed_run

from utils.report import markdown, read_report, summary_lines
from utils.report.fmt import ppl_text, settings_text
from utils.report.markdown import EPOCH1_NOTE
from utils.report.plots import group_caption, group_title, plot_group, plot_run, run_caption
from utils.report.read import read_run
from utils.report.tables import csv_text, latex_table, markdown_table

SMALL_PT_PER_CHAR, TABCOLSEP_PT, ONE_INCH_MARGINS_PT = 4.5, 3.0, 6.5 * 72.27


def provenance(**changes):
    p = dict(git_commit="abc1234def", torch_version="2.13.0", device="cpu", device_name="AMD EPYC 9B14",
             precision="fp32", distributed=dict(world_size=1, backend=None),
             embeddings=dict(path="e.npz", sha256="a" * 64, kind="ppmi-svd", method="PPMI + SVD, scale 0.1"))
    p.update(changes)
    return p


def gpt1_smoke(log_dir, name="5", seed=42):
    """A MiniGPT1 smoke run: epoch 1 at 58 nats/token (train ppl 1.5e25, valid 1e22)."""
    args = config_args(5, epochs=2, smoke=True, max_batches=2, batch_size=4, seed=seed)
    return write_run(log_dir, name, args, [1e22, 3e9], [math.exp(58.0), 2e12], [0.8, 0.7], test_ppl=2e9,
                     provenance=provenance())


def rendered_width(line):
    """Rough printed width in characters of a LaTeX table row: math markup counts as its glyphs."""
    for markup, glyphs in ((r"$\times/\div$", "x/d"), (r"$\pm$", "+"), ("{,}", ","), (r"$^\dagger$", "+")):
        line = line.replace(markup, glyphs)
    line = re.sub(r"\\times10\^\{(\d+)\}", lambda m: "x10" + m.group(1), line).replace("$", "")
    return [len(cell.strip()) for cell in line.rstrip(" \\").split("&")]


class PathsScalesAndSettings(unittest.TestCase):
    def test_paths_are_the_real_ones_under_any_log_dir(self):
        with tempfile.TemporaryDirectory() as tmp:
            logs = os.path.join(tmp, "my runs", "study")
            write_seed_run(logs, 1, 42, 100.0, 10.0, test_ppl=110.0)
            write_notebook_run(logs, "4", config_args(4, epochs=2), [900, 800], [950, 820], [11, 11], 660.0, 4630.0)
            md = markdown.render(read_report(logs, tmp), "cmd")
        self.assertIn(f"(`{os.path.join(logs, '1', 'metrics.jsonl')}`)", md)
        self.assertIn(f"(`{os.path.join(logs, '4', '*.txt')}`)", md)
        self.assertNotIn("(`logs/", md)

    def test_perplexity_panels_share_the_log_decision(self):
        with tempfile.TemporaryDirectory() as tmp:
            # train ppl spans more than a decade, valid ppl alone does not: all ppl panels go log together
            run_dir = write_run(tmp, "1", config_args(1, epochs=3), [900.0, 300.0, 150.0], [2000.0, 400.0, 100.0],
                                [10.0] * 3, test_ppl=160.0)
            run, _ = read_run(run_dir)
            axes = plot_run(run, os.path.join(tmp, "f.png")).axes
        scales = [ax.get_yscale() for ax in axes]  # row-major: loss vs time x2, ppl vs time x2, loss/ppl per epoch
        self.assertEqual(scales, ["linear", "linear", "log", "log", "linear", "log"])

    def test_optimizer_settings_only_where_used(self):
        self.assertEqual(settings_text(config_args(1)), "lr=1e-3")  # adam: no momentum, no weight decay
        self.assertEqual(settings_text(config_args(3)), "lr=1e-3, wd=5e-4")  # sgd: no momentum
        self.assertEqual(settings_text(config_args(4)), "lr=1e-3, momentum=0.9, wd=5e-4")
        with tempfile.TemporaryDirectory() as tmp:
            write_seed_run(tmp, 3, 42, 900.0, 10.0, test_ppl=950.0)
            write_seed_run(tmp, 4, 42, 800.0, 10.0, test_ppl=850.0)
            report = read_report(tmp, tmp)
        table, _ = markdown_table(report.rows)
        self.assertIn("| 3 | LSTM | 1 | sgd | 42 | 1e-3 |  | 5e-4 |", table)
        self.assertIn("| 4 | LSTM | 1 | momentum | 42 | 1e-3 | 0.9 | 5e-4 |", table)
        self.assertEqual([r["momentum"] for r in report.rows], [None, 0.9])


class SmokeHugeNumbersAndEpochOne(ReportCase):
    @classmethod
    def write_logs(cls, logs):
        gpt1_smoke(logs)
        gpt1_smoke(logs, "5-seed1", seed=1)
        write_run(logs, "1", config_args(1, epochs=2), [300.0, 200.0], [math.exp(58.0), 190.0], [5.0, 5.0],
                  test_ppl=210.0, provenance=provenance())  # an LSTM with the same epoch 1: no MiniGPT1 note

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.runs = {r.exp_id: r for r in cls.report.runs}

    def test_scientific_notation_where_huge(self):
        self.assertEqual([ppl_text(x) for x in (125.0, 2170.4, 99999.0, 1e22, math.inf)],
                         ["125.00", "2,170", "99,999", "1.00e22", "inf"])
        self.assertEqual(ppl_text(1.5e25, latex=True), r"$1.50\times10^{25}$")
        self.assertIn("| 3.00e9 | 2 | 2.00e12 | 2.00e9 |", self.md)
        with tempfile.TemporaryDirectory() as tmp:
            gpt1_smoke(tmp)
            printed = "\n".join(summary_lines(read_report(tmp, tmp)))
        self.assertIn("Best generalising: 5: MiniGPT1 x1, adam, val ppl 3.00e9", printed)
        self.assertIn(r"$3.00\times10^{9}$", latex_table(self.report.groups))

    def test_csv_keeps_full_precision(self):
        rows = {r["exp_id"]: r for r in csv.DictReader(io.StringIO(csv_text(self.report.rows)))}
        self.assertEqual(float(rows["5"]["train_ppl_at_best"]), 2e12)
        self.assertEqual(float(rows["5"]["best_valid_ppl"]), 3e9)

    def test_smoke_runs_are_marked_on_figures(self):
        fig = plot_run(self.runs["5"], os.path.join(self.tmp.name, "e5.png"))
        title, caption = fig.get_suptitle(), fig.get_supxlabel()
        self.assertEqual(title, "5: MiniGPT1 x1, adam — SMOKE RUN (2 epoch(s), 2 batches/split)")  # one short line
        self.assertEqual(fig._suptitle.get_color(), "firebrick")
        self.assertIn("best val ppl 3.00e9 at epoch 2", caption)
        self.assertIn("SMOKE RUN (2 epoch(s), 2 batches/split): numbers only show the pipeline works", caption)
        self.assertIn("52-64 nats/token", caption)
        groups = [g for g in self.report.groups if g.config == 5]
        self.assertTrue(group_title("gpt1_optimizers", groups).startswith("SMOKE RUNS"))
        self.assertIn("Not run yet or left out: configurations 6, 7, 8.", group_caption(groups, [6, 7, 8]))
        self.assertIn("left out: configuration 6.", group_caption(groups, [6]))
        self.assertNotIn("SMOKE", run_caption(self.runs["1"]))
        self.assertIn("(smoke)", self.md.split("## Results per configuration")[1].split("\n| 5 |")[1].split("\n")[0])

    def test_epoch_one_note_for_minigpt1_only(self):
        self.assertIn(EPOCH1_NOTE, self.md)
        self.assertNotIn("nats/token", run_caption(self.runs["1"]))


class ColumnsDevicesEmbeddings(unittest.TestCase):
    def test_columns_empty_for_every_run_are_dropped_with_a_reason(self):
        with tempfile.TemporaryDirectory() as tmp:
            for number, best in ((1, 150.0), (2, 140.0)):  # adam and adamw: no momentum; CPU; no counts
                write_run(tmp, str(number), config_args(number, epochs=2), [300.0, best], [310.0, best], [5.0, 5.0],
                          test_ppl=best, provenance=provenance())
            report = read_report(tmp, tmp)
        table, note = markdown_table(report.rows)
        header = table.splitlines()[0]
        for gone in ("Momentum", "Learnable params", "Frozen params", "Peak mem", "Steady mem"):
            self.assertNotIn(gone, header)
        self.assertIn("Weight decay", header)  # adamw uses it
        self.assertEqual(note, "Columns left out because every row leaves them empty: Momentum (no run's optimizer "
                               "uses it); Learnable params, Frozen params (not logged by any of these runs (the course "
                               "notebook's save_logs records no parameter counts or peak memory)); Peak mem (MB), "
                               "Steady mem (MB) "
                               "(not measured by any run: NaN, as on a CPU).")
        md = markdown.render(report, "cmd")
        self.assertIn(note, md)
        self.assertIn("GPU memory: not measured: every run ran on a CPU.", md)
        tex = latex_table(report.groups)
        self.assertNotIn("Peak GB &", tex)
        self.assertIn("Left out, empty for every row: Peak GB (not measured by any run: NaN, as on a CPU)", tex)
        self.assertIn("params_learnable", csv_text(report.rows).splitlines()[0])  # the CSV keeps every column

    def test_device_name_and_data_parallel_size(self):
        with tempfile.TemporaryDirectory() as tmp:
            gpu = provenance(device_name="NVIDIA H200", distributed=dict(world_size=4, backend="nccl"))
            write_run(tmp, "1", config_args(1, epochs=1), [150.0], [160.0], [5.0], test_ppl=150.0, provenance=gpu)
            write_run(tmp, "2", config_args(2, epochs=1), [140.0], [150.0], [5.0], test_ppl=140.0,
                      provenance=provenance())
            md = markdown.render(read_report(tmp, tmp), "cmd")
        self.assertIn("| 1: LSTM x1, adam | NVIDIA H200 ×4 data-parallel (nccl) | fp32 |", md)
        self.assertIn("| 2: LSTM x1, adamw | AMD EPYC 9B14 | fp32 |", md)
        self.assertIn("**Warning:** the runs used different devices", md)

    def test_embeddings_named_and_mixed_files_warned(self):
        with tempfile.TemporaryDirectory() as tmp:
            gpt1 = provenance(embeddings=dict(path="g.npz", sha256="b" * 64, kind="unknown (e.g. GPT-1 pretrained)"))
            write_run(tmp, "1", config_args(1, epochs=1), [150.0], [160.0], [5.0], test_ppl=150.0,
                      provenance=provenance())
            write_run(tmp, "2", config_args(2, epochs=1), [140.0], [150.0], [5.0], test_ppl=140.0, provenance=gpt1)
            report = read_report(tmp, tmp)
        md = markdown.render(report, "cmd")
        self.assertIn("Embeddings: offline stand-in embeddings (ppmi-svd): PPMI + SVD, scale 0.1 (runs 1); GPT-1 "
                      "pretrained embeddings, presumably (g.npz: no sidecar) (runs 2).", md)
        self.assertIn("**Warning:** the runs used different embedding files", md)
        self.assertIn("What it costs against learnable embeddings at a fixed budget is measured by "
                      "bench/embeddings_quality.py", md)
        self.assertIn("offline stand-in embeddings (ppmi-svd); AMD EPYC 9B14", run_caption(report.runs[0]))
        self.assertIn("WARNING: mixed embeddings", group_caption(report.groups, [3, 4]))

    def test_one_embeddings_kind_is_one_sentence(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_run(tmp, "1", config_args(1, epochs=1), [150.0], [160.0], [5.0], test_ppl=150.0,
                      provenance=provenance())
            write_notebook_run(tmp, "4", config_args(4, epochs=1), [900], [950], [11], 660.0, 4630.0)
            md = markdown.render(read_report(tmp, tmp), "cmd")
        self.assertIn("(runs 1); embeddings not recorded (no provenance.json) (runs 4).", md)

    def test_gpt1_embeddings_alone_get_no_stand_in_caveat(self):
        with tempfile.TemporaryDirectory() as tmp:
            gpt1 = provenance(embeddings={"kind": "unknown (e.g. GPT-1 pretrained)", "path": "/x/g.npz", "sha256": "b" * 64})
            write_run(tmp, "2", config_args(2, epochs=1), [140.0], [150.0], [5.0], test_ppl=140.0, provenance=gpt1)
            md = markdown.render(read_report(tmp, tmp), "cmd")
        self.assertIn("Embeddings: all runs used GPT-1 pretrained embeddings, presumably (g.npz: no sidecar).", md)
        self.assertNotIn("bench/embeddings_quality.py", md)


class SeedStudyTablesAndFigures(ReportCase):
    @classmethod
    def write_logs(cls, logs):
        seed_study(logs)

    def test_latex_table_fits_a_page(self):
        tex = latex_table(self.report.groups)
        for needed in (r"\small", r"\toprule", r"\end{tabular}}", r"\midrule", r"\bottomrule", "Cfg: ", "Opt.: ",
                       "s/epoch: ", "Peak GB: ", "n: completed seeds", r"$m \times/\div f$"):
            self.assertIn(needed, tex)
        lines = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
        self.assertEqual(len(lines), 16)  # 12 configurations + 4 tuned
        header = tex.split(r"\toprule")[1].split(r"\midrule")[0].strip()
        widths = [max(col) for col in zip(*(rendered_width(line) for line in [header] + lines))]
        printed = sum(widths) * SMALL_PT_PER_CHAR + 2 * TABCOLSEP_PT * len(widths)
        self.assertLess(printed, ONE_INCH_MARGINS_PT, (widths, printed))
        self.assertIn(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%", tex)  # only shrinks

    def test_comparison_figure_draws_a_band_per_seed_group(self):
        groups = [g for g in self.report.groups if g.config in (1, 2, 3, 4)]
        fig = plot_group("lstm_optimizers", groups, [], os.path.join(self.tmp.name, "c.png"))
        ax_epoch = fig.axes[0]
        bands = [c for c in ax_epoch.collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
        self.assertEqual(len(bands), 6)  # 1, 2, 3, 4 and 3-tuned, 4-tuned: each has 2+ completed seeds
        labels = ax_epoch.get_legend_handles_labels()[1]
        self.assertIn("3: LSTM x1, sgd (n=2 of 3)", labels)
        self.assertIn("4-tuned: LSTM x1, momentum (lr 0.03) (n=2 of 3)", labels)
        styles = {line.get_label(): line.get_linestyle() for line in ax_epoch.get_lines()}
        self.assertEqual((styles["1: LSTM x1, adam (n=3)"], styles["4-tuned: LSTM x1, momentum (lr 0.03) (n=2 of 3)"]),
                         ("-", "--"))
        self.assertEqual(fig.get_suptitle(), "LSTM (1 layer): optimizers compared")
        caption = fig.legends[0].get_title().get_text()
        self.assertIn("line: geometric mean over seeds; band: min-max over seeds", caption)
        self.assertIn("offline stand-in embeddings (ppmi-svd)", caption)
        # the band of configuration 1 at the last epoch spans its seeds' best ppl: 150 * 0.8 .. 150 * 1.25
        band = bands[0].get_paths()[0].vertices[:, 1]
        self.assertAlmostEqual(min(band), 120.0, places=6)
        self.assertAlmostEqual(max(band[band < 1000]), 150 * 1.25 * 4, places=6)


@pytest.mark.slow
class NoTorch(unittest.TestCase):
    def test_a_whole_report_imports_no_torch(self):
        code = ("import sys, tempfile; from tests.report_fixtures import write_seed_run; "
                "import utils.report as r; d = tempfile.mkdtemp(); write_seed_run(d, 1, 42, 100.0, 1.0, epochs=1, "
                "test_ppl=110.0); write_seed_run(d, 1, 1, 120.0, 1.0, epochs=1, test_ppl=130.0); "
                "rep = r.generate_report(d, d + '/out'); assert rep.groups[0].n == 2, rep.groups; "
                "sys.exit('torch' in sys.modules or 'run_exp' in sys.modules)")
        done = fixtures.run_python("-c", code)
        self.assertEqual(done.returncode, 0, done.stderr)


if __name__ == "__main__":
    unittest.main()
