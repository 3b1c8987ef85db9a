"""`keras-tips`: the command-line tool of keras-tips.

Subcommands:
- `convert`: official TIPS checkpoint files (or a named preset) to a preset
  directory.
- `embed`: images or texts to a `.npy` file of embeddings.
- `classify`: zero-shot classification of images among given labels.
- `segment`: zero-shot segmentation of an image into given labels; writes a
  coloured mask PNG.
- `pca`: the PCA picture of the patch embeddings of images (PNG).
- `export`: a TensorFlow SavedModel for serving.

Every subcommand takes `--preset` (a named preset such as `tips_v2_b14`, or
a preset directory; default `$KERAS_TIPS_PRESET` or `tips_v2_b14`) and
`--help`. Errors print one line and exit with status 1 (2 for bad usage).
The Keras backend is chosen with the `KERAS_BACKEND` environment variable.

One module per subcommand (group), each with its arguments next to its
handler; `entry_point.py` assembles the parser.
"""

from keras_tips.cli.entry_point import build_parser
from keras_tips.cli.entry_point import main

__all__ = ["build_parser", "main"]
