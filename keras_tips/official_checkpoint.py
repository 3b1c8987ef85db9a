"""Official TIPS checkpoints (PyTorch-layout `.npz`) to Keras and presets.

The official repository publishes each model as `<name>_vision.npz` and
`<name>_text.npz`, whose arrays are the PyTorch `state_dict` entries of its
encoders. This module infers the architecture from the arrays, builds the
Keras encoders and copies every weight, checking every key and shape; and
writes a converted model as a keras-hub preset directory, atomically (also
for `transformers_checkpoint`). Users reach it as `keras_tips.convert`.
"""

import math
import os
import shutil
import tempfile
import zipfile

import numpy as np

from keras_tips.backbone import TIPSBackbone
from keras_tips.image_converter import TIPSImageConverter
from keras_tips.layers.feed_forward import swiglu_hidden_dim
from keras_tips.text_encoder import TIPSTextEncoder
from keras_tips.tokenizer import TIPSTokenizer
from keras_tips.validation import check_finite_arrays
from keras_tips.variants import num_heads_for_width
from keras_tips.vision_encoder import TIPSVisionEncoder


class CheckpointError(ValueError):
    """An official checkpoint is unreadable, incomplete or of another model."""


def read_npz(path):
    """Reads all arrays of an `.npz` file into a dict, with clear errors."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise CheckpointError(
            f"{path} is not a readable .npz checkpoint (truncated or another "
            f"format): {error}"
        ) from error


def _check_finite(arrays, key, path):
    """Raises `CheckpointError` naming `key` if its array has NaN or Inf."""
    try:
        check_finite_arrays({key: arrays[key]}, path)
    except ValueError as error:
        raise CheckpointError(str(error)) from None


def _count_blocks(arrays, prefix, suffix):
    count = 0
    while f"{prefix}{count}{suffix}" in arrays:
        count += 1
    return count


def _require(arrays, path, *keys):
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise CheckpointError(f"{path}: missing key(s) {missing}.")


def _heads(num_heads, hidden_dim, path):
    if num_heads is not None:
        if (
            isinstance(num_heads, bool)
            or not isinstance(num_heads, (int, np.integer))
            or num_heads < 1
            or hidden_dim % num_heads
        ):
            raise ValueError(
                f"`num_heads` must be a positive int that divides the width "
                f"{hidden_dim} of {path}. Received: num_heads={num_heads!r}"
            )
        return int(num_heads)
    heads = num_heads_for_width(hidden_dim)
    if heads is None:
        raise CheckpointError(
            f"{path}: width {hidden_dim} matches no released TIPS variant; "
            "pass num_heads explicitly."
        )
    return heads


def _nominal_swiglu_dim(inner, hidden_dim):
    """Smallest nominal MLP width whose SwiGLU hidden width is `inner`."""
    for candidate in (4 * hidden_dim, *range(inner, 2 * inner + 8)):
        if swiglu_hidden_dim(candidate) == inner:
            return candidate
    raise CheckpointError(f"No MLP width gives a SwiGLU hidden width {inner}.")


def vision_config_from_arrays(arrays, num_heads=None, path="checkpoint"):
    """Infers `TIPSVisionEncoder` arguments from official vision arrays."""
    if "transformer.resblocks.0.ln_1.weight" in arrays:
        raise CheckpointError(
            f"{path} holds a TIPS text encoder, not a vision encoder."
        )
    _require(arrays, path, "cls_token", "pos_embed", "patch_embed.proj.weight")
    hidden_dim = int(arrays["cls_token"].shape[-1])
    num_layers = _count_blocks(arrays, "blocks.", ".norm1.weight")
    if num_layers == 0:
        raise CheckpointError(f"{path}: no 'blocks.N.*' arrays; not a TIPS ViT.")
    if "blocks.0.mlp.w12.weight" in arrays:
        ffn_layer = "swiglu"
        inner = int(arrays["blocks.0.mlp.w12.weight"].shape[0]) // 2
        mlp_dim = _nominal_swiglu_dim(inner, hidden_dim)
    else:
        _require(arrays, path, "blocks.0.mlp.fc1.weight")
        ffn_layer = "mlp"
        mlp_dim = int(arrays["blocks.0.mlp.fc1.weight"].shape[0])
    num_positions = int(arrays["pos_embed"].shape[1]) - 1
    grid = int(round(num_positions**0.5))
    if grid * grid != num_positions:
        raise CheckpointError(
            f"{path}: 'pos_embed' has {num_positions} patch positions, not a "
            "square grid."
        )
    return {
        "hidden_dim": hidden_dim,
        "num_layers": num_layers,
        "num_heads": _heads(num_heads, hidden_dim, path),
        "mlp_dim": mlp_dim,
        "ffn_layer": ffn_layer,
        "patch_size": int(arrays["patch_embed.proj.weight"].shape[-1]),
        "position_grid_size": grid,
        "layer_scale_init": 1.0,
    }


def text_config_from_arrays(arrays, num_heads=None, path="checkpoint"):
    """Infers `TIPSTextEncoder` arguments from official text arrays."""
    if "cls_token" in arrays:
        raise CheckpointError(
            f"{path} holds a TIPS vision encoder, not a text encoder."
        )
    _require(arrays, path, "token_embedding.weight", "ln_final.weight")
    vocabulary_size, hidden_dim = arrays["token_embedding.weight"].shape
    num_layers = _count_blocks(arrays, "transformer.resblocks.", ".ln_1.weight")
    if num_layers == 0:
        raise CheckpointError(f"{path}: no 'transformer.resblocks.N.*' arrays.")
    _require(arrays, path, "transformer.resblocks.0.mlp.c_fc.weight")
    return {
        "vocabulary_size": int(vocabulary_size),
        "hidden_dim": int(hidden_dim),
        "num_layers": num_layers,
        "num_heads": _heads(num_heads, int(hidden_dim), path),
        "mlp_dim": int(arrays["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
    }


# Layout changes between PyTorch arrays and Keras variables, both ways.
_TRANSFORMS = {
    None: (lambda w: w, lambda w: w),
    "linear": (np.transpose, np.transpose),
    "conv": (
        lambda w: np.transpose(w, (2, 3, 1, 0)),
        lambda w: np.transpose(w, (3, 2, 0, 1)),
    ),
    "mask_token": (
        lambda w: np.reshape(w, (1, 1, -1)),
        lambda w: np.reshape(w, (1, -1)),
    ),
    "pos_embed": (lambda w: w[0], lambda w: w[None]),
}


def _linear(layer, prefix):
    """Keras Dense <- PyTorch Linear (`weight` is transposed)."""
    return [
        (layer.kernel, prefix + ".weight", "linear"),
        (layer.bias, prefix + ".bias", None),
    ]


def _norm(layer, prefix):
    return [
        (layer.gamma, prefix + ".weight", None),
        (layer.beta, prefix + ".bias", None),
    ]


def vision_weight_map(encoder):
    """`(keras variable, npz key, layout change)` for every vision weight."""
    emb = encoder.embedding
    ffn_names = (
        ("fc1", "fc2") if encoder.ffn_layer == "mlp" else ("w12", "w3")
    )
    entries = [
        (emb.patch_projection.kernel, "patch_embed.proj.weight", "conv"),
        (emb.patch_projection.bias, "patch_embed.proj.bias", None),
        (emb.cls_token, "cls_token", None),
        (emb.register_token, "register_tokens", None),
        (emb.mask_token, "mask_token", "mask_token"),
        (emb.position_embedding.embeddings, "pos_embed", "pos_embed"),
    ]
    for i, block in enumerate(encoder.blocks):
        p = f"blocks.{i}"
        entries += _norm(block.norm1, p + ".norm1")
        entries += _linear(block.qkv, p + ".attn.qkv")
        entries += _linear(block.proj, p + ".attn.proj")
        entries.append((block.ls1.gamma, p + ".ls1.gamma", None))
        entries += _norm(block.norm2, p + ".norm2")
        entries += _linear(block.mlp.fc1, f"{p}.mlp.{ffn_names[0]}")
        entries += _linear(block.mlp.fc2, f"{p}.mlp.{ffn_names[1]}")
        entries.append((block.ls2.gamma, p + ".ls2.gamma", None))
    entries += _norm(encoder.final_norm, "norm")
    return entries


def text_weight_map(encoder):
    """`(keras variable, npz key, layout change)` for every text weight."""
    entries = [
        (
            encoder.embedding.token_embedding.embeddings,
            "token_embedding.weight",
            None,
        )
    ]
    for i, block in enumerate(encoder.blocks):
        p = f"transformer.resblocks.{i}"
        entries += _norm(block.ln_1, p + ".ln_1")
        entries += [
            (block.qkv.kernel, p + ".attn.in_proj_weight", "linear"),
            (block.qkv.bias, p + ".attn.in_proj_bias", None),
        ]
        entries += _linear(block.out_proj, p + ".attn.out_proj")
        entries += _norm(block.ln_2, p + ".ln_2")
        entries += _linear(block.fc, p + ".mlp.c_fc")
        entries += _linear(block.proj, p + ".mlp.c_proj")
    entries += _norm(encoder.final_norm, "ln_final")
    return entries


def official_arrays(encoder):
    """The encoder's weights as official PyTorch-layout arrays (npz keys).

    The inverse of loading: `np.savez(path, **official_arrays(encoder))`
    writes a checkpoint the official PyTorch code can load.
    """
    if hasattr(encoder, "patch_size"):
        entries = vision_weight_map(encoder)
    else:
        entries = text_weight_map(encoder)
    import keras

    return {
        key: _TRANSFORMS[layout][1](keras.ops.convert_to_numpy(variable))
        for variable, key, layout in entries
    }


TEXT_EXTRA_KEYS = ("temperature", "temperature_contrastive")


def assign_weights(entries, arrays, path="checkpoint", ignore=()):
    """Copies arrays into variables after checking every key and shape.

    Nothing is assigned unless every array is present with the right shape,
    holds only finite values (no NaN or Inf), and no unexpected array is
    left over.
    """
    staged = []
    for variable, key, layout in entries:
        if key not in arrays:
            raise CheckpointError(f"{path}: missing key '{key}'.")
        _check_finite(arrays, key, path)
        value = _TRANSFORMS[layout][0](arrays[key])
        expected = tuple(variable.shape)
        if tuple(value.shape) != expected:
            raise CheckpointError(
                f"{path}: key '{key}' has shape {tuple(arrays[key].shape)}, "
                f"which gives {tuple(value.shape)}; the model expects "
                f"{expected}."
            )
        staged.append((variable, value))
    used = {key for _, key, _ in entries} | set(ignore)
    extra = sorted(set(arrays) - used)
    if extra:
        raise CheckpointError(
            f"{path}: unexpected key(s) {extra[:10]}"
            + (f" and {len(extra) - 10} more" if len(extra) > 10 else "")
            + "; the checkpoint does not match this architecture."
        )
    for variable, value in staged:
        variable.assign(value.astype(variable.dtype))


def load_vision_encoder(npz_path, num_heads=None, dtype=None):
    """Builds a `TIPSVisionEncoder` from an official `*_vision.npz` file.

    Args:
        npz_path: path to the official PyTorch-layout vision checkpoint.
        num_heads: attention heads; inferred from the width for released
            variants, required otherwise.
        dtype: optional dtype policy for the encoder.

    Returns:
        A built `TIPSVisionEncoder` holding the checkpoint's weights.

    Example:
    ```python
    encoder = keras_tips.convert.load_vision_encoder(
        "tips_v2_oss_b14_vision.npz")
    ```
    """
    arrays = read_npz(npz_path)
    config = vision_config_from_arrays(arrays, num_heads, path=npz_path)
    encoder = TIPSVisionEncoder(**config, dtype=dtype)
    assign_weights(vision_weight_map(encoder), arrays, path=npz_path)
    return encoder


def load_text_encoder(npz_path, num_heads=None, dtype=None):
    """Builds a `TIPSTextEncoder` from an official `*_text.npz` file.

    The checkpoint's contrastive `temperature` is not part of the encoder;
    read it with `read_text_temperature`.

    Args:
        npz_path: path to the official PyTorch-layout text checkpoint.
        num_heads: attention heads; inferred for released variants.
        dtype: optional dtype policy for the encoder.

    Returns:
        A built `TIPSTextEncoder` holding the checkpoint's weights.
    """
    arrays = read_npz(npz_path)
    config = text_config_from_arrays(arrays, num_heads, path=npz_path)
    encoder = TIPSTextEncoder(**config, dtype=dtype)
    assign_weights(
        text_weight_map(encoder), arrays, path=npz_path, ignore=TEXT_EXTRA_KEYS
    )
    return encoder


def read_text_temperature(npz_path, default=None):
    """The contrastive temperature stored in an official text checkpoint.

    Raises:
        CheckpointError if the stored value is not one positive finite
        number.
    """
    arrays = read_npz(npz_path)
    for key in TEXT_EXTRA_KEYS:
        if key in arrays:
            value = np.asarray(arrays[key])
            if value.size != 1 or value.dtype.kind not in "iuf":
                raise CheckpointError(
                    f"{npz_path}: '{key}' must be one number; it has shape "
                    f"{value.shape} and dtype {value.dtype}."
                )
            temperature = float(value.reshape(()))
            if not math.isfinite(temperature) or temperature <= 0:
                raise CheckpointError(
                    f"{npz_path}: '{key}' is {temperature}; a contrastive "
                    "temperature must be a positive finite number. The "
                    "checkpoint is damaged; use another copy."
                )
            return temperature
    if default is None:
        raise CheckpointError(f"{npz_path}: no 'temperature' array.")
    return default


def load_backbone(vision_path, text_path, num_heads=None, dtype=None):
    """Builds a `TIPSBackbone` from official vision and text `.npz` files."""
    vision = load_vision_encoder(vision_path, num_heads=num_heads, dtype=dtype)
    text = load_text_encoder(text_path, num_heads=num_heads, dtype=dtype)
    if vision.hidden_dim != text.hidden_dim:
        raise CheckpointError(
            f"{vision_path} (width {vision.hidden_dim}) and {text_path} "
            f"(width {text.hidden_dim}) are not from the same model."
        )
    temperature = read_text_temperature(text_path, default=0.07)
    backbone = TIPSBackbone(vision, text, temperature=temperature, dtype=dtype)
    backbone.temperature_layer.set_temperature(temperature)
    return backbone


def official_preset_components(
    vision_path, text_path, tokenizer_path, num_heads=None, image_size=448
):
    """`(backbone, tokenizer, image_converter)` of official TIPS files.

    What `convert_to_preset` writes; the preset loader also keeps the
    backbone it has just converted, rather than building it again.
    """
    if not os.path.exists(tokenizer_path):
        raise FileNotFoundError(f"Tokenizer model not found: {tokenizer_path}")
    backbone = load_backbone(vision_path, text_path, num_heads=num_heads)
    try:
        tokenizer = TIPSTokenizer(proto=os.fspath(tokenizer_path))
    except Exception as error:
        raise CheckpointError(
            f"{tokenizer_path} is not a SentencePiece model: {error}"
        ) from error
    converter = TIPSImageConverter(image_size=(image_size, image_size))
    return backbone, tokenizer, converter


def convert_to_preset(
    vision_path,
    text_path,
    tokenizer_path,
    output_dir,
    num_heads=None,
    image_size=448,
    overwrite=False,
):
    """Converts official TIPS files into a keras-hub preset directory.

    The preset (backbone config and weights, tokenizer with its
    SentencePiece model, image converter) is written into a temporary
    directory beside `output_dir` and renamed into place only when
    complete: an interrupted or failed conversion leaves no half-written
    preset.

    Args:
        vision_path: official `*_vision.npz`.
        text_path: official `*_text.npz`.
        tokenizer_path: official SentencePiece `tokenizer.model`.
        output_dir: preset directory to create.
        num_heads: attention heads for non-released widths.
        image_size: default image size of the preset's image converter.
        overwrite: replace an existing `output_dir`.

    Returns:
        `output_dir`.
    """
    check_output_dir(output_dir, overwrite)
    backbone, tokenizer, converter = official_preset_components(
        vision_path, text_path, tokenizer_path, num_heads, image_size
    )
    return write_preset(output_dir, backbone, tokenizer, converter, overwrite)


def check_output_dir(output_dir, overwrite):
    """Refuses to replace an existing preset unless `overwrite`."""
    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir) and not overwrite:
        raise FileExistsError(
            f"{output_dir} already exists; pass overwrite=True (--overwrite) "
            "to replace it."
        )
    return output_dir


def write_preset(output_dir, backbone, tokenizer, converter, overwrite=False):
    """Saves a converted model as a keras-hub preset directory, atomically.

    Everything is written into a temporary directory beside `output_dir`
    and renamed into place only when complete: an interrupted or failed
    conversion leaves no half-written preset.

    Args:
        output_dir: preset directory to create.
        backbone: the `TIPSBackbone`.
        tokenizer: a `TIPSTokenizer`, or `None` when the checkpoint has none.
        converter: a `TIPSImageConverter`.
        overwrite: replace an existing `output_dir`.

    Returns:
        `output_dir` as an absolute path.
    """
    output_dir = check_output_dir(output_dir, overwrite)
    if (
        tokenizer is not None
        and tokenizer.vocabulary_size() > backbone.text_encoder.vocabulary_size
    ):
        raise CheckpointError(
            f"The tokenizer has {tokenizer.vocabulary_size()} tokens but "
            f"the text encoder embeds {backbone.text_encoder.vocabulary_size}."
        )

    def write(staging):
        backbone.save_to_preset(staging)
        if tokenizer is not None:
            tokenizer.save_to_preset(staging)
        converter.save_to_preset(staging)

    return write_directory_atomically(output_dir, write, overwrite)


def write_directory_atomically(output_dir, write, overwrite=False):
    """Calls `write(staging_dir)`, then renames the result to `output_dir`.

    The staging directory lies beside `output_dir`, so the rename is atomic
    and a failure (an exception in `write`, an interrupt) leaves neither a
    half-written `output_dir` nor a staging directory behind.

    Args:
        output_dir: directory to create.
        write: function filling the (empty, existing) staging directory.
        overwrite: replace an existing `output_dir`.

    Returns:
        `output_dir` as an absolute path.
    """
    output_dir = check_output_dir(output_dir, overwrite)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".converting-", dir=parent)
    try:
        write(staging)
        if os.path.exists(output_dir):
            retired = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
            os.replace(output_dir, os.path.join(retired, "old"))
            os.replace(staging, output_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, output_dir)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return output_dir

