"""The TIPS text transformer."""

import keras
from keras_hub.models import Backbone

from keras_tips.backbone_mixin import TIPSBackboneMixin
from keras_tips.empty_batch import EmptyBatchMixin
from keras_tips.layers.masked_mean_pooling import MaskedMeanPooling
from keras_tips.layers.text_block import TIPSTextBlock
from keras_tips.layers.text_embedding import TIPSTextEmbedding
from keras_tips.validation import check_text_inputs
from keras_tips.validation import unify_input_types


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSTextEncoder(EmptyBatchMixin, TIPSBackboneMixin, Backbone):
    """TIPS text encoder: a transformer whose mean-pooled output is the embedding.

    Token embeddings scaled by `sqrt(D)` plus sinusoidal positions, pre-norm
    blocks with key-padding attention and a ReLU MLP, a final LayerNorm and
    the mean over real tokens. Inputs are
    `{"token_ids": (B, L) int, "padding_mask": (B, L)}` with 1 for real
    tokens; the output `(B, D)` is not L2-normalised. An empty text (no real
    token) gives a finite vector, an empty batch (`B = 0`) a `(0, D)` array.

    Bad values: calling the model on concrete inputs (NumPy arrays, eager
    tensors) raises a `ValueError` for token ids outside
    `[0, vocabulary_size)` and for mask values other than 0 and 1. Where the
    values cannot be checked (inside `jit` / `tf.function`, `predict`, the
    exported SavedModel, and training steps, `training=True`) the model
    defines the result on every backend: an out-of-range id is embedded as
    `unknown_token_id` and any non-zero mask value counts as a real token.

    Args:
        vocabulary_size: int. Number of token ids (32,000 for TIPS).
        hidden_dim: int. Width `D`.
        num_layers: int. Transformer blocks.
        num_heads: int. Attention heads.
        mlp_dim: int. MLP hidden width.
        layer_norm_epsilon: float. LayerNorm epsilon (1e-5 in TIPS).
        unknown_token_id: int. Id embedded in place of out-of-range ids
            inside compiled graphs (2, `<unk>`, in the TIPS tokenizer).
        dtype: string or `keras.DTypePolicy`.
        **kwargs: standard `keras.Model` arguments, e.g. `name`.

    Example:
    ```python
    encoder = keras_tips.TIPSTextEncoder(
        vocabulary_size=32000, hidden_dim=384, num_layers=12, num_heads=6,
        mlp_dim=1536)
    embeddings = encoder({
        "token_ids": np.array([[12, 7, 5, 0, 0]]),
        "padding_mask": np.array([[1, 1, 1, 0, 0]]),
    })  # (1, 384)
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_layers,
        num_heads,
        mlp_dim,
        layer_norm_epsilon=1e-5,
        unknown_token_id=2,
        dtype=None,
        **kwargs,
    ):
        # === Layers ===
        self.embedding = TIPSTextEmbedding(
            vocabulary_size,
            hidden_dim,
            unknown_token_id=unknown_token_id,
            dtype=dtype,
            name="embedding",
        )
        self.blocks = [
            TIPSTextBlock(
                hidden_dim,
                num_heads,
                mlp_dim,
                layer_norm_epsilon=layer_norm_epsilon,
                dtype=dtype,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm"
        )
        self.pooling = MaskedMeanPooling(dtype=dtype, name="pooling")

        # === Functional model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(
            shape=(None,), dtype="int32", name="padding_mask"
        )
        x = self.embedding(token_ids)
        for block in self.blocks:
            x = block(x, padding_mask)
        x = self.final_norm(x)
        embeddings = self.pooling(x, padding_mask)
        super().__init__(
            inputs={"token_ids": token_ids, "padding_mask": padding_mask},
            outputs=embeddings,
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layer_norm_epsilon = layer_norm_epsilon
        self.unknown_token_id = unknown_token_id

    def __call__(self, inputs, *args, **kwargs):
        training = kwargs.get("training", args[0] if args else None)
        inputs = unify_input_types(
            check_text_inputs(
                inputs, self.vocabulary_size, values=not training
            )
        )
        return super().__call__(inputs, *args, **kwargs)

    def _lora_attention_layers(self):
        return [block.qkv for block in self.blocks] + [
            block.out_proj for block in self.blocks
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "unknown_token_id": self.unknown_token_id,
            }
        )
        return config
