"""Serving an exported SavedModel in the older TensorFlow of the TFDV venv.

`.venv-tfdv` (see `tools/setup_tfdv_env.sh`) has TensorFlow 2.16.2 and the
matching tensorflow-text 2.16.1, and neither keras-tips nor keras-hub. The
SavedModel is exported by `python -m keras_tips.export`'s `_main` in this venv
(TensorFlow 2.21) on the TensorFlow backend, which is also what the torch
backend does, and served there:

- with `import tensorflow_text` (or `tf.load_op_library` on its
  SentencePiece kernels): every signature, texts included, agrees with the
  Keras outputs;
- without it: a SavedModel with `embed_texts` does not load at all, one
  written with `--no-texts` serves the images;
- a SavedModel exported from the jax backend does not load (its StableHLO
  is newer than TensorFlow 2.16 reads).
"""

import io
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

from keras_tips.export import _main as export_main
from keras_tips.presets import load_preset_components
from keras_tips.presets import resolve_preset
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.tfdv, pytest.mark.backend_independent,
              pytest.mark.slow]

TFDV_PYTHON = REPO_ROOT / ".venv-tfdv" / "bin" / "python"
RELATIVE_TOLERANCE = 1e-5  # of the largest |value| of each output

TEXTS = [
    "A photo of a RED circle.",
    "two blue squares and a star",
    "",
    # Longer than 64 tokens: truncation and the official padding mask.
    " ".join(["a long caption about many shapes"] * 20),
]

