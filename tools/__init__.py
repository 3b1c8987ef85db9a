"""Command-line tools, run from a checkout of the repository root.

Run them as `python tools/<name>.py` or `python -m tools.<name>` (as each
tool's docstring says); they import `keras_tips` and `training` as installed
packages (`pip install -e .`). This folder is not part of the wheel.
"""
