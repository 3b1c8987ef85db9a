"""Dense prediction heads on TIPS features: the TIPSv2 DPT decoder and linear
probes, for semantic segmentation, depth and surface normals.

The DPT decoder (Ranftl et al., 2021) as released with TIPSv2
(`pytorch/decoders.py` of the official repository): four intermediate ViT
outputs are reassembled into a feature pyramid (4x, 2x, 1x and 1/2x the
patch grid), projected to a common width, fused coarse-to-fine by residual
fusion blocks that upsample by 2 each, and read out per pixel by a linear
task head. Depth is predicted as a distribution over uniformly spaced bins
and read out as its expectation.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_tips.empty_batch import empty_outputs
from keras_tips.empty_batch import is_empty_batch
from keras_tips.tasks._tips_task import TIPSImageTask
from keras_tips.tasks._tips_task import check_backbone
from keras_tips.validation import check_finite_arrays
from keras_tips.validation import check_image_size

DENSE_TASKS = ("segmentation", "depth", "normals")
PROBE_TASKS = ("segmentation", "depth")


# ---------------------------------------------------------------------------
# Resizing
# ---------------------------------------------------------------------------


def bilinear_resize_matrix(output_size, input_size, align_corners=False):
    """Linear-interpolation weights `(output_size, input_size)` along one axis.

    `align_corners=False` places samples at pixel centres (half-pixel) and
    `align_corners=True` maps the corner samples onto each other, both like
    `torch.nn.functional.interpolate(mode="bilinear")` without antialiasing;
    source positions are clamped to the input.

    Args:
        output_size: int or scalar integer tensor.
        input_size: int or scalar integer tensor.
        align_corners: bool.
    """
    out_f = ops.cast(output_size, "float32")
    in_f = ops.cast(input_size, "float32")
    positions = ops.cast(ops.arange(output_size), "float32")
    if align_corners:
        scale = (in_f - 1.0) / ops.maximum(out_f - 1.0, 1.0)
        source = positions * scale
    else:
        source = (positions + 0.5) * (in_f / out_f) - 0.5
    source = ops.clip(source, 0.0, in_f - 1.0)
    taps = ops.cast(ops.arange(input_size), "float32")
    return ops.relu(1.0 - ops.abs(source[:, None] - taps[None, :]))


def resize_bilinear(x, size, align_corners=False):
    """Bilinear resize of channels-last `(B, H, W, C)` to `size` `(h, w)`.

    Matches `torch.nn.functional.interpolate(mode="bilinear",
    align_corners=...)`; `size` entries may be ints or scalar tensors.
    """
    shape = ops.shape(x)
    rows = bilinear_resize_matrix(size[0], shape[1], align_corners)
    cols = bilinear_resize_matrix(size[1], shape[2], align_corners)
    x = ops.einsum("oh,bhwc->bowc", ops.cast(rows, x.dtype), x)
    return ops.einsum("pw,bowc->bopc", ops.cast(cols, x.dtype), x)


def _same_static_size(a, b):
    sa, sb = tuple(a.shape[1:3]), tuple(b.shape[1:3])
    return None not in sa + sb and sa == sb


# ---------------------------------------------------------------------------
# Intermediate features of the vision encoder
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# DPT building blocks
# ---------------------------------------------------------------------------


def _conv(filters, kernel_size, use_bias=True, strides=1, padding="same",
          dtype=None, name=None):
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
        self.conv1 = _conv(
            self.features, 3, use_bias=False, dtype=self.dtype_policy,
            name="conv1",
        )
        self.conv2 = _conv(
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
        self.out_conv = _conv(out_features, 1, dtype=policy, name="out_conv")

    def build(self, input_shape, residual_shape=None):
        if self.has_residual:
            self.residual_unit.build(input_shape)
        self.main_unit.build(input_shape)
        self.out_conv.build(input_shape)
        self.built = True

    def call(self, x, residual=None):
        if self.has_residual and residual is not None:
            if not _same_static_size(residual, x):
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
            _conv(c, 1, dtype=policy, name=f"out_projection_{i}")
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
        self.downsample_2x = _conv(
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


@keras.saving.register_keras_serializable(package="keras_tips")
class DPTDecoder(keras.layers.Layer):
    """The TIPSv2 DPT decoder: reassemble, fuse, project, per-pixel head.

    Input: a list of four `(cls_token (B, D), patches (B, h, w, D))` pairs
    from `intermediate_layer_features`. Output: `(B, 8h, 8w, out_channels)`
    (for even `h`, `w`) raw head outputs: class logits, depth-bin logits or
    unnormalised normals. `TIPSDensePredictor` adds the task read-out and
    upsampling to the image size.

    Args:
        hidden_dim: int. ViT width `D`.
        out_channels: int. Head outputs per pixel.
        channels: int. Width of the fusion stages (256 in TIPSv2).
        post_process_channels: four ints; defaults to
            `(D // 8, D // 4, D // 2, D)` as the official configurations.
        readout_type: `"project"` (default) or `"ignore"`.
        output_activation: bool. ReLU after the final projection (off in
            the official decoders).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    features = intermediate_layer_features(encoder, images)
    decoder = DPTDecoder(hidden_dim=768, out_channels=150)
    logits = decoder(features)  # (B, 8 * H / 14, 8 * W / 14, 150)
    ```
    """

    def __init__(
        self,
        hidden_dim,
        out_channels,
        channels=256,
        post_process_channels=None,
        readout_type="project",
        output_activation=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.out_channels = int(out_channels)
        self.channels = int(channels)
        if post_process_channels is None:
            post_process_channels = tuple(
                max(self.hidden_dim // f, 1) for f in (8, 4, 2, 1)
            )
        self.post_process_channels = tuple(
            int(c) for c in post_process_channels
        )
        self.readout_type = readout_type
        self.output_activation = bool(output_activation)
        policy = self.dtype_policy
        self.reassemble = ReassembleBlocks(
            self.hidden_dim,
            self.post_process_channels,
            readout_type=readout_type,
            dtype=policy,
            name="reassemble",
        )
        self.convs = [
            _conv(self.channels, 3, use_bias=False, dtype=policy,
                  name=f"conv_{i}")
            for i in range(4)
        ]
        self.fusion_blocks = [
            FeatureFusionBlock(
                self.channels, has_residual=i > 0, dtype=policy,
                name=f"fusion_{i}",
            )
            for i in range(4)
        ]
        self.project = _conv(self.channels, 3, dtype=policy, name="project")
        self.head = keras.layers.Dense(
            self.out_channels, dtype=policy, name="head"
        )

    def build(self, input_shape):
        self.reassemble.build(input_shape)
        for conv, channels in zip(self.convs, self.post_process_channels):
            conv.build((None, None, None, channels))
        fused = (None, None, None, self.channels)
        for block in self.fusion_blocks:
            block.build(fused)
        self.project.build(fused)
        self.head.build(fused)
        self.built = True

    def call(self, features):
        if len(features) != 4:
            raise ValueError(
                f"DPTDecoder needs 4 feature levels; received {len(features)}."
            )
        levels = self.reassemble(features)
        levels = [conv(x) for conv, x in zip(self.convs, levels)]
        x = self.fusion_blocks[0](levels[3])
        for i in range(1, 4):
            x = self.fusion_blocks[i](x, levels[3 - i])
        x = self.project(x)
        if self.output_activation:
            x = ops.relu(x)
        return self.head(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "out_channels": self.out_channels,
                "channels": self.channels,
                "post_process_channels": list(self.post_process_channels),
                "readout_type": self.readout_type,
                "output_activation": self.output_activation,
            }
        )
        return config


def dpt_weight_map(decoder):
    """`(variable, key, transform)` for every weight, official PyTorch names.

    The keys are those of the official decoders' `state_dict`
    (`dpt.reassemble.out_projections.0.weight`, ..., `head.weight`).
    """

    def conv(layer, key, bias=True):
        entries = [
            (layer.kernel, key + ".weight",
             lambda w: np.transpose(w, (2, 3, 1, 0)))
        ]
        if bias:
            entries.append((layer.bias, key + ".bias", None))
        return entries

    def conv_transpose(layer, key):
        # PyTorch (in, out, kh, kw) -> Keras (kh, kw, out, in).
        return [
            (layer.kernel, key + ".weight",
             lambda w: np.transpose(w, (2, 3, 1, 0))),
            (layer.bias, key + ".bias", None),
        ]

    def dense(layer, key):
        return [
            (layer.kernel, key + ".weight", np.transpose),
            (layer.bias, key + ".bias", None),
        ]

    r = decoder.reassemble
    p = "dpt.reassemble"
    entries = []
    for i in range(4):
        entries += conv(r.out_projections[i], f"{p}.out_projections.{i}")
        if r.readout_projects:
            entries += dense(r.readout_projects[i], f"{p}.readout_projects.{i}")
    entries += conv_transpose(r.upsample_4x, f"{p}.resize_layers.0")
    entries += conv_transpose(r.upsample_2x, f"{p}.resize_layers.1")
    entries += conv(r.downsample_2x, f"{p}.resize_layers.3")
    for i, layer in enumerate(decoder.convs):
        entries += conv(layer, f"dpt.convs.{i}", bias=False)
    for i, block in enumerate(decoder.fusion_blocks):
        q = f"dpt.fusion_blocks.{i}"
        units = [("main_unit", block.main_unit)]
        if block.has_residual:
            units.append(("residual_unit", block.residual_unit))
        for unit_name, unit in units:
            entries += conv(unit.conv1, f"{q}.{unit_name}.conv1", bias=False)
            entries += conv(unit.conv2, f"{q}.{unit_name}.conv2", bias=False)
        entries += conv(block.out_conv, f"{q}.out_conv")
    entries += conv(decoder.project, "dpt.project")
    entries += dense(decoder.head, "head")
    return entries


def load_dpt_weights(decoder, weights):
    """Loads official PyTorch-layout DPT weights into a built `DPTDecoder`.

    Every key, shape and value (no NaN or Inf) is checked before anything
    is assigned.

    Args:
        decoder: a built `DPTDecoder` of the checkpoint's architecture.
        weights: a dict of arrays with the official `state_dict` names, or
            the path of an `.npz` file holding them. A `bin_centers` array
            (depth decoders) is accepted and ignored.
    """
    path = "weights"
    if not isinstance(weights, dict):
        path = str(weights)
        with np.load(weights, allow_pickle=False) as data:
            weights = {key: data[key] for key in data.files}
    if not decoder.built:
        raise ValueError(
            "Build the decoder first (call it on features, or build the "
            "TIPSDensePredictor that holds it)."
        )
    entries = dpt_weight_map(decoder)
    staged = []
    for variable, key, transform in entries:
        if key not in weights:
            raise ValueError(f"{path}: missing DPT weight '{key}'.")
        value = np.asarray(weights[key])
        if transform is not None:
            value = transform(value)
        check_finite_arrays({key: value}, path)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{path}: '{key}' has shape {np.shape(weights[key])}, which "
                f"gives {value.shape}; the decoder expects "
                f"{tuple(variable.shape)}."
            )
        staged.append((variable, value))
    extra = sorted(
        set(weights) - {key for _, key, _ in entries} - {"bin_centers"}
    )
    if extra:
        raise ValueError(
            f"{path}: unexpected DPT weight(s) {extra[:10]}; the checkpoint "
            "does not match this decoder."
        )
    for variable, value in staged:
        variable.assign(value.astype(variable.dtype))


# ---------------------------------------------------------------------------
# Task read-outs
# ---------------------------------------------------------------------------


def depth_from_bins(logits, min_depth=1e-3, max_depth=10.0):
    """Expected depth `(..., 1)` from per-bin logits `(..., num_bins)`.

    As the official TIPSv2 depth decoder: `relu(logits) + min_depth`,
    normalised over the bins, weights of uniformly spaced bin centres from
    `min_depth` to `max_depth`.
    """
    num_bins = logits.shape[-1]
    weights = ops.relu(ops.cast(logits, "float32")) + min_depth
    weights = weights / ops.sum(weights, axis=-1, keepdims=True)
    centers = ops.linspace(min_depth, max_depth, num_bins)
    return ops.sum(weights * ops.cast(centers, "float32"), axis=-1,
                   keepdims=True)


def unit_normals(x):
    """L2-normalises the last axis (surface normals)."""
    return ops.normalize(ops.cast(x, "float32"), epsilon=1e-12)


def _check_task(task, choices, num_classes):
    if task not in choices:
        raise ValueError(f"`task` must be one of {choices}. Received: {task!r}")
    if task == "segmentation":
        if (
            not isinstance(num_classes, int)
            or isinstance(num_classes, bool)
            or num_classes < 1
        ):
            raise ValueError(
                "Segmentation needs `num_classes`, a positive int. Received: "
                f"num_classes={num_classes!r}"
            )


def _check_dense_arguments(backbone, task, choices, num_classes, image_size):
    """The vision encoder and `(height, width)`, after checking the inputs."""
    vision_encoder = check_backbone(backbone).vision_encoder
    _check_task(task, choices, num_classes)
    return vision_encoder, check_image_size(image_size)


def _task_outputs(task, head_outputs, image_size, min_depth, max_depth):
    """Task read-out of low-resolution head outputs, resized to the image."""
    if task == "segmentation":
        return resize_bilinear(
            ops.cast(head_outputs, "float32"), image_size, align_corners=False
        )
    if task == "depth":
        depth = depth_from_bins(head_outputs, min_depth, max_depth)
        return resize_bilinear(depth, image_size, align_corners=False)
    normals = unit_normals(head_outputs)
    normals = resize_bilinear(normals, image_size, align_corners=False)
    return unit_normals(normals)


def _default_compile_arguments(task):
    if task == "segmentation":
        return (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    if task == "depth":
        return (
            keras.losses.MeanAbsoluteError(),
            [keras.metrics.RootMeanSquaredError(name="rmse")],
        )
    return keras.losses.CosineSimilarity(axis=-1), []


class _DenseTask(TIPSImageTask):
    """Shared plumbing of the dense tasks: the read-out config and compiling.

    Subclasses build the functional model from `images` to the task
    read-out (`_task_outputs`) and pass both here with the read-out
    arguments; the model is compiled with the task defaults unless
    `compile=False`.
    """

    def __init__(
        self,
        images,
        outputs,
        *,
        task,
        num_classes,
        image_size,
        num_depth_bins,
        min_depth,
        max_depth,
        **kwargs,
    ):
        compile_now = kwargs.pop("compile", True)
        super().__init__(
            inputs=images, outputs=outputs, compile=False, **kwargs
        )

        # === Config ===
        self.task = task
        self.num_classes = num_classes
        self.image_size = image_size
        self.num_depth_bins = num_depth_bins
        self.min_depth = min_depth
        self.max_depth = max_depth
        if compile_now:
            self.compile()

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto",
                **kwargs):
        """Compiles with task defaults.

        `"auto"` gives Adam (learning rate 1e-4); sparse categorical
        cross-entropy on logits with accuracy (segmentation), mean absolute
        error with RMSE (depth) or cosine similarity (normals).
        """
        default_loss, default_metrics = _default_compile_arguments(self.task)
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-4)
        if loss == "auto":
            loss = default_loss
        if metrics == "auto":
            metrics = default_metrics
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "task": self.task,
                "num_classes": self.num_classes,
                "image_size": list(self.image_size),
                "num_depth_bins": self.num_depth_bins,
                "min_depth": self.min_depth,
                "max_depth": self.max_depth,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSDensePredictor(_DenseTask):
    """DPT decoder on four intermediate layers of a (frozen) TIPS ViT.

    Outputs at the input resolution:
    - `"segmentation"`: class logits `(B, H, W, num_classes)`;
    - `"depth"`: depth `(B, H, W, 1)`, the expectation over
      `num_depth_bins` bins between `min_depth` and `max_depth`;
    - `"normals"`: unit surface normals `(B, H, W, 3)`.

    The model is functional with a fixed input size (`image_size`) and
    trains with `fit`; `compile()` defaults depend on the task. Images are
    floats in `[0, 1]`, or raw images when a `preprocessor` is given
    (resized by its image converter, which should produce `image_size`).

    Args:
        backbone: a `keras_tips.TIPSBackbone`.
        task: `"segmentation"`, `"depth"` or `"normals"`.
        num_classes: int, for segmentation.
        image_size: `(height, width)`, multiples of 14.
        layer_indices: four 0-based block indices; defaults to the official
            choice (`default_layer_indices`).
        channels: int. Fusion width (256).
        post_process_channels: four ints; `(D/8, D/4, D/2, D)` by default.
        readout_type: `"project"` or `"ignore"`.
        num_depth_bins: int. Depth bins (256).
        min_depth: float. First bin centre (0.001).
        max_depth: float. Last bin centre (10.0).
        output_activation: bool. ReLU after the decoder's last projection
            (the `transformers` TIPSv2 depth decoders have it).
        freeze_backbone: bool. Sets `backbone.vision_encoder.trainable =
            False` (the shared encoder object) so `fit` trains the decoder.
        preprocessor: optional `keras_tips.TIPSPreprocessor`.
        **kwargs: `keras_hub.models.Task` arguments.

    Example:
    ```python
    depth_model = keras_tips.tasks.TIPSDensePredictor(
        backbone, task="depth", image_size=(448, 448))
    depth_model.fit(images, depth_maps, epochs=1)
    depth = depth_model.predict(images)  # (B, 448, 448, 1)
    ```
    """

    def __init__(
        self,
        backbone,
        task="segmentation",
        num_classes=None,
        image_size=(448, 448),
        layer_indices=None,
        channels=256,
        post_process_channels=None,
        readout_type="project",
        num_depth_bins=256,
        min_depth=1e-3,
        max_depth=10.0,
        output_activation=False,
        freeze_backbone=True,
        preprocessor=None,
        **kwargs,
    ):
        vision_encoder, image_size = _check_dense_arguments(
            backbone, task, DENSE_TASKS, num_classes, image_size
        )
        if layer_indices is None:
            layer_indices = default_layer_indices(len(vision_encoder.blocks))
        layer_indices = [int(i) for i in layer_indices]
        if len(layer_indices) != 4:
            raise ValueError(
                f"`layer_indices` needs four block indices; received "
                f"{layer_indices}."
            )
        out_channels = {
            "segmentation": num_classes,
            "depth": num_depth_bins,
            "normals": 3,
        }[task]
        if freeze_backbone:
            vision_encoder.trainable = False
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.decoder = DPTDecoder(
            vision_encoder.hidden_dim,
            out_channels,
            channels=channels,
            post_process_channels=post_process_channels,
            readout_type=readout_type,
            output_activation=output_activation,
            name="dpt_decoder",
        )

        # === Functional model ===
        images = keras.Input(shape=image_size + (3,), name="images")
        features = intermediate_layer_features(
            vision_encoder, images, layer_indices
        )
        outputs = _task_outputs(
            task, self.decoder(features), image_size, min_depth, max_depth
        )
        super().__init__(
            images, outputs, task=task, num_classes=num_classes,
            image_size=image_size, num_depth_bins=num_depth_bins,
            min_depth=min_depth, max_depth=max_depth, **kwargs,
        )

        # === Config ===
        self.layer_indices = layer_indices
        self.channels = channels
        self.post_process_channels = self.decoder.post_process_channels
        self.readout_type = readout_type
        self.output_activation = bool(output_activation)
        self.freeze_backbone = freeze_backbone

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layer_indices": self.layer_indices,
                "channels": self.channels,
                "post_process_channels": list(self.post_process_channels),
                "readout_type": self.readout_type,
                "output_activation": self.output_activation,
                "freeze_backbone": self.freeze_backbone,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSLinearProbe(_DenseTask):
    """Linear probe on frozen TIPS patch features: segmentation or depth.

    The final patch embeddings go through batch normalisation and one
    per-patch linear layer (a 1x1 convolution); the outputs are read out
    (class logits, or the depth-bin expectation as in the DPT depth head)
    and bilinearly upsampled to the input size. The standard protocol for
    judging dense features of a frozen encoder.

    Args:
        backbone: a `keras_tips.TIPSBackbone` (its vision encoder is frozen).
        task: `"segmentation"` or `"depth"`.
        num_classes: int, for segmentation.
        image_size: `(height, width)`, multiples of 14.
        use_batch_norm: bool. Batch-normalise the features first.
        num_depth_bins: int. Depth bins (256).
        min_depth: float. First bin centre.
        max_depth: float. Last bin centre.
        preprocessor: optional `keras_tips.TIPSPreprocessor`.
        **kwargs: `keras_hub.models.Task` arguments.

    Example:
    ```python
    probe = keras_tips.tasks.TIPSLinearProbe(
        backbone, task="segmentation", num_classes=150, image_size=(448, 448))
    probe.fit(images, label_maps, epochs=10)
    ```
    """

    def __init__(
        self,
        backbone,
        task="segmentation",
        num_classes=None,
        image_size=(448, 448),
        use_batch_norm=True,
        num_depth_bins=256,
        min_depth=1e-3,
        max_depth=10.0,
        preprocessor=None,
        **kwargs,
    ):
        vision_encoder, image_size = _check_dense_arguments(
            backbone, task, PROBE_TASKS, num_classes, image_size
        )
        out_channels = num_classes if task == "segmentation" else num_depth_bins
        vision_encoder.trainable = False
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.feature_norm = (
            keras.layers.BatchNormalization(name="feature_norm")
            if use_batch_norm
            else None
        )
        self.classifier = keras.layers.Dense(out_channels, name="linear")

        # === Functional model ===
        images = keras.Input(shape=image_size + (3,), name="images")
        patches = vision_encoder(images)["patch_embeddings"]
        if self.feature_norm is not None:
            patches = self.feature_norm(patches)
        outputs = _task_outputs(
            task, self.classifier(patches), image_size, min_depth, max_depth
        )
        super().__init__(
            images, outputs, task=task, num_classes=num_classes,
            image_size=image_size, num_depth_bins=num_depth_bins,
            min_depth=min_depth, max_depth=max_depth, **kwargs,
        )

        # === Config ===
        self.use_batch_norm = use_batch_norm

    def get_config(self):
        config = super().get_config()
        config.update({"use_batch_norm": self.use_batch_norm})
        return config
