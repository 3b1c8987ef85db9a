"""What the dense TIPS tasks share: read-outs, argument checks, compiling.

`TIPSDensePredictor` (`dense_predictor.py`) and `TIPSLinearProbe`
(`linear_probe.py`) map low-resolution head outputs to the task read-out
(class logits, the expected depth over uniformly spaced bins, or unit
surface normals) at the image size, and compile with task defaults;
`TIPSDenseTask` holds that plumbing.
"""

import keras
from keras import ops

from keras_tips.normalization import l2_normalize
from keras_tips.tasks._tips_task import TIPSImageTask
from keras_tips.tasks._tips_task import check_backbone
from keras_tips.tasks.bilinear_resize import resize_bilinear
from keras_tips.validation import check_image_size

DENSE_TASKS = ("segmentation", "depth", "normals")
PROBE_TASKS = ("segmentation", "depth")


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
    return l2_normalize(ops.cast(x, "float32"))


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


def check_dense_arguments(backbone, task, choices, num_classes, image_size):
    """The vision encoder and `(height, width)`, after checking the inputs."""
    vision_encoder = check_backbone(backbone).vision_encoder
    _check_task(task, choices, num_classes)
    return vision_encoder, check_image_size(image_size)


def task_outputs(task, head_outputs, image_size, min_depth, max_depth):
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


class TIPSDenseTask(TIPSImageTask):
    """Shared plumbing of the dense tasks: the read-out config and compiling.

    Subclasses build the functional model from `images` to the task
    read-out (`task_outputs`) and pass both here with the read-out
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
