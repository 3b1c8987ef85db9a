"""Splits the final token sequence into class embeddings and a patch grid."""

import keras
from keras import ops


class TIPSVisionOutputs(keras.layers.Layer):
    """Splits `[CLS, register, patches...]` into the encoder's two outputs.

    Returns `(cls_embeddings, patch_embeddings)`: the two class tokens
    `(B, 2, D)` (first CLS, second CLS) and the patch tokens laid out as the
    image's patch grid `(B, H / patch_size, W / patch_size, D)`. The grid
    shape is read from the images, so it follows any input size.

    Args:
        patch_size: int. Side of a square patch in pixels.
        num_prefix_tokens: int. Tokens before the patches (default 2).
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, patch_size, num_prefix_tokens=2, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.num_prefix_tokens = int(num_prefix_tokens)

    def call(self, tokens, images):
        image_shape = ops.shape(images)
        height = image_shape[1] // self.patch_size
        width = image_shape[2] // self.patch_size
        cls_embeddings = tokens[:, : self.num_prefix_tokens]
        patches = tokens[:, self.num_prefix_tokens :]
        patches = ops.reshape(
            patches, (ops.shape(tokens)[0], height, width, tokens.shape[-1])
        )
        return cls_embeddings, patches

    def compute_output_spec(self, tokens, images):
        batch, height, width = images.shape[0], images.shape[1], images.shape[2]
        grid = [
            None if size is None else size // self.patch_size
            for size in (height, width)
        ]
        dim = tokens.shape[-1]
        return (
            keras.KerasTensor(
                (batch, self.num_prefix_tokens, dim), dtype=tokens.dtype
            ),
            keras.KerasTensor((batch, *grid, dim), dtype=tokens.dtype),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "num_prefix_tokens": self.num_prefix_tokens,
            }
        )
        return config
