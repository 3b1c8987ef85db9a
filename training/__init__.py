"""TIPS / TIPSv2 pretraining with `model.fit` (`python -m training.train`).

`train.py` orchestrates a run; the README's layout section lists the
modules it puts together (config, data pipeline, pretrainer, losses,
checkpoints) and `training.scenes`, the synthetic dataset of the main job.
"""
