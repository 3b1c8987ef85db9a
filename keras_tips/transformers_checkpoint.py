"""Hugging Face `transformers` TIPSv2 checkpoints, read and written.

`transformers` (5.14 and later) ships TIPSv2 as `Tipsv2Model`. Its
`save_pretrained` directories (and the `google/tipsv2-*` Hub repositories)
hold `config.json` (`model_type` `"tipsv2"`, with `vision_config`,
`text_config` and `temperature_init_value`) and `model.safetensors`
(possibly sharded, with `model.safetensors.index.json`), plus the
SentencePiece `tokenizer.model` when saved with a processor. The tensors
keep the official PyTorch names under the prefixes `vision_encoder.` and
`text_encoder.`, except that the vision MLP is `mlp.c_fc` / `mlp.c_proj`
(official `mlp.fc1` / `mlp.fc2`), and the contrastive `temperature` is a
top-level tensor.

Loading maps these names onto the official ones and reuses the `.npz`
loader's architecture inference and key/shape checks
(`keras_tips.official_checkpoint`); writing is the exact inverse.
"""

import json
import os
import shutil

import keras
import numpy as np

from keras_tips.backbone import TIPSBackbone
from keras_tips.image_converter import TIPSImageConverter
from keras_tips.official_checkpoint import CheckpointError
from keras_tips.official_checkpoint import assign_weights
from keras_tips.official_checkpoint import check_output_dir
from keras_tips.official_checkpoint import official_arrays
from keras_tips.official_checkpoint import text_config_from_arrays
from keras_tips.official_checkpoint import text_weight_map
from keras_tips.official_checkpoint import vision_config_from_arrays
from keras_tips.official_checkpoint import vision_weight_map
from keras_tips.official_checkpoint import write_directory_atomically
from keras_tips.official_checkpoint import write_preset
from keras_tips.safetensors_file import read_safetensors
from keras_tips.safetensors_file import write_safetensors
from keras_tips.text_encoder import TIPSTextEncoder
from keras_tips.tokenizer import TIPSTokenizer
from keras_tips.vision_encoder import TIPSVisionEncoder

MODEL_TYPE = "tipsv2"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TOKENIZER_NAME = "tokenizer.model"
PREPROCESSOR_NAME = "preprocessor_config.json"
VISION_PREFIX = "vision_encoder."
TEXT_PREFIX = "text_encoder."
TEMPERATURE_KEY = "temperature"

# Official vision names -> transformers names (text names are unchanged).
_VISION_RENAMES = ((".mlp.fc1.", ".mlp.c_fc."), (".mlp.fc2.", ".mlp.c_proj."))

# `transformers` defaults, for configs that leave a field out.
_VISION_DEFAULTS = {
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
    "image_size": 448,
    "num_channels": 3,
    "qkv_bias": True,
    "num_register_tokens": 1,
    "use_swiglu_ffn": False,
    "num_attention_heads": 12,
}
_TEXT_DEFAULTS = {
    "hidden_act": "relu",
    "layer_norm_eps": 1e-5,
    "scale_sqrt_depth": True,
    "pooling_epsilon": 1e-8,
    "max_position_embeddings": 64,
    "num_attention_heads": 12,
}
_DEFAULT_TEMPERATURE = 0.005065968260169029


def read_json(path):
    """A JSON file as a dict, or a `CheckpointError` naming the file."""
    try:
        with open(path) as file:
            content = json.load(file)
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not readable JSON: {error}"
        ) from error
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} does not hold a JSON object.")
    return content


