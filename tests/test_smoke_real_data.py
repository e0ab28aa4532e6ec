"""The smoke preset end to end on the real Wikitext-2 files: both models, through the CLI."""
import json
import math
import os
import tempfile
import unittest

import fixtures

import run_exp
from utils.data.batches import TensorBatches
from utils.train.settings import SMOKE
from utils.data.wikitext2 import Wikitext2


class RealDataSmokeTest(unittest.TestCase):
    def test_smoke_sweep_of_both_models(self):
        self.assertTrue(os.path.isfile(os.path.join(fixtures.WIKITEXT2, "wiki.train.npz")),
                        f"real data missing in {fixtures.WIKITEXT2}")
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        # Random GPT-1-shaped embeddings: this test checks the pipeline, not their quality.
        emb = fixtures.write_embeddings(os.path.join(tmp.name, "emb.npz"), vocab=40479, width=768, positions=512)
        log_dir = os.path.join(tmp.name, "logs")
        code = run_exp.cli(["--config", "2,6", "--smoke", "--data_folder", fixtures.WIKITEXT2, "--embeddings", emb,
                            "--log_dir", log_dir, "--device", "cpu"])
        self.assertEqual(code, 0)
        train = Wikitext2(fixtures.WIKITEXT2, "train")
        batches = TensorBatches(train, SMOKE["batch_size"], shuffle=True, seed=42)
        for epoch in range(SMOKE["epochs"]):
            batches.set_epoch(epoch)
            expected = sum(float(b["mask"].sum()) for _, b in zip(range(SMOKE["max_batches"]), batches))
            for exp_id in ("2", "6"):
                with open(os.path.join(log_dir, exp_id, "metrics.jsonl")) as handle:
                    metrics = [json.loads(line) for line in handle]
                self.assertEqual(len(metrics), SMOKE["epochs"])
                self.assertEqual(metrics[epoch]["train_tokens"], expected)
                self.assertTrue(math.isfinite(metrics[epoch]["valid_ppl"]))
                self.assertGreater(metrics[epoch]["valid_ppl"], 1000, "random embeddings, 2 steps: near uniform")
        for exp_id in ("2", "6"):
            with open(os.path.join(log_dir, exp_id, "status.json")) as handle:
                self.assertEqual(json.load(handle)["status"], "completed")


if __name__ == "__main__":
    unittest.main()
