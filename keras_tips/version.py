"""The keras-tips version, `keras_tips.__version__` (as in `pyproject.toml`)."""

__version__ = "0.1.0"