def is_transformers_directory(path):
    """Whether `path` is a directory of a `transformers` checkpoint.

    True for a directory whose `config.json` names a `model_type` (the
    `transformers` convention) and is not a keras-hub preset config; any
    model type, so that a checkpoint of another model gets a clear error
    from `load_transformers_backbone`.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.path.isdir(path):
        return False
    config_path = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(config_path):
        return False
    try:
        config = read_json(config_path)
    except CheckpointError:
        return False
    return "model_type" in config and "registered_name" not in config


def read_transformers_config(directory):
    """The `config.json` of a TIPSv2 checkpoint, checked to be one.

    Raises:
        CheckpointError: the directory holds another `transformers` model
            (its type is named), or only one TIPSv2 tower.
    """
    path = os.path.join(os.fspath(directory), CONFIG_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{directory} is not a transformers checkpoint: it has no "
            f"{CONFIG_NAME}."
        )
    config = read_json(path)
    model_type = config.get("model_type")
    if model_type == MODEL_TYPE:
        return config
    architectures = config.get("architectures") or []
    described = ", ".join(architectures) or "no architecture given"
    if model_type in ("tipsv2_vision_model", "tipsv2_text_model"):
        raise CheckpointError(
            f"{directory} holds only one TIPSv2 tower (model_type "
            f"{model_type!r}, {described}); keras-tips loads a whole "
            "`Tipsv2Model` (model_type 'tipsv2') with both encoders."
        )
    raise CheckpointError(
        f"{directory} holds a transformers model of type {model_type!r} "
        f"({described}), not TIPSv2; keras-tips loads checkpoints with "
        f"model_type {MODEL_TYPE!r} (`transformers.Tipsv2Model`)."
    )


def read_transformers_weights(directory):
    """All tensors of a checkpoint directory, single file or sharded."""
    directory = os.fspath(directory)
    single = os.path.join(directory, WEIGHTS_NAME)
    index = os.path.join(directory, WEIGHTS_INDEX_NAME)
    if os.path.exists(single):
        return read_safetensors(single)[0]
    if os.path.exists(index):
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} has no 'weight_map'.")
        arrays = {}
        for shard in sorted(set(weight_map.values())):
            arrays.update(read_safetensors(os.path.join(directory, shard))[0])
        missing = sorted(set(weight_map) - set(arrays))
        if missing:
            raise CheckpointError(
                f"{index} lists tensors that no shard holds: {missing[:10]}."
            )
        return arrays
    if any(name.endswith(".bin") for name in os.listdir(directory)):
        raise CheckpointError(
            f"{directory} holds PyTorch .bin weights; keras-tips reads "
            "safetensors. Re-save it with `model.save_pretrained(directory)` "
            "(transformers writes safetensors by default)."
        )
    raise FileNotFoundError(
        f"{directory} has no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME}."
    )


def _to_official_vision_key(key):
    for official, renamed in _VISION_RENAMES:
        key = key.replace(renamed, official)
    return key


def _to_transformers_vision_key(key):
    for official, renamed in _VISION_RENAMES:
        key = key.replace(official, renamed)
    return key


def split_transformers_arrays(arrays, path="checkpoint"):
    """Splits checkpoint tensors into official vision and text arrays.

    Returns:
        `(vision_arrays, text_arrays, temperature)`; the arrays carry the
        official `.npz` names and `temperature` is `None` when the
        checkpoint has none (the published ones do not).
    """
    vision, text, other = {}, {}, []
    temperature = None
    for key, value in arrays.items():
        if key.startswith(VISION_PREFIX):
            vision[_to_official_vision_key(key[len(VISION_PREFIX) :])] = value
        elif key.startswith(TEXT_PREFIX):
            text[key[len(TEXT_PREFIX) :]] = value
        elif key == TEMPERATURE_KEY:
            temperature = float(np.asarray(value).reshape(()))
        else:
            other.append(key)
    if other:
        raise CheckpointError(
            f"{path}: unexpected tensor(s) {sorted(other)[:10]}; a TIPSv2 "
            f"checkpoint holds '{VISION_PREFIX}*', '{TEXT_PREFIX}*' and "
            f"'{TEMPERATURE_KEY}' only."
        )
    for prefix, part in ((VISION_PREFIX, vision), (TEXT_PREFIX, text)):
        if not part:
            raise CheckpointError(
                f"{path}: no '{prefix}*' tensors; not a complete TIPSv2 "
                "checkpoint."
            )
    return vision, text, temperature


def _setting(config, defaults, name):
    return config.get(name, defaults.get(name))


def _require_setting(config, defaults, name, expected, tower, path):
    value = _setting(config, defaults, name)
    if value != expected:
        raise CheckpointError(
            f"{path}: {tower}.{name}={value!r} is not supported by "
            f"keras-tips; TIPSv2 uses {expected!r}."
        )


def vision_arguments(config, arrays, path="checkpoint"):
    """`TIPSVisionEncoder` arguments from a `vision_config` and its arrays."""
    tower = "vision_config"
    _require_setting(config, _VISION_DEFAULTS, "num_channels", 3, tower, path)
    _require_setting(config, _VISION_DEFAULTS, "qkv_bias", True, tower, path)
    _require_setting(
        config, _VISION_DEFAULTS, "num_register_tokens", 1, tower, path
    )
    heads = _setting(config, _VISION_DEFAULTS, "num_attention_heads")
    arguments = vision_config_from_arrays(arrays, heads, path=path)
    swiglu = bool(_setting(config, _VISION_DEFAULTS, "use_swiglu_ffn"))
    if swiglu != (arguments["ffn_layer"] == "swiglu"):
        raise CheckpointError(
            f"{path}: {tower}.use_swiglu_ffn={swiglu} but the tensors hold "
            f"a {arguments['ffn_layer']!r} feed-forward."
        )
    if not swiglu:
        _require_setting(
            config, _VISION_DEFAULTS, "hidden_act", "gelu", tower, path
        )
    arguments["layer_norm_epsilon"] = float(
        _setting(config, _VISION_DEFAULTS, "layer_norm_eps")
    )
    return arguments


def text_arguments(config, arrays, path="checkpoint"):
    """`TIPSTextEncoder` arguments from a `text_config` and its arrays."""
    tower = "text_config"
    _require_setting(config, _TEXT_DEFAULTS, "hidden_act", "relu", tower, path)
    _require_setting(
        config, _TEXT_DEFAULTS, "scale_sqrt_depth", True, tower, path
    )
    _require_setting(
        config, _TEXT_DEFAULTS, "pooling_epsilon", 1e-8, tower, path
    )
    heads = _setting(config, _TEXT_DEFAULTS, "num_attention_heads")
    arguments = text_config_from_arrays(arrays, heads, path=path)
    arguments["layer_norm_epsilon"] = float(
        _setting(config, _TEXT_DEFAULTS, "layer_norm_eps")
    )
    return arguments


def load_transformers_backbone(directory, dtype=None):
    """Builds a `TIPSBackbone` from a `transformers` TIPSv2 directory.

    Args:
        directory: a `Tipsv2Model.save_pretrained` directory or a local
            copy of a `google/tipsv2-*` Hub repository.
        dtype: optional dtype policy for the backbone.

    Returns:
        A `TIPSBackbone` holding the checkpoint's weights and temperature.

    Example:
    ```python
    backbone = keras_tips.convert.load_transformers_backbone("tipsv2-b14")
    ```
    """
    directory = os.fspath(directory)
    config = read_transformers_config(directory)
    arrays = read_transformers_weights(directory)
    vision_arrays, text_arrays, temperature = split_transformers_arrays(
        arrays, path=directory
    )
    vision_config = config.get("vision_config") or {}
    text_config = config.get("text_config") or {}
    vision = TIPSVisionEncoder(
        **vision_arguments(vision_config, vision_arrays, path=directory),
        dtype=dtype,
    )
    assign_weights(
        vision_weight_map(vision), vision_arrays, path=directory
    )
    text = TIPSTextEncoder(
        **text_arguments(text_config, text_arrays, path=directory),
        dtype=dtype,
    )
    assign_weights(
        text_weight_map(text), text_arrays, path=directory
    )
    if vision.hidden_dim != text.hidden_dim:
        raise CheckpointError(
            f"{directory}: the vision width {vision.hidden_dim} and the text "
            f"width {text.hidden_dim} differ."
        )
    if temperature is None:
        temperature = float(
            config.get("temperature_init_value", _DEFAULT_TEMPERATURE)
        )
    if not temperature > 0:
        raise CheckpointError(
            f"{directory}: the temperature {temperature} is not positive."
        )
    backbone = TIPSBackbone(vision, text, temperature=temperature, dtype=dtype)
    backbone.temperature_layer.set_temperature(temperature)
    return backbone


def _image_size(directory, vision_config):
    path = os.path.join(directory, PREPROCESSOR_NAME)
    if os.path.exists(path):
        size = read_json(path).get("size")
        if isinstance(size, dict) and "height" in size and "width" in size:
            return int(size["height"]), int(size["width"])
    size = vision_config.get("image_size", _VISION_DEFAULTS["image_size"])
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def convert_transformers_to_preset(directory, output_dir, overwrite=False):
    """Converts a `transformers` TIPSv2 directory into a keras-hub preset.

    The preset holds the backbone, the tokenizer when the directory has a
    SentencePiece `tokenizer.model`, and an image converter at the
    checkpoint's image size (from `preprocessor_config.json`, else the
    vision config). It is written atomically, like `convert_to_preset`.

    Args:
        directory: the `transformers` checkpoint directory.
        output_dir: preset directory to create.
        overwrite: replace an existing `output_dir`.

    Returns:
        `output_dir` as an absolute path.

    Example:
    ```python
    keras_tips.convert.convert_transformers_to_preset(
        "tipsv2-b14", "presets/tips_v2_b14")
    ```
    """
    check_output_dir(output_dir, overwrite)
    backbone, tokenizer, converter = transformers_preset_components(directory)
    return write_preset(output_dir, backbone, tokenizer, converter, overwrite)


def transformers_preset_components(directory):
    """`(backbone, tokenizer, image_converter)` of a `transformers` directory.

    What `convert_transformers_to_preset` writes (the tokenizer is `None`
    without a `tokenizer.model`); the preset loader also keeps the backbone
    it has just converted, rather than building it again.
    """
    directory = os.fspath(directory)
    backbone = load_transformers_backbone(directory)
    config = read_transformers_config(directory)
    text_config = config.get("text_config") or {}
    max_length = _setting(
        text_config, _TEXT_DEFAULTS, "max_position_embeddings"
    )
    tokenizer = None
    tokenizer_path = os.path.join(directory, TOKENIZER_NAME)
    if os.path.exists(tokenizer_path):
        try:
            tokenizer = TIPSTokenizer(
                proto=tokenizer_path, sequence_length=int(max_length)
            )
        except Exception as error:
            raise CheckpointError(
                f"{tokenizer_path} is not a SentencePiece model: {error}"
            ) from error
    converter = TIPSImageConverter(
        image_size=_image_size(directory, config.get("vision_config") or {})
    )
    return backbone, tokenizer, converter


def _mlp_ratio(encoder):
    """A `mlp_ratio` with `int(hidden_dim * ratio) == mlp_dim`."""
    hidden, mlp = encoder.hidden_dim, encoder.mlp_dim
    if mlp % hidden == 0:
        return mlp // hidden
    ratio = mlp / hidden
    if int(hidden * ratio) != mlp:
        ratio = (mlp + 0.5) / hidden
    return ratio


def transformers_config(backbone, max_text_length=64):
    """The `config.json` content of a `Tipsv2Model` equal to `backbone`."""
    vision = backbone.vision_encoder
    text = backbone.text_encoder
    return {
        "architectures": ["Tipsv2Model"],
        "model_type": MODEL_TYPE,
        "dtype": "float32",
        "temperature_init_value": float(
            keras.ops.convert_to_numpy(backbone.temperature)
        ),
        "vision_config": {
            "model_type": "tipsv2_vision_model",
            "hidden_size": vision.hidden_dim,
            "num_hidden_layers": vision.num_layers,
            "num_attention_heads": vision.num_heads,
            "mlp_ratio": _mlp_ratio(vision),
            "hidden_act": "gelu",
            "layer_norm_eps": vision.layer_norm_epsilon,
            "image_size": vision.position_grid_size * vision.patch_size,
            "patch_size": vision.patch_size,
            "num_channels": 3,
            "qkv_bias": True,
            "layerscale_value": 1.0,
            "use_swiglu_ffn": vision.ffn_layer == "swiglu",
            "num_register_tokens": 1,
        },
        "text_config": {
            "model_type": "tipsv2_text_model",
            "vocab_size": text.vocabulary_size,
            "hidden_size": text.hidden_dim,
            "intermediate_size": text.mlp_dim,
            "num_hidden_layers": text.num_layers,
            "num_attention_heads": text.num_heads,
            "max_position_embeddings": int(max_text_length),
            "hidden_act": "relu",
            "layer_norm_eps": text.layer_norm_epsilon,
            "pad_token_id": 0,
            "scale_sqrt_depth": True,
            "pooling_epsilon": float(text.pooling.epsilon),
        },
    }


def transformers_arrays(backbone):
    """The backbone's weights under their `transformers` tensor names."""
    arrays = {}
    for key, value in official_arrays(backbone.vision_encoder).items():
        arrays[VISION_PREFIX + _to_transformers_vision_key(key)] = value
    for key, value in official_arrays(backbone.text_encoder).items():
        arrays[TEXT_PREFIX + key] = value
    arrays = {key: np.asarray(v, dtype="float32") for key, v in arrays.items()}
    arrays[TEMPERATURE_KEY] = np.asarray(
        keras.ops.convert_to_numpy(backbone.temperature), dtype="float32"
    )
    return arrays


