"""`TIPSDensePredictor`: the TIPSv2 DPT decoder on a frozen TIPS ViT.

Segmentation, depth or surface normals at the input resolution, from four
intermediate layers of the vision encoder (`intermediate_features.py`)
through `DPTDecoder` (`dpt_decoder.py`).
"""

import keras

from keras_tips.tasks.dense_task import DENSE_TASKS
from keras_tips.tasks.dense_task import TIPSDenseTask
from keras_tips.tasks.dense_task import check_dense_arguments
from keras_tips.tasks.dense_task import task_outputs
from keras_tips.tasks.dpt_decoder import DPTDecoder
from keras_tips.tasks.intermediate_features import default_layer_indices
from keras_tips.tasks.intermediate_features import intermediate_layer_features


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSDensePredictor(TIPSDenseTask):
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
        vision_encoder, image_size = check_dense_arguments(
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
        outputs = task_outputs(
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
