"""The building blocks of the TIPSv2 DPT decoder (Ranftl et al., 2021).

`ReassembleBlocks` turns four ViT feature maps into a pyramid (4x, 2x, 1x
and 1/2x the patch grid); `FeatureFusionBlock`s, made of
`PreActResidualConvUnit`s, fuse it coarse-to-fine. `DPTDecoder`
(`dpt_decoder.py`) assembles them as `pytorch/decoders.py` of the official
TIPSv2 repository does.
"""

import keras
from keras import ops

from keras_tips.tasks.bilinear_resize import resize_bilinear
from keras_tips.tasks.bilinear_resize import same_static_size


def conv2d(filters, kernel_size, use_bias=True, strides=1, padding="same",
           dtype=None, name=None):
    """A channels-last `Conv2D`, "same" padding unless told otherwise."""
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        data_format="channels_last",
        dtype=dtype,
        name=name,
    )


@keras.saving.register_keras_serializable(package="keras_tips")
class PreActResidualConvUnit(keras.layers.Layer):
    """`x + conv2(relu(conv1(relu(x))))` with bias-free 3x3 convolutions.

    Args:
        features: int. Channels in and out.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, features, **kwargs):
        super().__init__(**kwargs)
        self.features = int(features)
        self.conv1 = conv2d(
            self.features, 3, use_bias=False, dtype=self.dtype_policy,
            name="conv1",
        )
        self.conv2 = conv2d(
            self.features, 3, use_bias=False, dtype=self.dtype_policy,
            name="conv2",
        )

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(input_shape)
        self.built = True

    def call(self, x):
        y = self.conv1(ops.relu(x))
        y = self.conv2(ops.relu(y))
        return x + y

    def get_config(self):
        config = super().get_config()
        config.update({"features": self.features})
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class FeatureFusionBlock(keras.layers.Layer):
    """DPT fusion: add a refined skip input, refine, upsample 2x, 1x1 conv.

    The skip (`residual`) input is bilinearly resized to `x` if the sizes
    differ; the 2x upsampling is bilinear with aligned corners, as in the
    official decoder.

    Args:
        features: int. Channels.
        has_residual: bool. Whether the block takes a skip input.
        expand: bool. Halve the channels in the output convolution.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, features, has_residual=False, expand=False, **kwargs):
        super().__init__(**kwargs)
        self.features = int(features)
        self.has_residual = bool(has_residual)
        self.expand = bool(expand)
        policy = self.dtype_policy
        if self.has_residual:
            self.residual_unit = PreActResidualConvUnit(
                self.features, dtype=policy, name="residual_unit"
            )
        self.main_unit = PreActResidualConvUnit(
            self.features, dtype=policy, name="main_unit"
        )
        out_features = self.features // 2 if self.expand else self.features
        self.out_conv = conv2d(out_features, 1, dtype=policy, name="out_conv")

    def build(self, input_shape, residual_shape=None):
        if self.has_residual:
            self.residual_unit.build(input_shape)
        self.main_unit.build(input_shape)
        self.out_conv.build(input_shape)
        self.built = True

    def call(self, x, residual=None):
        if self.has_residual and residual is not None:
            if not same_static_size(residual, x):
                shape = ops.shape(x)
                residual = resize_bilinear(
                    residual, (shape[1], shape[2]), align_corners=False
                )
            x = x + self.residual_unit(residual)
        x = self.main_unit(x)
        shape = ops.shape(x)
        x = resize_bilinear(
            x, (2 * shape[1], 2 * shape[2]), align_corners=True
        )
        return self.out_conv(x)

    def compute_output_spec(self, x, residual=None):
        def double(size):
            return None if size is None else 2 * size

        out_features = self.features // 2 if self.expand else self.features
        return keras.KerasTensor(
            (x.shape[0], double(x.shape[1]), double(x.shape[2]), out_features),
            dtype=self.compute_dtype,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "features": self.features,
                "has_residual": self.has_residual,
                "expand": self.expand,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class ReassembleBlocks(keras.layers.Layer):
    """Turns four ViT feature maps into a pyramid at 4x, 2x, 1x and 1/2x.

    Each level optionally mixes the class token into every patch
    (`readout_type="project"`: a linear layer on `[patch, cls]` and a tanh
    GELU), projects to its channel count with a 1x1 convolution and
    resizes: transposed convolutions (x4, x2), identity, and a strided 3x3
    convolution (x1/2).

    Args:
        hidden_dim: int. Width of the ViT features.
        out_channels: four ints, channels of the levels.
        readout_type: `"project"` or `"ignore"` (class token unused).
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        hidden_dim,
        out_channels=(128, 256, 512, 1024),
        readout_type="project",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if readout_type not in ("project", "ignore"):
            raise ValueError(
                "`readout_type` must be 'project' or 'ignore'. Received: "
                f"{readout_type!r}"
            )
        out_channels = tuple(int(c) for c in out_channels)
        if len(out_channels) != 4:
            raise ValueError(
                f"`out_channels` needs four ints; received {out_channels}."
            )
        self.hidden_dim = int(hidden_dim)
        self.out_channels = out_channels
        self.readout_type = readout_type
        policy = self.dtype_policy
        self.out_projections = [
            conv2d(c, 1, dtype=policy, name=f"out_projection_{i}")
            for i, c in enumerate(out_channels)
        ]
        self.readout_projects = []
        if readout_type == "project":
            self.readout_projects = [
                keras.layers.Dense(
                    self.hidden_dim, dtype=policy, name=f"readout_project_{i}"
                )
                for i in range(4)
            ]
        self.upsample_4x = keras.layers.Conv2DTranspose(
            out_channels[0], 4, strides=4, padding="valid", dtype=policy,
            name="resize_0",
        )
        self.upsample_2x = keras.layers.Conv2DTranspose(
            out_channels[1], 2, strides=2, padding="valid", dtype=policy,
            name="resize_1",
        )
        self.downsample_pad = keras.layers.ZeroPadding2D(
            1, dtype=policy, name="resize_3_pad"
        )
        self.downsample_2x = conv2d(
            out_channels[3], 3, strides=2, padding="valid", dtype=policy,
            name="resize_3",
        )

    def build(self, input_shape):
        grid_shape = (None, None, None, self.hidden_dim)
        for i, channels in enumerate(self.out_channels):
            self.out_projections[i].build(grid_shape)
            if self.readout_projects:
                self.readout_projects[i].build((None, 2 * self.hidden_dim))
        self.upsample_4x.build((None, None, None, self.out_channels[0]))
        self.upsample_2x.build((None, None, None, self.out_channels[1]))
        self.downsample_2x.build((None, None, None, self.out_channels[3]))
        self.built = True

    def call(self, features):
        outputs = []
        for i, (cls_token, patches) in enumerate(features):
            if self.readout_projects:
                readout = ops.broadcast_to(
                    cls_token[:, None, None, :], ops.shape(patches)
                )
                mixed = ops.concatenate([patches, readout], axis=-1)
                patches = ops.gelu(
                    self.readout_projects[i](mixed), approximate=True
                )
            x = self.out_projections[i](patches)
            if i == 0:
                x = self.upsample_4x(x)
            elif i == 1:
                x = self.upsample_2x(x)
            elif i == 3:
                x = self.downsample_2x(self.downsample_pad(x))
            outputs.append(x)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "out_channels": list(self.out_channels),
                "readout_type": self.readout_type,
            }
        )
        return config