def export_to_transformers(
    backbone, directory, tokenizer=None, image_size=None, overwrite=False
):
    """Writes `backbone` as a `transformers` TIPSv2 checkpoint directory.

    `transformers.Tipsv2Model.from_pretrained(directory)` then loads it and
    gives the backbone's outputs (to float32 rounding), so a model trained
    with keras-tips can be shared on the Hugging Face Hub. The directory
    holds `config.json` and `model.safetensors` (float32, temperature
    included); with a `tokenizer`, also its SentencePiece `tokenizer.model`
    and `tokenizer_config.json`, and `preprocessor_config.json` for the
    image size. Written atomically: a failure leaves no partial directory.

    Args:
        backbone: a `keras_tips.TIPSBackbone`.
        directory: directory to create.
        tokenizer: optional `keras_tips.TIPSTokenizer` to include.
        image_size: optional `(height, width)` for the image processor;
            defaults to the position grid times the patch size.
        overwrite: replace an existing `directory`.

    Returns:
        `directory` as an absolute path.

    Example:
    ```python
    backbone = keras_tips.TIPSBackbone.from_preset("tips_tiny_scenes")
    keras_tips.convert.export_to_transformers(backbone, "tips-hf")
    model = transformers.Tipsv2Model.from_pretrained("tips-hf")
    ```
    """
    if not isinstance(backbone, TIPSBackbone):
        raise TypeError(
            "`backbone` must be a keras_tips.TIPSBackbone. Received: "
            f"{type(backbone).__name__}"
        )
    max_text_length = 64 if tokenizer is None else tokenizer.sequence_length
    config = transformers_config(backbone, max_text_length=max_text_length)
    arrays = transformers_arrays(backbone)
    vision = backbone.vision_encoder
    if image_size is None:
        side = vision.position_grid_size * vision.patch_size
        image_size = (side, side)

    def write(staging):
        with open(os.path.join(staging, CONFIG_NAME), "w") as file:
            json.dump(config, file, indent=2)
        write_safetensors(
            os.path.join(staging, WEIGHTS_NAME), arrays, {"format": "pt"}
        )
        preprocessor_config = {
            "image_processor_type": "Tipsv2ImageProcessor",
            "size": {"height": int(image_size[0]), "width": int(image_size[1])},
            "do_resize": True,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": False,
            "resample": 2,
        }
        with open(os.path.join(staging, PREPROCESSOR_NAME), "w") as file:
            json.dump(preprocessor_config, file, indent=2)
        if tokenizer is not None:
            _write_tokenizer(tokenizer, staging)

    return write_directory_atomically(directory, write, overwrite)


