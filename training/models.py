"""The student model of a pretraining run: its sizes and how it is built.

`MODEL_SIZES` are the sizes `--model` accepts: `"tiny"` (`TINY_ARCHITECTURE`,
for CPU smoke runs and tests) and the released TIPS sizes of
`keras_tips.variants`. `build_backbone` makes a freshly initialized student
`TIPSBackbone` for a `PretrainConfig`.

Example:

```python
config = PretrainConfig.tiny()
backbone = build_backbone(config, vocabulary_size=64)
```
"""

import keras

MODEL_SIZES = ("tiny", "S", "B", "L", "So400m", "g")

# The tiny architecture used for CPU smoke runs and tests.
TINY_ARCHITECTURE = {
    "hidden_dim": 32,
    "num_layers": 2,
    "num_heads": 2,
    "mlp_dim": 64,
    "text_num_layers": 2,
}


def model_size_name(model_variant):
    """The size of `model_variant` (`"S/14"` -> `"S"`), one of `MODEL_SIZES`.

    Raises:
        ValueError: an unknown size.
    """
    name = str(model_variant).split("/")[0]
    if name not in MODEL_SIZES:
        raise ValueError(
            f"Unknown model size {model_variant!r}; expected one of "
            f"{list(MODEL_SIZES)} (optionally with '/14')."
        )
    return name


def build_backbone(config, vocabulary_size):
    """A freshly initialized student `TIPSBackbone` for `config.model_variant`.

    `"tiny"` is `TINY_ARCHITECTURE`; the released sizes use
    `keras_tips.variants`. LayerScale starts at `config.layer_scale_init`
    (1e-5 by default, as DINOv2 for training from scratch). The position-embedding grid matches the global
    crop (TIPS) or is 32 (TIPSv2).

    Args:
        config: `PretrainConfig`.
        vocabulary_size: int, the tokenizer's vocabulary size.
    """
    from keras_tips import TIPSBackbone
    from keras_tips import TIPSTextEncoder
    from keras_tips import TIPSVisionEncoder
    from keras_tips import variants

    size = model_size_name(config.model_variant)
    grid = config.global_crop_size // config.patch_size
    if size == "tiny":
        arch = TINY_ARCHITECTURE
        vision = {
            "hidden_dim": arch["hidden_dim"],
            "num_layers": arch["num_layers"],
            "num_heads": arch["num_heads"],
            "mlp_dim": arch["mlp_dim"],
            "patch_size": config.patch_size,
            "position_grid_size": grid,
            "layer_scale_init": config.layer_scale_init,
        }
        text = {
            "hidden_dim": arch["hidden_dim"],
            "num_layers": arch["text_num_layers"],
            "num_heads": arch["num_heads"],
            "mlp_dim": arch["mlp_dim"],
        }
    else:
        position_grid = 32 if config.recipe == "tips_v2" else grid
        vision = variants.vision_config(size, position_grid_size=position_grid)
        vision["layer_scale_init"] = config.layer_scale_init
        vision["patch_size"] = config.patch_size
        text = variants.text_config(size)
        text.pop("vocabulary_size")
    # Architecture overrides of the config (custom sizes).
    for name in ("hidden_dim", "num_layers", "num_heads", "mlp_dim"):
        value = getattr(config, name, None)
        if value is not None:
            vision[name] = value
            if name != "num_layers":
                text[name] = value
    if getattr(config, "text_num_layers", None) is not None:
        text["num_layers"] = config.text_num_layers
    vision_encoder = TIPSVisionEncoder(**vision, name="vision_encoder")
    text_encoder = TIPSTextEncoder(
        vocabulary_size=int(vocabulary_size), **text, name="text_encoder"
    )
    # The backbone's temperature layer is built in float32 even under a
    # mixed policy (its call mixes the float32 temperature with the
    # embeddings' dtype, which TensorFlow rejects for bfloat16).
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        return TIPSBackbone(
            vision_encoder,
            text_encoder,
            temperature=config.contrastive_temperature_init,
        )
    finally:
        keras.config.set_dtype_policy(policy)
