"""keras-tips: TIPS image-text encoders for Keras 3 (JAX, TensorFlow, PyTorch).

Public API:
- `TIPSVisionEncoder`, `TIPSTextEncoder`, `TIPSBackbone`: the models.
- `TIPSTokenizer`, `TIPSImageConverter`, `TIPSPreprocessor`: inputs.
- `convert`: loading official `.npz` checkpoints; reading and writing
  Hugging Face `transformers` TIPSv2 checkpoints (`export_to_transformers`).
- `list_presets()`: named presets for `TIPSBackbone.from_preset`.
- `variants`: architectures of the released models.
- `tasks`: zero-shot classification and segmentation, retrieval, dense heads,
  a fine-tunable image classifier.
- `export`: SavedModel export for TensorFlow-only serving.
- `visualization`: PCA pictures of patch features.
"""

from keras_tips import convert
from keras_tips import export
from keras_tips import presets  # noqa: F401 (installs the preset loader)
from keras_tips import tasks
from keras_tips import variants
from keras_tips import visualization
from keras_tips.backbone import TIPSBackbone
from keras_tips.image_converter import TIPSImageConverter
from keras_tips.preprocessor import TIPSPreprocessor
from keras_tips.tips_presets import list_presets
from keras_tips.text_encoder import TIPSTextEncoder
from keras_tips.tokenizer import TIPSTokenizer
from keras_tips.version import __version__
from keras_tips.vision_encoder import TIPSVisionEncoder

__all__ = [
    "TIPSBackbone",
    "TIPSImageConverter",
    "TIPSPreprocessor",
    "TIPSTextEncoder",
    "TIPSTokenizer",
    "TIPSVisionEncoder",
    "convert",
    "export",
    "list_presets",
    "tasks",
    "variants",
    "visualization",
    "__version__",
]