def _write_tokenizer(tokenizer, directory):
    """Writes the SentencePiece model and a `Tipsv2Tokenizer` config."""
    proto = tokenizer.proto
    if proto is None:
        raise ValueError(
            "The tokenizer has no SentencePiece model to export; load one "
            "(e.g. `TIPSTokenizer.from_preset`) first."
        )
    target = os.path.join(directory, TOKENIZER_NAME)
    if isinstance(proto, str):
        shutil.copyfile(proto, target)
    else:
        with open(target, "wb") as file:
            file.write(proto)
    tokenizer_config = {
        "tokenizer_class": "Tipsv2Tokenizer",
        "model_max_length": int(tokenizer.sequence_length),
        "do_lower_case": True,
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "padding_side": "right",
    }
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as file:
        json.dump(tokenizer_config, file, indent=2)


DPT_MODEL_TYPE = "tipsv2_dpt"
# transformers DPT class -> (TIPSDensePredictor task, tensor prefix).
_DPT_ARCHITECTURES = {
    "Tipsv2DptForSemanticSegmentation": ("segmentation", "segmentation_head"),
    "Tipsv2DptForDepthEstimation": ("depth", "depth_head"),
    "Tipsv2DptForNormalEstimation": ("normals", "normals_head"),
}
# transformers DPT tensor names (after the task prefix) -> official names.
_DPT_RENAMES = ("reassemble.", "convs.", "fusion_blocks.", "project.")


