"""Export of a `TIPSBackbone` as a TensorFlow SavedModel for serving.

The SavedModel holds the weights, the computation and the text tokenizer,
so a server with TensorFlow alone (no Keras, no keras-tips) can load it with
`tf.saved_model.load` or TensorFlow Serving. It has these signatures:

- `embed_images(images)`: float32 images `(batch, height, width, 3)` in
  `[0, 1]`, height and width any multiples of 14 ->
  `{"cls_embeddings": (batch, 2, D), "patch_embeddings": (batch, h, w, D)}`
  (as `TIPSBackbone`, not normalised).
- `embed_image_bytes(image_bytes)`: a batch `(batch,)` of encoded JPEG, PNG,
  GIF or BMP strings, decoded (JPEG with the accurate integer DCT, so
  pixels equal PIL's) and resized to the fixed `image_size` by the preset's
  image converter inside the graph -> the same outputs as `embed_images`.
- `embed_texts(texts)`: a batch `(batch,)` of strings, tokenized inside the
  graph with the model's `TIPSTokenizer` (lowercasing, SentencePiece as a
  TensorFlow Text op, its sequence length and padding-mask mode) ->
  `{"text_embeddings": (batch, D)}`, L2-normalised (an empty text gives
  zeros).
- `embed_token_ids(token_ids, padding_mask)`: int32 `(batch, length)` ->
  the same L2-normalised `{"text_embeddings"}` for pre-tokenized text.
  The values cannot be checked inside the graph, so they are defined as in
  `TIPSTextEncoder`: an id outside the vocabulary is embedded as the
  unknown-token id, any non-zero mask value is a real token.

Every signature maps an empty batch to empty outputs of the right shapes.

Backends:
- TensorFlow: the Keras functions are traced directly.
- JAX: the model is converted with `jax2tf` (StableHLO inside an
  `XlaCallModule` op) with symbolic batch, height, width and text length, so
  one exported graph serves every size; the tokenizer and image decoding run
  as ordinary TensorFlow ops around it.
- PyTorch: Keras can only export a torch model through `torch_xla`, with
  fixed shapes and without string inputs, so there is no direct export.
  `export_saved_model` instead writes the backbone (and tokenizer and image
  converter) to a temporary preset and runs the TensorFlow-backend export
  in a subprocess (`KERAS_BACKEND=tensorflow`): the result is the same
  SavedModel, with every signature. TensorFlow must be installed (it is a
  keras-tips dependency). Set `via_tensorflow=False` to get a clear
  `NotImplementedError` instead.

Serving without Python keras-tips: the `embed_texts` signature uses the
TensorFlow Text `SentencepieceOp` kernels. TensorFlow Serving ships them; in
Python, `import tensorflow_text` (or load only its
`_sentencepiece_tokenizer.so` with `tf.load_op_library`) before loading.

Example:
```python
backbone = keras_tips.TIPSBackbone.from_preset("tips_v2_b14")
tokenizer = keras_tips.TIPSTokenizer.from_preset(...)
keras_tips.export.export_saved_model(
    backbone, "tips_saved_model", tokenizer=tokenizer, image_size=448)

# Anywhere with TensorFlow:
import tensorflow as tf, tensorflow_text  # noqa: F401
served = tf.saved_model.load("tips_saved_model")
served.embed_texts(tf.constant(["a photo of a cat"]))["text_embeddings"]
served.embed_image_bytes(tf.constant([jpeg_bytes]))["cls_embeddings"]
```
"""

import os
import subprocess
import sys
import tempfile

import keras

from keras_tips.normalization import l2_normalize
from keras_tips.presets import load_preset_components
from keras_tips.validation import check_image_size

SIGNATURE_NAMES = (
    "embed_images",
    "embed_image_bytes",
    "embed_texts",
    "embed_token_ids",
)


def _tf():
    import tensorflow as tf

    return tf




