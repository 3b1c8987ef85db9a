"""Patch, class-token, register-token and position embedding of the TIPS ViT."""

import keras
from keras import ops

from keras_tips.layers.position_embedding import InterpolatedPositionEmbedding


class TIPSVisionEmbedding(keras.layers.Layer):
    """Turns images into the token sequence of the TIPS vision transformer.

    The sequence is `[CLS, register, patch_1, ..., patch_N]`: the first class
    token with its position embedding, TIPS' second class token (a register
    token, without position embedding) and one token per 14x14 patch with
    interpolated position embeddings. Masked patches (masked image modeling)
    are replaced by a learned mask token before the position embedding is
    added.

    Args:
        hidden_dim: int. Token width.
        patch_size: int. Side of a square patch in pixels.
        position_grid_size: int. Side of the learned position-embedding grid.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    layer = TIPSVisionEmbedding(hidden_dim=384, patch_size=14,
                                position_grid_size=16)
    tokens = layer(np.zeros((2, 224, 224, 3), "float32"))  # (2, 258, 384)
    ```
    """

    def __init__(self, hidden_dim, patch_size, position_grid_size, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.patch_size = int(patch_size)
        self.position_grid_size = int(position_grid_size)
        self.patch_projection = keras.layers.Conv2D(
            self.hidden_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="valid",
            data_format="channels_last",
            dtype=self.dtype_policy,
            name="patch_projection",
        )
        self.position_embedding = InterpolatedPositionEmbedding(
            self.position_grid_size,
            self.hidden_dim,
            dtype=self.dtype_policy,
            name="position_embedding",
        )

    def build(self, input_shape):
        self.patch_projection.build(input_shape)
        small = keras.initializers.RandomNormal(stddev=1e-6)
        self.cls_token = self.add_weight(
            name="cls_token", shape=(1, 1, self.hidden_dim), initializer=small
        )
        self.register_token = self.add_weight(
            name="register_token",
            shape=(1, 1, self.hidden_dim),
            initializer=small,
        )
        self.mask_token = self.add_weight(
            name="mask_token", shape=(1, 1, self.hidden_dim), initializer="zeros"
        )
        self.built = True

    def call(self, images, patch_mask=None):
        patches = self.patch_projection(images)
        batch = ops.shape(patches)[0]
        cls_position, patch_positions = self.position_embedding(patches)
        # Explicit sizes, not -1: an empty batch has zero elements.
        grid = ops.shape(patches)
        patches = ops.reshape(
            patches, (batch, grid[1] * grid[2], self.hidden_dim)
        )
        if patch_mask is not None:
            patch_mask = ops.reshape(
                ops.cast(patch_mask, "bool"), (batch, grid[1] * grid[2])
            )
            patches = ops.where(
                patch_mask[..., None],
                ops.cast(self.mask_token, patches.dtype),
                patches,
            )
        cls_token = ops.cast(self.cls_token, patches.dtype) + cls_position
        register = ops.cast(self.register_token, patches.dtype)
        ones = ops.ones((batch, 1, 1), patches.dtype)
        return ops.concatenate(
            [ones * cls_token, ones * register, patches + patch_positions],
            axis=1,
        )

    def compute_output_spec(self, images, patch_mask=None):
        batch, height, width = images.shape[0], images.shape[1], images.shape[2]
        num_patches = None
        if height is not None and width is not None:
            num_patches = (height // self.patch_size) * (width // self.patch_size)
        return keras.KerasTensor(
            (batch, None if num_patches is None else 2 + num_patches,
             self.hidden_dim),
            dtype=self.compute_dtype,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "patch_size": self.patch_size,
                "position_grid_size": self.position_grid_size,
            }
        )
        return config