def _dpt_settings(config, predictor, path):
    """Checks a `tipsv2_dpt` config against a `TIPSDensePredictor`."""
    backbone_config = config.get("backbone_config") or {}
    indices = [int(i) - 1 for i in backbone_config.get("out_indices", [])]
    expected = {
        "backbone_config.out_indices (1-based)": (
            indices, list(predictor.layer_indices)),
        "backbone_config.apply_layernorm": (
            backbone_config.get("apply_layernorm", True), True),
        "fusion_hidden_size": (
            config.get("fusion_hidden_size", 256), predictor.channels),
        "neck_hidden_sizes": (
            list(config.get("neck_hidden_sizes") or [96, 192, 384, 768]),
            list(predictor.post_process_channels)),
        "reassemble_factors": (
            list(config.get("reassemble_factors") or [4, 2, 1, 0.5]),
            [4, 2, 1, 0.5]),
        "readout_activation": (
            config.get("readout_activation", "gelu_pytorch_tanh"),
            "gelu_pytorch_tanh"),
    }
    if predictor.task == "depth":
        relu = config.get("depth_decoder_activation", "relu") == "relu"
        expected["depth_decoder_activation is 'relu'"] = (
            relu, predictor.decoder.output_activation)
        expected["num_depth_bins"] = (
            config.get("num_depth_bins", 256), predictor.num_depth_bins)
        expected["min_depth"] = (
            config.get("min_depth", 1e-3), predictor.min_depth)
        expected["max_depth"] = (
            config.get("max_depth", 10.0), predictor.max_depth)
    if predictor.task == "segmentation":
        labels = len(config.get("id2label") or {}) or None
        expected["number of labels"] = (labels, predictor.num_classes)
    for name, (value, wanted) in expected.items():
        if name == "backbone_config.out_indices (1-based)":
            if value != wanted:
                raise CheckpointError(
                    f"{path}: the checkpoint reads blocks {value} (0-based) "
                    f"but the predictor reads {wanted}; build it with "
                    f"layer_indices={value}."
                )
        elif value != wanted:
            raise CheckpointError(
                f"{path}: {name} is {value!r} in the checkpoint but "
                f"{wanted!r} in the TIPSDensePredictor; build the predictor "
                "to match."
            )


