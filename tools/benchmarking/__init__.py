"""The measurements behind `tools/benchmark.py` and `tools/benchmark_training.py`.

One module per concern: the measured sizes (`settings`), timing and
throughput records (`timing`), the matmul peak (`roofline`), our encoders
(`encoders`), the official TIPS encoder of a google-deepmind/tips checkout
(`official`), resident memory (`memory`, `memory_probe`), time to first
embedding (`first_embedding`), one backend's worker (`worker`), fresh
backend processes (`processes`), the training and input-pipeline tools
(`training_throughput`), the machine (`machine`) and analytic FLOP counts
(`flops`).

The scripts import this folder as `benchmarking` (their own folder is first
on `sys.path` when run as `python tools/benchmark.py`); tests import it as
`tools.benchmarking` from the repository root. Inside, imports are relative,
so both names work.
"""
