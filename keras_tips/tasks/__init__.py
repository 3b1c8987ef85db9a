"""Downstream tasks on TIPS features.

- `TIPSZeroShotClassifier`: zero-shot image classification from class names.
- `TIPSImageClassifier`: a fine-tunable `keras_hub.models.ImageClassifier`
  whose head can start as the zero-shot classifier.
- Retrieval helpers: top-k image->text and text->image, recall@k.
- `TIPSZeroShotSegmenter`: zero-shot semantic segmentation (value-attention
  patch features, sliding windows).
- `TIPSDensePredictor` (DPT decoder) and `TIPSLinearProbe`: trainable dense
  heads for segmentation, depth and surface normals on frozen features.
"""

from keras_tips.tasks.dense_predictor import TIPSDensePredictor
from keras_tips.tasks.dpt_decoder import DPTDecoder
from keras_tips.tasks.image_classifier import TIPSClassTokenPooling
from keras_tips.tasks.image_classifier import TIPSImageClassifier
from keras_tips.tasks.intermediate_features import intermediate_layer_features
from keras_tips.tasks.linear_probe import TIPSLinearProbe
from keras_tips.tasks.retrieval import cosine_similarity_matrix
from keras_tips.tasks.retrieval import image_to_text_retrieval
from keras_tips.tasks.retrieval import recall_at_k
from keras_tips.tasks.retrieval import text_to_image_retrieval
from keras_tips.tasks.retrieval import top_k_retrieval
from keras_tips.tasks.segmentation import TIPSZeroShotSegmenter
from keras_tips.tasks.zero_shot import IMAGENET_PROMPT_TEMPLATES
from keras_tips.tasks.zero_shot import SINGLE_PROMPT_TEMPLATE
from keras_tips.tasks.zero_shot import TCL_PROMPT_TEMPLATES
from keras_tips.tasks.zero_shot import TIPSZeroShotClassifier
from keras_tips.tasks.zero_shot import class_text_embeddings
from keras_tips.tasks.zero_shot import flat_class_names

__all__ = [
    "DPTDecoder",
    "IMAGENET_PROMPT_TEMPLATES",
    "SINGLE_PROMPT_TEMPLATE",
    "TCL_PROMPT_TEMPLATES",
    "TIPSClassTokenPooling",
    "TIPSDensePredictor",
    "TIPSImageClassifier",
    "TIPSLinearProbe",
    "TIPSZeroShotClassifier",
    "TIPSZeroShotSegmenter",
    "class_text_embeddings",
    "cosine_similarity_matrix",
    "flat_class_names",
    "image_to_text_retrieval",
    "intermediate_layer_features",
    "recall_at_k",
    "text_to_image_retrieval",
    "top_k_retrieval",
]