def export_saved_model(
    backbone,
    filepath,
    tokenizer=None,
    image_converter=None,
    image_size=None,
    via_tensorflow=True,
    verbose=False,
):
    """Writes a `TIPSBackbone` as a servable TensorFlow SavedModel.

    Args:
        backbone: a `keras_tips.TIPSBackbone`, or a preset (name or
            directory), in which case `tokenizer` and `image_converter`
            default to the preset's own.
        filepath: directory to write the SavedModel into.
        tokenizer: a `keras_tips.TIPSTokenizer`. Without one the
            `embed_texts` signature is left out (the others remain).
        image_converter: a `keras_tips.TIPSImageConverter` used by
            `embed_image_bytes` to resize and scale decoded images. Defaults
            to `TIPSImageConverter(image_size=image_size)`.
        image_size: int or `(height, width)`, multiples of 14: the size
            `embed_image_bytes` resizes every image to. Defaults to the
            image converter's size.
        via_tensorflow: bool. On the torch backend, export by running the
            TensorFlow-backend export in a subprocess (default). If False,
            the torch backend raises `NotImplementedError`.
        verbose: bool. Print the signatures once written.

    Returns:
        `filepath`.

    Example:
    ```python
    keras_tips.export.export_saved_model(
        "tips_v2_b14", "tips_v2_b14_saved_model", image_size=448)
    ```
    """
    from keras_tips.backbone import TIPSBackbone
    from keras_tips.image_converter import TIPSImageConverter
    from keras_tips.tokenizer import TIPSTokenizer

    if isinstance(backbone, (str, os.PathLike)):
        backbone, preset_tokenizer, preset_converter = load_preset_components(
            os.fspath(backbone)
        )
        tokenizer = tokenizer if tokenizer is not None else preset_tokenizer
        if image_converter is None:
            image_converter = preset_converter
    if not isinstance(backbone, TIPSBackbone):
        raise TypeError(
            "`backbone` must be a keras_tips.TIPSBackbone or a preset name or "
            f"directory. Received: {type(backbone).__name__}"
        )
    if tokenizer is not None and not isinstance(tokenizer, TIPSTokenizer):
        raise TypeError(
            "`tokenizer` must be a keras_tips.TIPSTokenizer or None. "
            f"Received: {type(tokenizer).__name__}"
        )
    if image_size is not None:
        image_size = check_image_size(image_size)
    if image_converter is not None:
        if not isinstance(image_converter, TIPSImageConverter):
            raise TypeError(
                "`image_converter` must be a keras_tips.TIPSImageConverter or "
                f"None. Received: {type(image_converter).__name__}"
            )
        if image_size is not None and tuple(
            image_converter.image_size or ()
        ) != image_size:
            config = image_converter.get_config()
            config["image_size"] = image_size
            image_converter = TIPSImageConverter.from_config(config)
    if image_converter is None or image_converter.image_size is None:
        if image_size is None:
            raise ValueError(
                "`embed_image_bytes` needs a fixed image size: pass "
                "`image_size` (e.g. 448) or an image converter with one."
            )
        image_converter = TIPSImageConverter(image_size=image_size)
    check_image_size(tuple(image_converter.image_size))

    filepath = os.fspath(filepath)
    backend = keras.backend.backend()
    if backend == "torch":
        if not via_tensorflow:
            raise NotImplementedError(
                "SavedModel export is not supported on the torch backend: "
                "Keras exports torch models only through torch_xla, with "
                "fixed shapes and no string inputs. Use the default "
                "via_tensorflow=True (re-exports with the TensorFlow backend "
                "in a subprocess) or export from the jax or tensorflow "
                "backend."
            )
        return _export_through_tensorflow(
            backbone, filepath, tokenizer, image_converter, verbose
        )
    if backend not in ("tensorflow", "jax"):
        raise NotImplementedError(
            f"SavedModel export needs the tensorflow or jax backend; the "
            f"current backend is {backend!r}."
        )
    archive = _build_archive(backbone, tokenizer, image_converter)
    archive.write_out(filepath, verbose=verbose)
    return filepath


