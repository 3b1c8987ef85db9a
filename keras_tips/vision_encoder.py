"""The TIPS vision transformer."""

import keras
import numpy as np
from keras import ops
from keras_hub.models import Backbone

from keras_tips.backbone_mixin import TIPSBackboneMixin
from keras_tips.empty_batch import EmptyBatchMixin
from keras_tips.empty_batch import empty_outputs
from keras_tips.empty_batch import is_empty_batch
from keras_tips.layers.vision_block import TIPSVisionBlock
from keras_tips.layers.vision_embedding import TIPSVisionEmbedding
from keras_tips.layers.vision_outputs import TIPSVisionOutputs
from keras_tips.validation import check_encoder_images


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSVisionEncoder(EmptyBatchMixin, TIPSBackboneMixin, Backbone):
    """TIPS image encoder: a ViT with two class tokens and dense patch features.

    A pre-LayerNorm vision transformer (patch size 14) with one class token,
    one register token that TIPS trains as a second class token, learned
    position embeddings resampled to any input size, LayerScale, a GELU MLP
    or SwiGLU feed-forward, and a final LayerNorm. Images are float
    `(B, H, W, 3)` in `[0, 1]` with `H` and `W` multiples of the patch size;
    one model serves every such size.

    Calling the model returns a dict:
    - `"cls_embeddings"`: `(B, 2, D)`, first and second class token;
    - `"patch_embeddings"`: `(B, H / 14, W / 14, D)`.
    Both are taken after the final LayerNorm and are not L2-normalised.
    A batch of zero images gives empty outputs of these shapes (`B = 0`).

    Concrete images (NumPy arrays, eager tensors of any backend) are checked
    before running: NaN, Inf or values outside `[0, 1]` raise a
    `ValueError`, as do wrong ranks, channels and sizes. Inside compiled
    graphs and training steps (`training=True`) values are not checked and
    NaN propagates (to the training loss, which stops the run).

    Args:
        hidden_dim: int. Token width `D`.
        num_layers: int. Number of transformer blocks.
        num_heads: int. Attention heads per block.
        mlp_dim: int. Feed-forward width (nominal width for SwiGLU).
        ffn_layer: `"mlp"` (GELU) or `"swiglu"` (the g/14 variant).
        patch_size: int. Patch side in pixels.
        position_grid_size: int. Side of the learned position-embedding grid
            (16 for TIPS v1 at 224 px, 32 for TIPSv2).
        layer_norm_epsilon: float. LayerNorm epsilon.
        layer_scale_init: float. Initial LayerScale value.
        image_shape: tuple. Input shape without batch; `None` for any size.
        dtype: string or `keras.DTypePolicy` for weights and computation.
        **kwargs: standard `keras.Model` arguments, e.g. `name`.

    Example:
    ```python
    encoder = keras_tips.TIPSVisionEncoder(
        hidden_dim=384, num_layers=12, num_heads=6, mlp_dim=1536)
    outputs = encoder(np.random.uniform(size=(2, 224, 224, 3)))
    outputs["cls_embeddings"].shape    # (2, 2, 384)
    outputs["patch_embeddings"].shape  # (2, 16, 16, 384)
    dense = encoder.value_attention_patches(images)  # (2, 16, 16, 384)
    ```
    """

    def __init__(
        self,
        hidden_dim,
        num_layers,
        num_heads,
        mlp_dim,
        ffn_layer="mlp",
        patch_size=14,
        position_grid_size=16,
        layer_norm_epsilon=1e-6,
        layer_scale_init=1e-5,
        image_shape=(None, None, 3),
        dtype=None,
        **kwargs,
    ):
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[-1] != 3:
            raise ValueError(
                "`image_shape` must be (height, width, 3). "
                f"Received: image_shape={image_shape}"
            )
        # === Layers ===
        self.embedding = TIPSVisionEmbedding(
            hidden_dim,
            patch_size,
            position_grid_size,
            dtype=dtype,
            name="embedding",
        )
        self.blocks = [
            TIPSVisionBlock(
                hidden_dim,
                num_heads,
                mlp_dim,
                ffn_layer=ffn_layer,
                layer_norm_epsilon=layer_norm_epsilon,
                layer_scale_init=layer_scale_init,
                dtype=dtype,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm"
        )
        self.split_outputs = TIPSVisionOutputs(
            patch_size, dtype=dtype, name="outputs"
        )

        # === Functional model ===
        images = keras.Input(shape=image_shape, name="images")
        outputs = self._encode(images)
        super().__init__(inputs=images, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.ffn_layer = ffn_layer
        self.patch_size = patch_size
        self.position_grid_size = position_grid_size
        self.layer_norm_epsilon = layer_norm_epsilon
        self.layer_scale_init = layer_scale_init
        self.image_shape = image_shape

    def _encode(
        self, images, patch_mask=None, value_attention=False, training=None,
        with_value_attention=False, gradient_from_block=None,
    ):
        x = self.embedding(images, patch_mask=patch_mask)
        for index, block in enumerate(self.blocks[:-1]):
            if index == gradient_from_block:
                x = ops.stop_gradient(x)
            x = block(x, training=training)
        if self.blocks and gradient_from_block == len(self.blocks) - 1:
            x = ops.stop_gradient(x)

        def last_block(x, value_attention):
            if not self.blocks:
                return x
            return self.blocks[-1](
                x, value_attention=value_attention, training=training)

        outputs = {}
        if with_value_attention:
            # Both read-outs of the last block from one pass of the others.
            dense = self.final_norm(last_block(x, value_attention=True))
            _, outputs["value_attention_patches"] = self.split_outputs(
                dense, images)
        x = self.final_norm(last_block(x, value_attention))
        cls_embeddings, patch_embeddings = self.split_outputs(x, images)
        return {
            "cls_embeddings": cls_embeddings,
            "patch_embeddings": patch_embeddings,
            **outputs,
        }

    def encode(self, images, patch_mask=None, training=None,
               with_value_attention=False, gradient_from_block=None):
        """Runs the encoder, optionally with masked patches.

        Args:
            images: float `(B, H, W, 3)` in `[0, 1]`.
            patch_mask: optional bool `(B, H / 14, W / 14)` (or flattened
                `(B, N)`); `True` patches are replaced by the mask token, as
                in masked image modeling.
            training: bool. Training mode.
            with_value_attention: bool. Also return
                `"value_attention_patches"` (`value_attention_patches`'
                read-out) from the same pass: the blocks before the last
                run once for both.
            gradient_from_block: `None` or an int in `[0, num_layers - 1]`.
                The outputs are unchanged, but no gradient flows from them
                into the patch embedding and the blocks before block
                `gradient_from_block` (`None`: into everything). With
                `num_layers - 1`, a loss on this pass trains only the last
                block and the final norm.

        Returns:
            The dict of `__call__`, plus `"value_attention_patches"` when
            asked.
        """
        if gradient_from_block is not None:
            last = len(self.blocks) - 1
            if (isinstance(gradient_from_block, bool)
                    or not isinstance(gradient_from_block, (int, np.integer))
                    or not 0 <= gradient_from_block <= last):
                raise ValueError(
                    "`gradient_from_block` must be None or an int in "
                    f"[0, {last}] (the encoder has {len(self.blocks)} "
                    f"blocks). Received: {gradient_from_block!r}."
                )
            gradient_from_block = int(gradient_from_block)
        images = self._check_images(images, values=not training)
        if is_empty_batch(images):
            outputs = empty_outputs(self, images)
            if with_value_attention:
                outputs["value_attention_patches"] = outputs["patch_embeddings"]
            return outputs
        return self._encode(images, patch_mask=patch_mask, training=training,
                            with_value_attention=with_value_attention,
                            gradient_from_block=gradient_from_block)

    def value_attention_patches(self, images):
        """Patch embeddings read out MaskCLIP-style, for zero-shot segmentation.

        In the last block the attention output is replaced by the output
        projection of the values (no token mixing); everything else is
        unchanged. This is the read-out of the official TIPS zero-shot
        segmentation.

        Args:
            images: float `(B, H, W, 3)` in `[0, 1]`.

        Returns:
            `(B, H / 14, W / 14, D)` patch embeddings.
        """
        images = self._check_images(images)
        if is_empty_batch(images):
            return empty_outputs(self, images)["patch_embeddings"]
        if isinstance(images, np.ndarray):
            # Concrete images: run the compiled inference graph (one trace
            # per input shape), as `predict_on_batch` does for `__call__`.
            patches = self._value_attention_model().predict_on_batch(images)
            return ops.convert_to_tensor(patches)
        return self._encode(images, value_attention=True)["patch_embeddings"]

    def _value_attention_model(self):
        """Functional model of the value-attention read-out (same weights).

        Built once and kept out of Keras' layer tracking, so the encoder's
        weights, config and saved files are unchanged.
        """
        model = self.__dict__.get("_value_attention_graph")
        if model is None:
            images = keras.Input(shape=self.image_shape, name="images")
            patches = self._encode(images, value_attention=True)
            model = keras.Model(
                images,
                patches["patch_embeddings"],
                name=f"{self.name}_value_attention",
            )
            model.jit_compile = self.jit_compile
            object.__setattr__(self, "_value_attention_graph", model)
        return model

    def _check_images(self, images, values=True):
        return check_encoder_images(images, self.patch_size, values=values)

    def __call__(self, images, *args, **kwargs):
        if not isinstance(images, dict):
            training = kwargs.get("training", args[0] if args else None)
            images = self._check_images(images, values=not training)
        return super().__call__(images, *args, **kwargs)

    def _lora_attention_layers(self):
        return [block.qkv for block in self.blocks] + [
            block.proj for block in self.blocks
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "ffn_layer": self.ffn_layer,
                "patch_size": self.patch_size,
                "position_grid_size": self.position_grid_size,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "layer_scale_init": self.layer_scale_init,
                "image_shape": self.image_shape,
            }
        )
        return config