# Runs in the TFDV venv's interpreter. `mode`: "import" (import
# tensorflow_text), "op_library" (load only its SentencePiece kernels) or
# "none" (plain TensorFlow).
SERVER_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    import numpy as np
    import tensorflow as tf

    model_dir, inputs_path, outputs_path, mode = sys.argv[1:5]
    versions = {"tensorflow": tf.__version__}
    if mode == "import":
        import tensorflow_text
        versions["tensorflow_text"] = tensorflow_text.__version__
    elif mode == "op_library":
        spec = importlib.util.find_spec("tensorflow_text")
        tf.load_op_library(os.path.join(
            os.path.dirname(spec.origin), "python", "ops",
            "_sentencepiece_tokenizer.so"))
    for name in ("keras_tips", "keras_hub"):
        assert importlib.util.find_spec(name) is None, name
    served = tf.saved_model.load(model_dir)
    inputs = np.load(inputs_path, allow_pickle=False)
    results = {}
    out = served.embed_images(tf.constant(inputs["images"]))
    for name, value in out.items():
        results["images/" + name] = value.numpy()
    if "embed_image_bytes" in served.signatures:
        out = served.embed_image_bytes(tf.constant([inputs["png"].tobytes()]))
        for name, value in out.items():
            results["bytes/" + name] = value.numpy()
    if "embed_texts" in served.signatures:
        texts = [t.decode("utf-8") for t in inputs["texts"]]
        out = served.signatures["embed_texts"](texts=tf.constant(texts))
        results["texts/text_embeddings"] = out["text_embeddings"].numpy()
        out = served.embed_token_ids(tf.constant(inputs["token_ids"]),
                                     tf.constant(inputs["padding_mask"]))
        results["token_ids/text_embeddings"] = out["text_embeddings"].numpy()
    np.savez(outputs_path, **results)
    print(json.dumps({"versions": versions,
                      "signatures": sorted(served.signatures.keys())}))
    """
)


def _export(backend, *exports):
    """Exports the embedded preset by `keras_tips.export`'s command line, once
    per `(directory, texts)` in `exports`, on `backend`: in this process if
    it runs that backend, else in one subprocess for all of them."""
    argvs = [[resolve_preset("tips_tiny_scenes"), str(directory)]
             + ([] if texts else ["--no-texts"])
             for directory, texts in exports]
    if keras.backend.backend() == backend:
        for argv in argvs:
            assert export_main(argv) == 0
        return
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = str(REPO_ROOT)
    code = ("import sys; from keras_tips.export import _main; "
            f"sys.exit(max(_main(argv) for argv in {argvs!r}))")
    result = subprocess.run([sys.executable, "-c", code], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def tfdv_python():
    if not TFDV_PYTHON.exists():
        pytest.skip(f"no TensorFlow 2.16 venv at {TFDV_PYTHON}: run "
                    "`bash tools/setup_tfdv_env.sh` (tools/run_tests.sh "
                    "does) to test serving in TensorFlow 2.16.")
    return TFDV_PYTHON


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("older_tensorflow")
    directories = {"full": root / "full", "images_only": root / "images_only"}
    _export("tensorflow", (directories["full"], True),
            (directories["images_only"], False))
    return directories


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Inputs, and the Keras outputs the served ones must reproduce."""
    root = tmp_path_factory.mktemp("older_tensorflow_inputs")
    backbone, tokenizer, converter = load_preset_components(
        resolve_preset("tips_tiny_scenes"))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 56, 84, 3)).astype("float32")
    photo = (rng.uniform(size=(40, 60, 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    tokens = tokenizer.tokenize_with_padding_mask(TEXTS)
    token_ids = ops.convert_to_numpy(tokens["token_ids"]).astype("int32")
    padding_mask = ops.convert_to_numpy(tokens["padding_mask"]).astype("int32")
    np.savez(root / "inputs.npz", images=images,
             png=np.frombuffer(buffer.getvalue(), dtype="uint8"),
             texts=np.array([t.encode("utf-8") for t in TEXTS], dtype=bytes),
             token_ids=token_ids, padding_mask=padding_mask)

    expected = {}
    for key, pixels in (
        ("images", images),
        ("bytes", ops.convert_to_numpy(converter(photo))[None]),
    ):
        out = backbone.vision_encoder(pixels)
        for name in ("cls_embeddings", "patch_embeddings"):
            expected[f"{key}/{name}"] = ops.convert_to_numpy(out[name])
    text = ops.convert_to_numpy(backbone.encode_texts(
        ops.convert_to_tensor(token_ids), ops.convert_to_tensor(padding_mask)))
    text = text / np.maximum(np.linalg.norm(text, axis=-1, keepdims=True),
                             1e-12)
    expected["texts/text_embeddings"] = text
    expected["token_ids/text_embeddings"] = text
    return root / "inputs.npz", expected


def _serve(python, model_dir, inputs, mode, tmp_path):
    (tmp_path / "serve.py").write_text(SERVER_SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "KERAS_BACKEND")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run(
        [str(python), str(tmp_path / "serve.py"), str(model_dir), str(inputs),
         str(tmp_path / f"served_{mode}.npz"), mode],
        env=env, capture_output=True, text=True, timeout=600,
        cwd=str(tmp_path))
    if result.returncode != 0:
        return result, None, None
    report = json.loads(result.stdout.strip().splitlines()[-1])
    with np.load(tmp_path / f"served_{mode}.npz") as served:
        served = {key: served[key] for key in served.files}
    return result, report, served


def _check(served, expected, keys):
    assert set(served) == set(keys)
    for key in keys:
        assert served[key].shape == expected[key].shape, key
        scale = np.abs(expected[key]).max()
        error = np.abs(served[key] - expected[key]).max()
        print(f"{key}: max error {error / scale:.1e} x max|Keras|")
        assert error <= RELATIVE_TOLERANCE * scale, (key, error / scale)


def test_tensorflow_2_16_with_tensorflow_text_serves_every_signature(
    tfdv_python, exported, case, tmp_path
):
    inputs, expected = case
    for mode in ("import", "op_library"):
        result, report, served = _serve(tfdv_python, exported["full"], inputs,
                                        mode, tmp_path)
        assert result.returncode == 0, (mode, result.stderr[-3000:])
        assert report["versions"]["tensorflow"].startswith("2.16."), report
        if mode == "import":
            assert report["versions"]["tensorflow_text"].startswith(
                "2.16."), report
        assert {"embed_images", "embed_image_bytes", "embed_texts",
                "embed_token_ids"} <= set(report["signatures"])
        _check(served, expected, list(expected))
        # The empty text embeds to zero, every other text to a unit vector.
        norms = np.linalg.norm(served["texts/text_embeddings"], axis=-1)
        np.testing.assert_allclose(norms[[0, 1, 3]], 1.0, atol=1e-5)


def test_tensorflow_2_16_without_tensorflow_text(
    tfdv_python, exported, case, tmp_path
):
    inputs, expected = case
    # With `embed_texts`: the SentencePiece ops are needed to load at all.
    # (Which one the loader meets first depends on the graph's function
    # order: `SentencepieceOp` or `SentencepieceTokenizeOp`.)
    result, _, _ = _serve(tfdv_python, exported["full"], inputs, "none",
                          tmp_path)
    assert result.returncode != 0
    assert re.search(r"Op type not registered 'Sentencepiece\w*Op'",
                     result.stderr), result.stderr[-2000:]
    # Written with `--no-texts`: plain TensorFlow 2.16 serves the images.
    result, report, served = _serve(tfdv_python, exported["images_only"],
                                    inputs, "none", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert report["versions"]["tensorflow"].startswith("2.16."), report
    assert "embed_texts" not in report["signatures"]
    _check(served, expected, [key for key in expected
                              if key.startswith(("images/", "bytes/"))])


def test_jax_export_does_not_load_in_tensorflow_2_16(
    tfdv_python, case, tmp_path
):
    inputs, _ = case
    model_dir = tmp_path / "from_jax"
    _export("jax", (model_dir, True))
    result, _, _ = _serve(tfdv_python, model_dir, inputs, "import", tmp_path)
    assert result.returncode != 0
    assert "Cannot deserialize computation" in result.stderr, (
        result.stderr[-2000:])
