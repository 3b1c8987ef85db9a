"""The TIPSv2 DPT decoder: four ViT feature maps to per-pixel head outputs.

The decoder released with TIPSv2 (`pytorch/decoders.py` of the official
repository): four intermediate ViT outputs are reassembled into a feature
pyramid, projected to a common width, fused coarse-to-fine by residual
fusion blocks that upsample by 2 each, and read out per pixel by a linear
head. Its layers are in `dpt_layers.py`, the official weight names in
`dpt_weights.py`.
"""

import keras
from keras import ops

from keras_tips.tasks.dpt_layers import FeatureFusionBlock
from keras_tips.tasks.dpt_layers import ReassembleBlocks
from keras_tips.tasks.dpt_layers import conv2d


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
            conv2d(self.channels, 3, use_bias=False, dtype=policy,
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
        self.project = conv2d(self.channels, 3, dtype=policy, name="project")
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
