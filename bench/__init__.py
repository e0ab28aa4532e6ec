"""Benchmarks: `python -m bench.train_step` (CPU/GPU step throughput), `python -m bench.roofline`
(FLOPs and bytes per step on each GPU class, from the CUDA dry run) and `python -m bench.gpu_check`."""
