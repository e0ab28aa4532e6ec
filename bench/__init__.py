"""Benchmarks: `python -m bench.train_step` (CPU/GPU step throughput) and
`python -m bench.gpu_epoch_times` (per-configuration epoch times on a CUDA machine)."""