def _build_archive(backbone, tokenizer, image_converter):
    tf = _tf()
    backend = keras.backend.backend()
    vision_encoder = backbone.vision_encoder
    text_encoder = backbone.text_encoder

    archive = keras.export.ExportArchive()
    archive.track(backbone)

    # `.call` runs the functional graph without the eager input checks of
    # `__call__`, which cannot read jax2tf's symbolic dimensions.
    def vision_fn(images):
        outputs = vision_encoder.call(images)
        return {
            "cls_embeddings": outputs["cls_embeddings"],
            "patch_embeddings": outputs["patch_embeddings"],
        }

    def text_fn(token_ids, padding_mask):
        embeddings = text_encoder.call(
            {"token_ids": token_ids, "padding_mask": padding_mask}
        )
        embeddings = keras.ops.cast(embeddings, "float32")
        return {
            "text_embeddings": l2_normalize(embeddings)
        }

    hidden_dim = vision_encoder.hidden_dim
    vision_kwargs = {}
    text_kwargs = {}
    if backend == "jax":
        # One symbolic height and width per image batch, constrained to
        # multiples of the patch size; one length shared by both text
        # inputs.
        patch = vision_encoder.patch_size
        vision_kwargs["jax2tf_kwargs"] = {
            "polymorphic_shapes": [f"(batch, {patch}*h, {patch}*w, 3)"]
        }
        text_kwargs["jax2tf_kwargs"] = {
            "polymorphic_shapes": ["(batch, length)", "(batch, length)"]
        }
    # The model graphs (jax2tf-converted on jax) are wrapped so that an
    # empty batch gives empty outputs without running them: jax2tf's
    # symbolic batch must be >= 1 and TensorFlow's convolution mishandles
    # a batch of 0. `_backend_add_endpoint` is the backend conversion step
    # of `add_endpoint` (tf.function, or jax2tf on jax) without registering
    # a signature; the wrappers are registered under the public names.
    image_spec = tf.TensorSpec([None, None, None, 3], tf.float32, "images")
    token_specs = [
        tf.TensorSpec([None, None], tf.int32, "token_ids"),
        tf.TensorSpec([None, None], tf.int32, "padding_mask"),
    ]
    vision_graph = archive._backend_add_endpoint(
        "embed_images", vision_fn, [image_spec], **vision_kwargs
    )
    text_graph = archive._backend_add_endpoint(
        "embed_token_ids", text_fn, token_specs, **text_kwargs
    )
    patch = vision_encoder.patch_size
    vision_dtypes = _output_dtypes(vision_graph)
    text_dtypes = _output_dtypes(text_graph)

    @tf.function(input_signature=[image_spec], autograph=False)
    def embed_images(images):
        shape = tf.shape(images)

        def empty():
            grid = [shape[1] // patch, shape[2] // patch]
            return {
                "cls_embeddings": tf.zeros(
                    [0, 2, hidden_dim], vision_dtypes["cls_embeddings"]
                ),
                "patch_embeddings": tf.zeros(
                    [0, *grid, hidden_dim], vision_dtypes["patch_embeddings"]
                ),
            }

        return tf.cond(shape[0] > 0, lambda: vision_graph(images), empty)

    @tf.function(input_signature=token_specs, autograph=False)
    def embed_token_ids(token_ids, padding_mask):
        def empty():
            return {
                "text_embeddings": tf.zeros(
                    [0, hidden_dim], text_dtypes["text_embeddings"]
                )
            }

        return tf.cond(
            tf.shape(token_ids)[0] > 0,
            lambda: text_graph(token_ids, padding_mask),
            empty,
        )

    archive.add_endpoint("embed_images", embed_images)
    archive.add_endpoint("embed_token_ids", embed_token_ids)

    height, width = image_converter.image_size

    def decode_one(image_bytes):
        # JPEG with the accurate integer DCT, as PIL and libjpeg's default
        # decode it; PNG, GIF (first frame) and BMP with `decode_image`.
        image = tf.cond(
            tf.io.is_jpeg(image_bytes),
            lambda: tf.io.decode_jpeg(
                image_bytes, channels=3, dct_method="INTEGER_ACCURATE"
            ),
            lambda: tf.io.decode_image(
                image_bytes, channels=3, expand_animations=False
            ),
        )
        image = tf.ensure_shape(image, [None, None, 3])
        return image_converter(image)

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        autograph=False,
    )
    def embed_image_bytes(image_bytes):
        images = tf.map_fn(
            decode_one,
            image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
        )
        return embed_images(images)

    embed_image_bytes.get_concrete_function()
    archive.add_endpoint("embed_image_bytes", embed_image_bytes)

    if tokenizer is not None:
        # The SentencePiece model is a TensorFlow resource: track it so the
        # SavedModel stores it.
        tokenizer._maybe_initialized_tf()
        archive.track(tokenizer._sentence_piece)

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name="texts")],
            autograph=False,
        )
        def embed_texts(texts):
            tokens = tokenizer.tokenize_with_padding_mask(texts)
            return embed_token_ids(
                tf.cast(tokens["token_ids"], tf.int32),
                tf.cast(tokens["padding_mask"], tf.int32),
            )

        embed_texts.get_concrete_function()
        archive.add_endpoint("embed_texts", embed_texts)
    return archive


def _output_dtypes(function):
    """`{name: tf.DType}` of the outputs of a `tf.function` with a signature."""
    outputs = function.get_concrete_function().structured_outputs
    return {name: spec.dtype for name, spec in outputs.items()}


def _export_through_tensorflow(
    backbone, filepath, tokenizer, image_converter, verbose
):
    """Torch backend: save a preset, export it with the TF backend."""
    package_root = os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))
    )
    with tempfile.TemporaryDirectory(prefix="keras_tips_export_") as tmp:
        preset = os.path.join(tmp, "preset")
        backbone.save_to_preset(preset)
        if tokenizer is not None:
            tokenizer.save_to_preset(preset)
        image_converter.save_to_preset(preset)
        env = dict(os.environ)
        env["KERAS_BACKEND"] = "tensorflow"
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root] + [p for p in [env.get("PYTHONPATH")] if p]
        )
        command = [
            sys.executable,
            "-m",
            "keras_tips.export",
            preset,
            os.path.abspath(filepath),
        ]
        if tokenizer is None:
            command.append("--no-texts")
        result = subprocess.run(
            command, env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise RuntimeError(
                "The TensorFlow-backend export subprocess failed "
                f"(exit {result.returncode}):\n{tail}"
            )
        if verbose:
            print(result.stdout, end="")
    return filepath


def _main(argv=None):
    """`python -m keras_tips.export PRESET OUTPUT`: used by the torch path."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m keras_tips.export",
        description="Export a TIPS preset directory as a SavedModel.",
    )
    parser.add_argument("preset")
    parser.add_argument("output")
    parser.add_argument("--no-texts", action="store_true")
    args = parser.parse_args(argv)
    backbone, tokenizer, image_converter = load_preset_components(args.preset)
    export_saved_model(
        backbone,
        args.output,
        tokenizer=None if args.no_texts else tokenizer,
        image_converter=image_converter,
    )
    print(f"Exported {args.preset} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
