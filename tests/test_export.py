"""SavedModel export: round trip through a TensorFlow-only process."""

import io
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

from keras_tips.export import export_saved_model
from keras_tips.presets import load_preset_components

BACKEND = keras.backend.backend()
TOLERANCE = 1e-5

# Modules a TensorFlow-only server does not have. `None` in `sys.modules`
# makes importing them fail, as if they were not installed.
SERVER_BLOCKED_MODULES = (
    "keras",
    "keras_hub",
    "keras_tips",
    "tf_keras",
    "jax",
    "torch",
    "tensorflow_text",
)

# Runs in a fresh interpreter: loads the SavedModel with TensorFlow alone
# (plus the TF Text SentencePiece kernels, which TensorFlow Serving ships)
# and writes every signature's outputs.
SERVER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    BLOCKED = {blocked!r}
    for name in BLOCKED:
        sys.modules[name] = None
    import numpy as np
    import tensorflow as tf

    model_dir, inputs_path, outputs_path, sentencepiece_ops = sys.argv[1:5]
    tf.load_op_library(sentencepiece_ops)
    served = tf.saved_model.load(model_dir)
    inputs = np.load(inputs_path, allow_pickle=False)
    results = {{}}
    for key in ("images_a", "images_b"):
        out = served.embed_images(tf.constant(inputs[key]))
        for name, value in out.items():
            results[key + "/" + name] = value.numpy()
    blobs = [
        inputs["image_bytes_%d" % i].tobytes()
        for i in range(int(inputs["num_image_bytes"]))
    ]
    out = served.embed_image_bytes(tf.constant(blobs))
    for name, value in out.items():
        results["bytes/" + name] = value.numpy()
    texts = [t.decode("utf-8") for t in inputs["texts"]]
    out = served.embed_texts(tf.constant(texts))
    results["texts/text_embeddings"] = out["text_embeddings"].numpy()
    out = served.signatures["embed_texts"](texts=tf.constant(texts))
    results["signature_texts/text_embeddings"] = out["text_embeddings"].numpy()
    np.savez(outputs_path, **results)
    loaded = sorted(
        name for name, module in sys.modules.items()
        if module is not None and name.split(".")[0] in BLOCKED
    )
    print(json.dumps({{
        "loaded_blocked_modules": loaded,
        "signatures": sorted(served.signatures.keys()),
    }}))
    """
).format(blocked=SERVER_BLOCKED_MODULES)

TEXTS = [
    "A photo of a CAT.",
    "two dogs playing in the snow",
    "",
    # Longer than 64 tokens: exercises truncation and the official mask.
    " ".join(["a very long caption about many things"] * 20),
]


def _sentencepiece_ops_library():
    import importlib.util

    spec = importlib.util.find_spec("tensorflow_text")
    path = os.path.join(
        os.path.dirname(spec.origin), "python", "ops",
        "_sentencepiece_tokenizer.so",
    )
    assert os.path.exists(path), path
    return path


def _photos():
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea()]


def _encoded(image, fmt):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


def _decoded(blob):
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))


def _normalized(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _round_trip(preset, tmp_path):
    """Exports, serves in a fresh TF-only process, returns both sides."""
    backbone, tokenizer, converter = load_preset_components(preset)
    export_dir = tmp_path / "saved_model"
    export_saved_model(
        backbone, export_dir, tokenizer=tokenizer, image_converter=converter
    )

    rng = np.random.default_rng(0)
    images_a = rng.uniform(size=(2, 56, 56, 3)).astype("float32")
    images_b = rng.uniform(size=(1, 84, 42, 3)).astype("float32")
    photos = _photos()
    blobs = [_encoded(photos[0], "PNG"), _encoded(photos[1], "JPEG"),
             _encoded(photos[2], "JPEG")]

    # Keras references, computed here with the keras-tips objects.
    expected = {}
    for key, images in (("images_a", images_a), ("images_b", images_b)):
        out = backbone.vision_encoder(images)
        for name in ("cls_embeddings", "patch_embeddings"):
            expected[f"{key}/{name}"] = ops.convert_to_numpy(out[name])
    pixels = np.stack(
        [ops.convert_to_numpy(converter(_decoded(b))) for b in blobs]
    )
    out = backbone.vision_encoder(pixels)
    for name in ("cls_embeddings", "patch_embeddings"):
        expected[f"bytes/{name}"] = ops.convert_to_numpy(out[name])
    tokens = tokenizer.tokenize_with_padding_mask(TEXTS)
    text = ops.convert_to_numpy(
        backbone.encode_texts(
            ops.convert_to_tensor(tokens["token_ids"]),
            ops.convert_to_tensor(tokens["padding_mask"]),
        )
    )
    expected["texts/text_embeddings"] = _normalized(text)
    expected["signature_texts/text_embeddings"] = _normalized(text)

    inputs = tmp_path / "inputs.npz"
    np.savez(
        inputs,
        images_a=images_a,
        images_b=images_b,
        num_image_bytes=len(blobs),
        **{
            f"image_bytes_{i}": np.frombuffer(b, dtype="uint8")
            for i, b in enumerate(blobs)
        },
        texts=np.array([t.encode("utf-8") for t in TEXTS], dtype=bytes),
    )
    script = tmp_path / "serve.py"
    script.write_text(SERVER_SCRIPT)
    outputs = tmp_path / "outputs.npz"
    env = {
        key: value for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "KERAS_BACKEND")
    }
    result = subprocess.run(
        [sys.executable, str(script), str(export_dir), str(inputs),
         str(outputs), _sentencepiece_ops_library()],
        capture_output=True, text=True, env=env, cwd=str(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    with np.load(outputs) as served:
        served = {key: served[key] for key in served.files}
    return expected, served, report


def _check_round_trip(expected, served, report):
    assert report["loaded_blocked_modules"] == []
    assert {
        "embed_images", "embed_image_bytes", "embed_texts",
        "embed_token_ids", "serving_default",
    } <= set(report["signatures"])
    assert set(expected) == set(served)
    for key, value in expected.items():
        assert served[key].shape == value.shape, key
        np.testing.assert_allclose(
            served[key], value, atol=TOLERANCE, rtol=0, err_msg=key
        )
    # Text embeddings are unit vectors, except the empty text's (zero).
    norms = np.linalg.norm(served["texts/text_embeddings"], axis=-1)
    np.testing.assert_allclose(norms[[0, 1, 3]], 1.0, atol=1e-5)
    assert served["images_b/patch_embeddings"].shape == (1, 6, 3, 64)


@pytest.mark.skipif(
    BACKEND == "torch",
    reason="torch has no direct SavedModel export; the torch path (export "
    "through a TensorFlow subprocess) is the slow test below",
)
def test_saved_model_round_trip_in_tensorflow_only_process(
    tiny_preset, tmp_path
):
    expected, served, report = _round_trip(tiny_preset, tmp_path)
    _check_round_trip(expected, served, report)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "torch", reason="torch-only export path")
def test_torch_export_goes_through_tensorflow(tiny_preset, tmp_path):
    expected, served, report = _round_trip(tiny_preset, tmp_path)
    _check_round_trip(expected, served, report)


@pytest.mark.skipif(BACKEND != "torch", reason="torch-only behaviour")
def test_torch_direct_export_raises_clear_error(tiny_preset, tmp_path):
    backbone, tokenizer, converter = load_preset_components(tiny_preset)
    with pytest.raises(NotImplementedError, match="torch backend"):
        export_saved_model(
            backbone, tmp_path / "out", tokenizer=tokenizer,
            image_converter=converter, via_tensorflow=False,
        )


def test_export_rejects_bad_arguments(tiny_preset, tmp_path):
    backbone, tokenizer, converter = load_preset_components(tiny_preset)
    with pytest.raises(ValueError, match="multiples of the patch size 14"):
        export_saved_model(backbone, tmp_path / "a", image_size=100)
    with pytest.raises(TypeError, match="TIPSBackbone"):
        export_saved_model(backbone.vision_encoder, tmp_path / "b")
    with pytest.raises(TypeError, match="TIPSTokenizer"):
        export_saved_model(backbone, tmp_path / "c", tokenizer="spm.model",
                           image_size=56)
    assert not (tmp_path / "a").exists()
