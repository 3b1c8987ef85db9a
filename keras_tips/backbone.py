"""`TIPSBackbone`: the TIPS image and text encoders with their temperature."""

import keras
from keras_hub.models import Backbone

from keras_tips.backbone_mixin import TIPSBackboneMixin
from keras_tips.empty_batch import EmptyBatchMixin
from keras_tips.layers.contrastive_temperature import ContrastiveTemperature
from keras_tips.preset_mixin import TIPSPresetMixin
from keras_tips.validation import check_encoder_images
from keras_tips.validation import check_text_inputs
from keras_tips.validation import unify_input_types


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSBackbone(
    EmptyBatchMixin, TIPSBackboneMixin, TIPSPresetMixin, Backbone
):
    """TIPS image-text model: both encoders and the contrastive temperature.

    Inputs are a dict with `"images"` (float `(B, H, W, 3)` in `[0, 1]`, H
    and W multiples of 14), `"token_ids"` and `"padding_mask"` (`(B, L)`,
    1 for real tokens). Outputs are a dict:
    - `"cls_embeddings"` `(B, 2, D)`: first and second class token;
    - `"patch_embeddings"` `(B, H / 14, W / 14, D)`;
    - `"text_embeddings"` `(B, D)`;
    - `"temperature"` `(B,)`: the contrastive temperature, repeated.
    Embeddings are not L2-normalised. TIPS contrasts the first CLS with
    web alt-text and the second CLS with dense synthetic captions.

    Concrete inputs are checked as by the two encoders (pixels in `[0, 1]`,
    token ids inside the vocabulary, a 0/1 mask); an empty batch gives
    empty outputs. See `TIPSTextEncoder` for what compiled graphs do with
    values that cannot be checked.

    `from_preset` also takes the named TIPS presets and Hugging Face
    `transformers` checkpoints (see `TIPSPresetMixin.from_preset`).

    Args:
        vision_encoder: a `keras_tips.TIPSVisionEncoder`.
        text_encoder: a `keras_tips.TIPSTextEncoder` of the same width.
        temperature: float. Initial contrastive temperature.
        dtype: string or `keras.DTypePolicy`.
        **kwargs: standard `keras.Model` arguments, e.g. `name`.

    Example:
    ```python
    backbone = keras_tips.TIPSBackbone.from_preset("tips_tiny_scenes")
    outputs = backbone({
        "images": np.random.uniform(size=(1, 224, 224, 3)),
        "token_ids": np.array([[12, 7, 5, 0]]),
        "padding_mask": np.array([[1, 1, 1, 0]]),
    })
    image_embedding = backbone.encode_images(images)["cls_embeddings"][:, 0]
    ```
    """

    def __init__(
        self,
        vision_encoder,
        text_encoder,
        temperature=0.07,
        dtype=None,
        **kwargs,
    ):
        if vision_encoder.hidden_dim != text_encoder.hidden_dim:
            raise ValueError(
                "The vision and text encoders must have the same width; "
                f"received {vision_encoder.hidden_dim} and "
                f"{text_encoder.hidden_dim}."
            )
        # === Layers ===
        self.vision_encoder = vision_encoder
        self.text_encoder = text_encoder
        self.temperature_layer = ContrastiveTemperature(
            temperature, dtype=dtype, name="contrastive_temperature"
        )

        # === Functional model ===
        images = keras.Input(shape=vision_encoder.image_shape, name="images")
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(
            shape=(None,), dtype="int32", name="padding_mask"
        )
        vision_outputs = vision_encoder(images)
        text_embeddings = text_encoder(
            {"token_ids": token_ids, "padding_mask": padding_mask}
        )
        super().__init__(
            inputs={
                "images": images,
                "token_ids": token_ids,
                "padding_mask": padding_mask,
            },
            outputs={
                "cls_embeddings": vision_outputs["cls_embeddings"],
                "patch_embeddings": vision_outputs["patch_embeddings"],
                "text_embeddings": text_embeddings,
                "temperature": self.temperature_layer(text_embeddings),
            },
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.initial_temperature = temperature

    @property
    def temperature(self):
        """The current contrastive temperature (float32 scalar tensor)."""
        return self.temperature_layer.temperature()

    @property
    def hidden_dim(self):
        return self.vision_encoder.hidden_dim

    def encode_images(self, images):
        """`{"cls_embeddings", "patch_embeddings"}` for a batch of images."""
        return self.vision_encoder(images)

    def encode_texts(self, token_ids, padding_mask):
        """`(B, D)` text embeddings (not normalised)."""
        return self.text_encoder(
            {"token_ids": token_ids, "padding_mask": padding_mask}
        )

    def __call__(self, inputs, *args, **kwargs):
        inputs = unify_input_types(inputs)
        if isinstance(inputs, dict) and "images" in inputs:
            values = not kwargs.get("training", args[0] if args else None)
            check_encoder_images(
                inputs["images"], self.vision_encoder.patch_size, values
            )
            check_text_inputs(
                {k: v for k, v in inputs.items() if k != "images"},
                self.text_encoder.vocabulary_size,
                values,
            )
        return super().__call__(inputs, *args, **kwargs)

    def _lora_attention_layers(self):
        return (
            self.vision_encoder._lora_attention_layers()
            + self.text_encoder._lora_attention_layers()
        )

    def get_config(self):
        # Not keras-hub's `Backbone.get_config`: after `quantize` it gathers
        # every quantized layer's policy into one map keyed by layer path,
        # and the two encoders' paths coincide (`block_0/proj` in both).
        # Each encoder's own config carries its quantized layers.
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        config.update(
            {
                "vision_encoder": keras.layers.serialize(self.vision_encoder),
                "text_encoder": keras.layers.serialize(self.text_encoder),
                "temperature": self.initial_temperature,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("vision_encoder", "text_encoder"):
            if isinstance(config[key], dict):
                if config.get("dtype") is not None:
                    config[key]["config"].setdefault("dtype", config["dtype"])
                config[key] = keras.layers.deserialize(
                    config[key], custom_objects=custom_objects
                )
        return cls(**config)
