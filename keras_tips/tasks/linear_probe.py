"""`TIPSLinearProbe`: a linear probe on frozen TIPS patch features.

The standard protocol for judging dense features of a frozen encoder:
batch normalisation and one per-patch linear layer, read out as class
logits or expected depth and upsampled to the image size.
"""

import keras

from keras_tips.tasks.dense_task import PROBE_TASKS
from keras_tips.tasks.dense_task import TIPSDenseTask
from keras_tips.tasks.dense_task import check_dense_arguments
from keras_tips.tasks.dense_task import task_outputs


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSLinearProbe(TIPSDenseTask):
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
        vision_encoder, image_size = check_dense_arguments(
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
        outputs = task_outputs(
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
