"""Serving an exported SavedModel in the older TensorFlow of the TFDV venv.

`.venv-tfdv` (see `tools/setup_tfdv_env.sh`) has TensorFlow 2.16 and no
`tensorflow_text`. The SavedModel is exported by `python -m
keras_tips.export` on the TensorFlow backend (what the torch backend does
too) and loaded there.
"""

import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_tips
from keras_tips.presets import resolve_preset
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.tfdv, pytest.mark.backend_independent]

TFDV_PYTHON = REPO_ROOT / ".venv-tfdv" / "bin" / "python"

SERVER_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    model_dir, images_path, output_path = sys.argv[1:4]
    print("tensorflow", tf.__version__)
    served = tf.saved_model.load(model_dir)
    outputs = served.embed_images(tf.constant(np.load(images_path)))
    np.save(output_path, outputs["cls_embeddings"].numpy())
    """
)


def _export(tmp_path, name, texts):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = str(REPO_ROOT)
    command = [sys.executable, "-m", "keras_tips.export",
               resolve_preset("tips_tiny_scenes"), str(tmp_path / name)]
    if not texts:
        command.append("--no-texts")
    result = subprocess.run(command, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp_path / name


def _serve(tmp_path, model_dir, images):
    if not TFDV_PYTHON.exists():
        pytest.fail(f"TFDV venv not found at {TFDV_PYTHON}: run "
                    "`bash tools/setup_tfdv_env.sh` first.")
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "serve.py").write_text(SERVER_SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "KERAS_BACKEND")}
    return subprocess.run(
        [str(TFDV_PYTHON), str(tmp_path / "serve.py"), str(model_dir),
         str(tmp_path / "images.npy"), str(tmp_path / "served.npy")],
        env=env, capture_output=True, text=True, timeout=600,
        cwd=str(tmp_path))


@pytest.mark.slow
def test_tensorflow_2_16_serves_images_and_needs_tensorflow_text(tmp_path):
    images = np.random.default_rng(0).uniform(
        size=(2, 56, 84, 3)).astype("float32")
    # Without `embed_texts`: TensorFlow 2.16 alone serves the images.
    result = _serve(tmp_path, _export(tmp_path, "images_only", texts=False),
                    images)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tensorflow 2.16" in result.stdout
    backbone = keras_tips.TIPSBackbone.from_preset("tips_tiny_scenes")
    expected = keras.ops.convert_to_numpy(
        backbone.vision_encoder(images)["cls_embeddings"])
    served = np.load(tmp_path / "served.npy")
    assert np.abs(served - expected).max() <= 1e-5 * np.abs(expected).max()
    # With `embed_texts`: the SentencePiece op of tensorflow_text is needed
    # to load the SavedModel at all.
    result = _serve(tmp_path, _export(tmp_path, "full", texts=True), images)
    assert result.returncode != 0
    # (Which SentencePiece op the loader meets first depends on the graph's
    # function order: `SentencepieceOp` or `SentencepieceTokenizeOp`.)
    assert re.search(r"Op type not registered 'Sentencepiece\w*Op'",
                     result.stderr), result.stderr[-2000:]
