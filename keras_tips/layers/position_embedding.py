"""Learned 2D position embeddings resampled to any patch grid."""

import keras
from keras import ops


def antialiased_bilinear_weights(output_size, input_size):
    """Resampling matrix of antialiased bilinear interpolation along one axis.

    Reproduces `torch.nn.functional.interpolate(mode="bilinear",
    antialias=True, align_corners=False)` with an explicit output size (no
    offset): a triangle filter whose support widens by the downsampling
    factor, weights renormalised inside the input. Upsampling reduces to
    ordinary bilinear interpolation with edge clamping, and an unchanged size
    gives the identity.

    Args:
        output_size: int or scalar integer tensor. Number of output samples.
            A tensor is accepted so the matrix can be built for image sizes
            only known at run time (TensorFlow graphs).
        input_size: int. Number of input samples.

    Returns:
        A float32 tensor of shape `(output_size, input_size)` whose rows sum
        to one.
    """
    out_f = ops.cast(output_size, "float32")
    scale = float(input_size) / out_f
    support = ops.maximum(scale, 1.0)
    centers = (ops.cast(ops.arange(output_size), "float32") + 0.5) * scale
    taps = ops.cast(ops.arange(input_size), "float32") + 0.5
    distance = ops.abs(taps[None, :] - centers[:, None]) / support
    weights = ops.relu(1.0 - distance)
    return weights / ops.sum(weights, axis=1, keepdims=True)


def resample_position_grid(grid, height, width):
    """Resamples a `(H0, W0, D)` embedding grid to `(height, width, D)`."""
    rows = antialiased_bilinear_weights(height, grid.shape[0])
    cols = antialiased_bilinear_weights(width, grid.shape[1])
    grid = ops.cast(grid, "float32")
    return ops.einsum("hi,ijd,wj->hwd", rows, grid, cols)


class InterpolatedPositionEmbedding(keras.layers.Layer):
    """Learned position embeddings for one class token and a square patch grid.

    The table holds `1 + grid_size**2` rows (class token first), as in the
    official TIPS and DINOv2 checkpoints. For a patch grid of another size
    the patch rows are resampled with antialiased bilinear interpolation
    (`interpolate_antialias=True, interpolate_offset=0` in the official
    PyTorch code), so one model serves any image size.

    Args:
        grid_size: int. Side of the patch grid the table was trained for.
        hidden_dim: int. Embedding width.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    layer = InterpolatedPositionEmbedding(grid_size=16, hidden_dim=768)
    patch_grid = np.zeros((2, 32, 24, 768), "float32")
    cls_pos, patch_pos = layer(patch_grid)  # (1, 768), (32 * 24, 768)
    ```
    """

    def __init__(self, grid_size, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = int(grid_size)
        self.hidden_dim = int(hidden_dim)
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(1 + self.grid_size**2, self.hidden_dim),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        self.built = True

    def call(self, patch_grid):
        """Positions for the class token and a `(B, H, W, D)` patch grid."""
        grid_shape = ops.shape(patch_grid)
        height, width = grid_shape[1], grid_shape[2]
        table = ops.convert_to_tensor(self.embeddings)
        cls_position = table[:1]
        if all(isinstance(size, int) and size == self.grid_size
               for size in (height, width)):
            # The table's own grid (static sizes only): the table as it is,
            # as the official code returns it, with no resampling ops (an
            # identity product that a TF32 matmul would round, and the
            # host-to-device copies of its scalars on an accelerator).
            patch_positions = table[1:]
        else:
            grid = ops.reshape(
                table[1:], (self.grid_size, self.grid_size, self.hidden_dim)
            )
            patch_positions = resample_position_grid(grid, height, width)
            patch_positions = ops.reshape(
                patch_positions, (-1, self.hidden_dim))
        return (
            ops.cast(cls_position, self.compute_dtype),
            ops.cast(patch_positions, self.compute_dtype),
        )

    def compute_output_spec(self, patch_grid):
        height, width = patch_grid.shape[1], patch_grid.shape[2]
        num = None if height is None or width is None else height * width
        return (
            keras.KerasTensor((1, self.hidden_dim), dtype=self.compute_dtype),
            keras.KerasTensor((num, self.hidden_dim), dtype=self.compute_dtype),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {"grid_size": self.grid_size, "hidden_dim": self.hidden_dim}
        )
        return config