def load_transformers_dense_predictor_weights(predictor, directory):
    """Loads a `transformers` TIPSv2 DPT checkpoint into a predictor.

    The checkpoint (`Tipsv2DptForSemanticSegmentation`,
    `Tipsv2DptForDepthEstimation` or `Tipsv2DptForNormalEstimation`, e.g.
    `google/tipsv2-b14-dpt` saved with one head) holds a vision encoder
    and a DPT decoder; both are assigned, after the same key and shape
    checks as every other checkpoint, and the decoder's settings (layers
    read, widths, depth bins) are checked against the predictor's.

    Args:
        predictor: a `keras_tips.tasks.TIPSDensePredictor` of the same task
            and architecture (for depth, `output_activation=True` as the
            transformers depth decoder).
        directory: the `save_pretrained` directory.

    Returns:
        `predictor`.

    Example:
    ```python
    predictor = keras_tips.tasks.TIPSDensePredictor(
        backbone, task="depth", output_activation=True, image_size=448)
    keras_tips.convert.load_transformers_dense_predictor_weights(
        predictor, "tipsv2-b14-dpt-depth")
    ```
    """
    from keras_tips.tasks.dense_predictor import TIPSDensePredictor
    from keras_tips.tasks.dpt_weights import load_dpt_weights

    if not isinstance(predictor, TIPSDensePredictor):
        raise TypeError(
            "`predictor` must be a keras_tips.tasks.TIPSDensePredictor. "
            f"Received: {type(predictor).__name__}"
        )
    directory = os.fspath(directory)
    config = read_json(os.path.join(directory, CONFIG_NAME))
    architectures = config.get("architectures") or []
    if config.get("model_type") != DPT_MODEL_TYPE:
        raise CheckpointError(
            f"{directory} holds a transformers model of type "
            f"{config.get('model_type')!r}, not a TIPSv2 DPT "
            f"({DPT_MODEL_TYPE!r})."
        )
    architecture = architectures[0] if architectures else None
    if architecture not in _DPT_ARCHITECTURES:
        raise CheckpointError(
            f"{directory} holds a {architecture}; keras-tips loads one task "
            f"head at a time: {sorted(_DPT_ARCHITECTURES)}."
        )
    task, prefix = _DPT_ARCHITECTURES[architecture]
    if predictor.task != task:
        raise CheckpointError(
            f"{directory} holds a {task} head ({architecture}) but the "
            f"predictor's task is {predictor.task!r}."
        )
    _dpt_settings(config, predictor, directory)
    arrays = read_transformers_weights(directory)
    vision, decoder, other = {}, {}, []
    for key, value in arrays.items():
        if key.startswith(VISION_PREFIX):
            vision[_to_official_vision_key(key[len(VISION_PREFIX) :])] = value
        elif key.startswith(f"{prefix}.{prefix}."):
            decoder["head." + key[len(prefix) * 2 + 2 :]] = value
        elif key.startswith(prefix + ".") and key[len(prefix) + 1 :].startswith(
            _DPT_RENAMES
        ):
            decoder["dpt." + key[len(prefix) + 1 :]] = value
        else:
            other.append(key)
    if other:
        raise CheckpointError(
            f"{directory}: unexpected tensor(s) {sorted(other)[:10]} for a "
            f"{architecture}."
        )
    encoder = predictor.backbone.vision_encoder
    assign_weights(
        vision_weight_map(encoder), vision, path=directory
    )
    load_dpt_weights(predictor.decoder, decoder)
    return predictor
