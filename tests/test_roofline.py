"""bench/roofline.py from dry-run records to its table and JSON (the dry run itself, the records'
source: tests/test_cuda_dry.py)."""
import io
import json
import os
import tempfile
import unittest
from contextlib import redirect_stdout
from unittest import mock

from bench import roofline
from utils.study.configs import CONFIGS


def _records(runs, timeout):
    # every step: 0.6 TFLOP in half precision and 2 GB, the loss 1 GB of them
    phase = dict(bytes=2e9, flops=6e11, flops_half=6e11, flops_fp32=0, regions={"loss": [1e9, 0]})
    return [dict(run, phases={"train2": phase, "eval1": phase},
                 provenance={"precision": "fp16", "recurrence_precision": None}) for run in runs]


class Roofline(unittest.TestCase):
    def test_main_prints_and_writes_every_configuration_and_the_study(self):
        with tempfile.TemporaryDirectory() as folder, mock.patch("tests.cuda_dry.harness.run_all", _records):
            out = os.path.join(folder, "results", "roofline.json")
            printed = io.StringIO()
            with redirect_stdout(printed):
                self.assertEqual(roofline.main(["--gpus", "T4", "--out", out]), 0)
            with open(out) as handle:
                record = json.load(handle)
        step = max(6e11 / 65e12, 2e9 / 320e9)  # the T4's fp16 compute bound: 9.2 ms
        epoch = (roofline.TRAIN_STEPS + roofline.VALID_STEPS) * step
        rows = record["rows"]
        self.assertEqual([r["config"] for r in rows], [*CONFIGS, "study"])
        for row in rows[:-1]:
            self.assertAlmostEqual(row["epoch_s"], epoch)
            self.assertEqual((row["train_gb"], row["loss_gb"]), (2.0, 1.0))
        study = len(CONFIGS) * (roofline.EPOCHS * epoch + roofline.TEST_STEPS * step) / 60
        self.assertAlmostEqual(rows[-1]["study_min"], study)
        self.assertEqual(record["table"], printed.getvalue().strip())
        self.assertIn(f"| T4 | 12 x 10 study | | | | | | | **{study:.1f} min** |", record["table"])

    def test_an_unknown_gpu_is_one_line_and_exit_2(self):
        err = io.StringIO()
        with mock.patch("sys.stderr", err):
            self.assertEqual(roofline.main(["--gpus", "V100"]), 2)
        self.assertEqual(len(err.getvalue().strip().splitlines()), 1)
