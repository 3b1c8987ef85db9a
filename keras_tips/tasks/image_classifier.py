"""`TIPSImageClassifier`: a trainable classification head on TIPS features."""

import keras
import numpy as np
from keras import ops
from keras_hub.models import ImageClassifier
from keras_hub.src.models.task import Task

from keras_tips.normalization import l2_normalize
from keras_tips.tasks._tips_task import TIPSImageTaskMixin
from keras_tips.tasks._tips_task import check_backbone
from keras_tips.tasks.zero_shot import SINGLE_PROMPT_TEMPLATE
from keras_tips.tasks.zero_shot import check_class_names
from keras_tips.tasks.zero_shot import class_text_embeddings
from keras_tips.tasks.zero_shot import restoring_without_vocabulary

POOLING_CHOICES = ("first", "second", "both")


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSClassTokenPooling(keras.layers.Layer):
    """Image features for a classifier: unit class tokens, mean patch.

    Concatenates the L2-normalised first and/or second class token and,
    optionally, the L2-normalised mean of the patch embeddings, so that a
    linear layer on top computes (sums of) cosine similarities.

    Args:
        pooling: `"first"`, `"second"` or `"both"` class tokens.
        include_patch_mean: bool. Append the mean patch embedding.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    pooling = TIPSClassTokenPooling("both", include_patch_mean=True)
    features = pooling(cls_embeddings, patch_embeddings)  # (B, 3 * D)
    ```
    """

    def __init__(self, pooling="first", include_patch_mean=False, **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLING_CHOICES:
            raise ValueError(
                f"`pooling` must be one of {POOLING_CHOICES}. Received: "
                f"pooling={pooling!r}"
            )
        self.pooling = pooling
        self.include_patch_mean = bool(include_patch_mean)

    @property
    def num_parts(self):
        """How many `D`-wide parts the features concatenate."""
        return (2 if self.pooling == "both" else 1) + self.include_patch_mean

    def call(self, cls_embeddings, patch_embeddings):
        parts = []
        if self.pooling in ("first", "both"):
            parts.append(cls_embeddings[:, 0])
        if self.pooling in ("second", "both"):
            parts.append(cls_embeddings[:, 1])
        if self.include_patch_mean:
            parts.append(ops.mean(patch_embeddings, axis=(1, 2)))
        parts = [
            l2_normalize(ops.cast(part, "float32"))
            for part in parts
        ]
        features = parts[0] if len(parts) == 1 else ops.concatenate(parts, -1)
        return ops.cast(features, self.compute_dtype)

    def compute_output_spec(self, cls_embeddings, patch_embeddings):
        width = cls_embeddings.shape[-1] * self.num_parts
        return keras.KerasTensor(
            (cls_embeddings.shape[0], width), dtype=self.compute_dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pooling": self.pooling,
                "include_patch_mean": self.include_patch_mean,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSImageClassifier(TIPSImageTaskMixin, ImageClassifier):
    """Image classifier on TIPS: class-token features and a linear head.

    The vision encoder's first, second or both class tokens (optionally
    with the mean patch embedding), each L2-normalised, feed a dense layer
    giving `(batch, num_classes)` logits. Given `class_names`, the head
    starts as the zero-shot classifier: its weights are the class-name
    prompt embeddings divided by the contrastive temperature, so before
    any training it predicts exactly as `TIPSZeroShotClassifier`, and
    fine-tuning starts from zero-shot accuracy instead of chance.

    `compile()` defaults to Adam (5e-5), sparse categorical cross-entropy
    on logits and accuracy; `fit` takes images (raw with a preprocessor,
    else model-ready floats in `[0, 1]`) and integer labels. The text tower
    is not used and is frozen. For parameter-efficient fine-tuning call
    `enable_lora(rank)`: the vision encoder then trains only LoRA adapters
    on its attention projections, and the head stays trainable.

    Args:
        backbone: a `keras_tips.TIPSBackbone`.
        num_classes: int. Number of classes; defaults to
            `len(class_names)`.
        preprocessor: optional `keras_tips.TIPSPreprocessor`; its image
            converter resizes raw images and its tokenizer embeds the class
            names.
        pooling: `"first"`, `"second"` or `"both"` class tokens.
        include_patch_mean: bool. Also use the mean patch embedding (its
            head weights start at zero).
        class_names: optional list of names; initialises the head from
            their prompt embeddings (needs the preprocessor's tokenizer).
        prompt_templates: templates with one `{}` for the class names.
        activation: optional activation of the head (`None`: logits).
        dropout: float. Dropout on the features during training.
        head_dtype: optional dtype policy of the head.
        **kwargs: `keras_hub.models.Task` arguments, e.g. `name`.

    Example:
    ```python
    classifier = keras_tips.tasks.TIPSImageClassifier.from_preset(
        "tips_tiny_scenes", class_names=["circle", "square", "triangle"])
    classifier.enable_lora(4)  # optional
    classifier.compile()
    classifier.fit(images, labels, epochs=3)
    ```
    """

    def __init__(
        self,
        backbone,
        num_classes=None,
        preprocessor=None,
        pooling="first",
        include_patch_mean=False,
        class_names=None,
        prompt_templates=SINGLE_PROMPT_TEMPLATE,
        activation=None,
        dropout=0.0,
        head_dtype=None,
        **kwargs,
    ):
        check_backbone(backbone)
        if class_names is not None:
            class_names = check_class_names(class_names)
            if num_classes is None:
                num_classes = len(class_names)
            if num_classes != len(class_names):
                raise ValueError(
                    f"`num_classes` ({num_classes}) differs from the number "
                    f"of `class_names` ({len(class_names)})."
                )
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, (int, np.integer))
            or num_classes < 1
        ):
            raise ValueError(
                "`num_classes` must be a positive int (or pass "
                f"`class_names`). Received: num_classes={num_classes!r}"
            )
        head_dtype = head_dtype or backbone.dtype_policy
        # The head uses the vision tower alone; frozen text weights get no
        # (missing) gradients during `fit`.
        backbone.text_encoder.trainable = False
        backbone.temperature_layer.trainable = False

        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.pooler = TIPSClassTokenPooling(
            pooling, include_patch_mean, dtype=head_dtype, name="pooler"
        )
        self.output_dropout = keras.layers.Dropout(
            dropout, dtype=head_dtype, name="output_dropout"
        )
        self.output_dense = keras.layers.Dense(
            int(num_classes),
            activation=activation,
            dtype=head_dtype,
            name="predictions",
        )

        # === Functional model ===
        vision_encoder = backbone.vision_encoder
        images = keras.Input(shape=vision_encoder.image_shape, name="images")
        outputs = vision_encoder(images)
        x = self.pooler(outputs["cls_embeddings"], outputs["patch_embeddings"])
        x = self.output_dropout(x)
        logits = self.output_dense(x)
        # keras-hub's ImageClassifier builds another head; skip to `Task`.
        Task.__init__(self, inputs=images, outputs=logits, **kwargs)

        # === Config ===
        self.num_classes = int(num_classes)
        self.pooling = pooling
        self.include_patch_mean = bool(include_patch_mean)
        self.class_names = class_names
        self.prompt_templates = tuple(prompt_templates)
        self.activation = activation
        self.dropout = dropout

        tokenizer = getattr(preprocessor, "tokenizer", None)
        if class_names is not None and not restoring_without_vocabulary(
            tokenizer
        ):
            self.initialize_from_class_names(
                class_names, tokenizer, prompt_templates
            )

    def initialize_from_class_names(
        self, class_names, tokenizer=None, prompt_templates=None
    ):
        """Sets the head to the zero-shot classifier of `class_names`.

        The kernel rows of each class token are the unit prompt embeddings
        divided by the temperature (halved for `"both"`, which averages the
        two cosines); mean-patch rows and the bias are zero.

        Args:
            class_names: list of `num_classes` names.
            tokenizer: a `TIPSTokenizer`; defaults to the preprocessor's.
            prompt_templates: defaults to the classifier's templates.
        """
        class_names = check_class_names(class_names)
        if len(class_names) != self.num_classes:
            raise ValueError(
                f"{len(class_names)} class names for a head of "
                f"{self.num_classes} classes."
            )
        if tokenizer is None:
            tokenizer = getattr(self.preprocessor, "tokenizer", None)
        if prompt_templates is None:
            prompt_templates = self.prompt_templates
        embeddings = class_text_embeddings(
            self.backbone, tokenizer, class_names, prompt_templates
        )
        temperature = float(ops.convert_to_numpy(self.backbone.temperature))
        width = embeddings.shape[1]
        kernel = np.zeros((self.pooler.num_parts * width, self.num_classes))
        token_parts = 2 if self.pooling == "both" else 1
        for part in range(token_parts):
            kernel[part * width : (part + 1) * width] = (
                embeddings.T / (temperature * token_parts)
            )
        self.output_dense.kernel.assign(kernel)
        self.output_dense.bias.assign(np.zeros(self.num_classes))

    def enable_lora(self, rank, target_layer_names=None):
        """LoRA on the vision encoder (see `TIPSVisionEncoder.enable_lora`).

        Freezes the vision encoder except its adapters; the head stays
        trainable. Save the adapters with
        `classifier.backbone.vision_encoder.save_lora_weights(path)`.
        """
        self.backbone.vision_encoder.enable_lora(rank, target_layer_names)

    def get_config(self):
        config = Task.get_config(self)
        config.update(
            {
                "num_classes": self.num_classes,
                "pooling": self.pooling,
                "include_patch_mean": self.include_patch_mean,
                "class_names": self.class_names,
                "prompt_templates": list(self.prompt_templates),
                "activation": self.activation,
                "dropout": self.dropout,
            }
        )
        return config
