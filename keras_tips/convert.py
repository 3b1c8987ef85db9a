"""`keras_tips.convert`: the public checkpoint conversions, in one namespace.

- Official `.npz` checkpoints: reading, loading into Keras encoders and a
  `TIPSBackbone`, converting to a keras-hub preset, and the weight maps
  (implemented in `keras_tips.official_checkpoint`).
- Hugging Face `transformers` TIPSv2 checkpoints, both directions
  (implemented in `keras_tips.transformers_checkpoint`).

Named presets are converted on first use by `keras_tips.presets`.
"""

from keras_tips.official_checkpoint import CheckpointError
from keras_tips.official_checkpoint import assign_weights
from keras_tips.official_checkpoint import check_output_dir
from keras_tips.official_checkpoint import convert_to_preset
from keras_tips.official_checkpoint import load_backbone
from keras_tips.official_checkpoint import load_text_encoder
from keras_tips.official_checkpoint import load_vision_encoder
from keras_tips.official_checkpoint import official_arrays
from keras_tips.official_checkpoint import read_npz
from keras_tips.official_checkpoint import read_text_temperature
from keras_tips.official_checkpoint import text_config_from_arrays
from keras_tips.official_checkpoint import text_weight_map
from keras_tips.official_checkpoint import vision_config_from_arrays
from keras_tips.official_checkpoint import vision_weight_map
from keras_tips.official_checkpoint import write_directory_atomically
from keras_tips.official_checkpoint import write_preset
from keras_tips.transformers_checkpoint import convert_transformers_to_preset
from keras_tips.transformers_checkpoint import export_to_transformers
from keras_tips.transformers_checkpoint import load_transformers_backbone
from keras_tips.transformers_checkpoint import (
    load_transformers_dense_predictor_weights,
)

__all__ = [
    "CheckpointError",
    "assign_weights",
    "check_output_dir",
    "convert_to_preset",
    "convert_transformers_to_preset",
    "export_to_transformers",
    "load_backbone",
    "load_text_encoder",
    "load_transformers_backbone",
    "load_transformers_dense_predictor_weights",
    "load_vision_encoder",
    "official_arrays",
    "read_npz",
    "read_text_temperature",
    "text_config_from_arrays",
    "text_weight_map",
    "vision_config_from_arrays",
    "vision_weight_map",
    "write_directory_atomically",
    "write_preset",
]
