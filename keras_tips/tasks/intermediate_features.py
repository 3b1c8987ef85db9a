"""Intermediate features of a TIPS ViT: the inputs of the DPT decoder.

The class token and patch grid after selected blocks, through the
encoder's final LayerNorm, as the official `get_intermediate_layers`.
"""

import math

import keras
from keras import ops

from keras_tips.empty_batch import empty_outputs
from keras_tips.empty_batch import is_empty_batch


def default_layer_indices(num_layers):
    """The four block indices the official DPT decoders read (0-based).

    `ceil(i * L / 4) - 1` for `i = 1..4`: `[2, 5, 8, 11]` for 12 blocks,
    `[5, 11, 17, 23]` for 24, `[6, 13, 20, 26]` for 27 and
    `[9, 19, 29, 39]` for 40.
    """
    return [math.ceil(i * num_layers / 4) - 1 for i in range(1, 5)]


def intermediate_layer_features(vision_encoder, images, layer_indices=None):
    """Class token and patch grid after selected blocks of a TIPS ViT.

    Like the official `get_intermediate_layers(..., norm=True,
    return_class_token=True, reshape=True)`: the output of each selected
    block goes through the encoder's final LayerNorm.

    Works on concrete images and on symbolic `keras.Input`s (to build
    functional models).

    Args:
        vision_encoder: a `keras_tips.TIPSVisionEncoder`.
        images: float `(B, H, W, 3)` in `[0, 1]`, sides multiples of 14.
        layer_indices: 0-based block indices; defaults to
            `default_layer_indices(num_layers)`.

    Returns:
        A list of `(cls_token (B, D), patches (B, H / 14, W / 14, D))`.
    """
    num_layers = len(vision_encoder.blocks)
    if layer_indices is None:
        layer_indices = default_layer_indices(num_layers)
    layer_indices = [int(i) for i in layer_indices]
    bad = [i for i in layer_indices if not 0 <= i < num_layers]
    if bad:
        raise ValueError(
            f"`layer_indices` {bad} are outside the encoder's {num_layers} "
            "blocks (0-based)."
        )
    if not isinstance(images, keras.KerasTensor):
        images = vision_encoder._check_images(images)
        if is_empty_batch(images):
            outputs = empty_outputs(vision_encoder, images)
            empty = (outputs["cls_embeddings"][:, 0], outputs["patch_embeddings"])
            return [empty for _ in layer_indices]
        images = ops.convert_to_tensor(images, "float32")
    x = vision_encoder.embedding(images)
    states = {}
    for i, block in enumerate(vision_encoder.blocks[: max(layer_indices) + 1]):
        x = block(x)
        states[i] = x
    features = []
    for i in layer_indices:
        normed = vision_encoder.final_norm(states[i])
        cls_tokens, patches = vision_encoder.split_outputs(normed, images)
        features.append((cls_tokens[:, 0], patches))
    return features
