"""Zero-shot image classification with TIPS: images against class prompts."""

import keras
import numpy as np
from keras import ops

from keras_tips.backbone import TIPSBackbone
from keras_tips.normalization import l2_normalize
from keras_tips.tasks._tips_task import TIPSImageTask
from keras_tips.tasks._tips_task import check_backbone
from keras_tips.validation import check_text_inputs

SINGLE_PROMPT_TEMPLATE = ("a photo of a {}.",)

# The seven ImageNet prompts that CLIP found to ensemble best; the official
# TIPS zero-shot segmentation notebook uses them (via the TCL paper).
IMAGENET_PROMPT_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of a {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

# The TCL templates: the ImageNet ones plus two plural forms. The official
# TIPS zero-shot segmentation evaluation uses these.
TCL_PROMPT_TEMPLATES = IMAGENET_PROMPT_TEMPLATES + (
    "a photo of many {}.",
    "a photo of {}s.",
)

CLS_TOKEN_CHOICES = ("first", "second", "both")


def check_class_names(class_names):
    """Validates a list of class names, one per class; returns a list of str.

    Like `check_class_name_groups`, but a class may not be a list of
    synonyms: for tasks that hold one row per class (`TIPSImageClassifier`)
    and for `class_text_embeddings`, which embeds one name per row.
    """
    groups = check_class_name_groups(class_names)
    lists = [i for i, entry in enumerate(groups) if not isinstance(entry, str)]
    if lists:
        raise TypeError(
            f"`class_names` entries {lists} are lists; here every class has "
            "one name (synonyms, lists of names, are for the zero-shot "
            "classifier and segmenter)."
        )
    return groups


def check_class_name_groups(class_names):
    """Validates zero-shot class names, each a name or a list of synonyms.

    A class is named by one string or by a non-empty list (or tuple) of
    strings, its synonyms; a zero-shot task scores such a class by the
    best of its names (`ClassEmbeddingSimilarity`). No name may appear
    twice, within a class or across classes.

    Returns:
        A list with one entry per class: a str, or a list of str.
    """
    if isinstance(class_names, str) or not isinstance(
        class_names, (list, tuple, np.ndarray)
    ):
        raise TypeError(
            "`class_names` must be a list whose entries are class names or "
            f"lists of synonyms. Received: {type(class_names).__name__}"
        )
    if not len(class_names):
        raise ValueError("`class_names` is empty; give at least one class.")
    groups = []
    for position, entry in enumerate(class_names):
        if isinstance(entry, (list, tuple, np.ndarray)):
            names = [str(name) for name in entry]
            if not names:
                raise ValueError(
                    f"`class_names[{position}]` is an empty list of "
                    "synonyms; give at least one name."
                )
            if any(not name.strip() for name in names):
                raise ValueError(
                    f"`class_names[{position}]` has an empty name: {names}."
                )
            groups.append(names)
        else:
            name = str(entry)
            if not name.strip():
                raise ValueError(
                    f"`class_names` has an empty name at position {position}."
                )
            groups.append(name)
    flat = flat_class_names(groups)
    duplicates = sorted({name for name in flat if flat.count(name) > 1})
    if duplicates:
        raise ValueError(f"`class_names` has duplicates: {duplicates}.")
    return groups


def flat_class_names(class_names):
    """Every name of `class_names` (entries: names or lists), in order."""
    return [
        name
        for entry in class_names
        for name in ([entry] if isinstance(entry, str) else entry)
    ]


def names_per_class(class_names):
    """How many names each class of `class_names` has (1 for a string)."""
    return [1 if isinstance(entry, str) else len(entry) for entry in class_names]


def display_class_name(entry):
    """A class's name for people: the name, or the first synonym."""
    return entry if isinstance(entry, str) else entry[0]


def check_prompt_templates(prompt_templates):
    """Validates prompt templates (each with one `{}`); returns a tuple."""
    if isinstance(prompt_templates, str):
        prompt_templates = (prompt_templates,)
    templates = tuple(str(t) for t in prompt_templates)
    if not templates:
        raise ValueError("`prompt_templates` is empty; use e.g. ('{}',).")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(
            "Every prompt template needs exactly one '{}' where the class "
            f"name goes. Received: {bad}"
        )
    return templates


def restoring_without_vocabulary(tokenizer):
    """Whether a tokenizer was rebuilt from a config without its proto."""
    return tokenizer is not None and getattr(tokenizer, "proto", None) is None


def class_text_embeddings(
    text_encoder,
    tokenizer,
    class_names,
    prompt_templates=IMAGENET_PROMPT_TEMPLATES,
    batch_size=256,
):
    """One unit text embedding per class from an ensemble of prompts.

    Every template is filled with every class name; the prompts are embedded
    and L2-normalised, averaged over the templates of a class and
    normalised again, as the official TIPS zero-shot evaluation does.

    Args:
        text_encoder: a `TIPSTextEncoder` or a `TIPSBackbone`.
        tokenizer: a `TIPSTokenizer`.
        class_names: list of strings.
        prompt_templates: strings with one `{}` each.
        batch_size: prompts embedded per call.

    Returns:
        float32 NumPy array `(num_classes, hidden_dim)` of unit vectors.

    Example:
    ```python
    embeddings = class_text_embeddings(
        backbone, tokenizer, ["cat", "dog"], ("a photo of a {}.",))
    ```
    """
    if isinstance(text_encoder, TIPSBackbone):
        text_encoder = text_encoder.text_encoder
    names = check_class_names(class_names)
    templates = check_prompt_templates(prompt_templates)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(
            f"`batch_size` must be a positive int; received {batch_size!r}."
        )
    if tokenizer is None:
        raise ValueError(
            "A tokenizer is needed to embed class names; build the task with "
            "a TIPSPreprocessor that has a tokenizer, or pass "
            "`class_embeddings`."
        )
    prompts = [t.format(name) for name in names for t in templates]
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer.tokenize_with_padding_mask(
            prompts[start : start + batch_size]
        )
        # Compiled inference (one trace per batch shape), which cannot
        # check values: check them here.
        inputs = check_text_inputs(
            {
                "token_ids": np.asarray(tokens["token_ids"]),
                "padding_mask": np.asarray(tokens["padding_mask"]),
            },
            text_encoder.vocabulary_size,
        )
        embeddings = text_encoder.predict_on_batch(inputs)
        chunks.append(np.asarray(embeddings, dtype="float32"))
    embeddings = l2_normalize(np.concatenate(chunks, axis=0))
    embeddings = ops.reshape(embeddings, (len(names), len(templates), -1))
    embeddings = l2_normalize(ops.mean(embeddings, axis=1))
    return ops.convert_to_numpy(embeddings).astype("float32")


@keras.saving.register_keras_serializable(package="keras_tips")
class ClassEmbeddingSimilarity(keras.layers.Layer):
    """Cosine similarity of features with fixed class text embeddings.

    Holds one (non-trainable) embedding per class name and maps features
    `(..., D)` to cosine similarities `(..., num_classes)`; features and
    class embeddings are L2-normalised first. A class with several names
    (synonyms, `names_per_class`) scores its best name's cosine, as
    SCLIP and ClearCLIP score a background named by several stuff classes.

    Args:
        num_classes: int. Number of classes.
        hidden_dim: int. Embedding width `D`.
        names_per_class: optional list of `num_classes` positive ints, the
            number of names (embedding rows, consecutive) of each class;
            default one each.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    layer = ClassEmbeddingSimilarity(num_classes=3, hidden_dim=64)
    layer.set_class_embeddings(np.random.normal(size=(3, 64)))
    layer(np.random.normal(size=(2, 4, 4, 64)))  # (2, 4, 4, 3)

    # Class 0 named twice: 4 embedding rows, still 3 classes.
    layer = ClassEmbeddingSimilarity(3, 64, names_per_class=[2, 1, 1])
    layer.set_class_embeddings(np.random.normal(size=(4, 64)))
    layer(np.random.normal(size=(2, 64)))  # (2, 3)
    ```
    """

    def __init__(self, num_classes, hidden_dim, names_per_class=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.hidden_dim = int(hidden_dim)
        if names_per_class is None:
            names_per_class = [1] * self.num_classes
        names_per_class = [int(count) for count in names_per_class]
        if len(names_per_class) != self.num_classes or min(
            names_per_class, default=1
        ) < 1:
            raise ValueError(
                "`names_per_class` must give a positive count for each of "
                f"the {self.num_classes} classes; received {names_per_class}."
            )
        self.names_per_class = names_per_class
        self.num_names = sum(names_per_class)
        # Class `c`'s names are rows `name_index[c, :count_c]`; the rest of
        # its row points at a padding column of cosine -2 (below any
        # cosine), so the max over a row is the best of the class's names.
        width = max(names_per_class, default=1)
        name_index = np.full((self.num_classes, width), self.num_names)
        start = 0
        for c, count in enumerate(names_per_class):
            name_index[c, :count] = np.arange(start, start + count)
            start += count
        self._name_index = None if width == 1 else name_index.reshape(-1)
        self.class_embeddings = self.add_weight(
            name="class_embeddings",
            shape=(self.num_names, self.hidden_dim),
            initializer="zeros",
            trainable=False,
            dtype="float32",
        )
        self.built = True

    def set_class_embeddings(self, embeddings):
        """Assigns `(num_names, hidden_dim)` embeddings, one per name."""
        embeddings = np.asarray(embeddings, dtype="float32")
        expected = (self.num_names, self.hidden_dim)
        if embeddings.shape != expected:
            raise ValueError(
                f"Class embeddings must have shape {expected}; received "
                f"{embeddings.shape}."
            )
        if not np.isfinite(embeddings).all():
            raise ValueError(
                "`class_embeddings` contain NaN or Inf values; embed the "
                "classes again (class_text_embeddings)."
            )
        zero = np.flatnonzero(~embeddings.any(axis=-1))
        if len(zero):
            raise ValueError(
                f"`class_embeddings` rows {zero[:10].tolist()} are all zeros; "
                "such a class has cosine 0 with every image. Embed it again."
            )
        self.class_embeddings.assign(l2_normalize(embeddings))

    def call(self, features):
        features = l2_normalize(ops.cast(features, "float32"))
        cosine = ops.matmul(features, ops.transpose(self.class_embeddings))
        if self._name_index is None:
            return cosine
        rank = len(cosine.shape)
        cosine = ops.pad(
            cosine, [[0, 0]] * (rank - 1) + [[0, 1]], constant_values=-2.0
        )
        cosine = ops.take(cosine, self._name_index, axis=-1)
        cosine = ops.reshape(
            cosine, ops.shape(cosine)[:-1] + (self.num_classes, -1)
        )
        return ops.max(cosine, axis=-1)

    def compute_output_spec(self, features):
        return keras.KerasTensor(
            tuple(features.shape[:-1]) + (self.num_classes,), dtype="float32"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "hidden_dim": self.hidden_dim,
                "names_per_class": list(self.names_per_class),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class ZeroShotLogits(keras.layers.Layer):
    """Class logits from the two TIPS class tokens: `cosine / temperature`.

    Args:
        cls_token: `"first"` (CLS trained on web alt-text), `"second"`
            (CLS trained on dense synthetic captions) or `"both"` (the mean
            of the two cosine similarities).
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, cls_token="first", **kwargs):
        super().__init__(**kwargs)
        if cls_token not in CLS_TOKEN_CHOICES:
            raise ValueError(
                f"`cls_token` must be one of {CLS_TOKEN_CHOICES}. Received: "
                f"cls_token={cls_token!r}"
            )
        self.cls_token = cls_token

    def call(self, similarities, temperature):
        # similarities: (B, 2, C) cosine of each class token with each class.
        if self.cls_token == "first":
            cosine = similarities[:, 0]
        elif self.cls_token == "second":
            cosine = similarities[:, 1]
        else:
            cosine = ops.mean(similarities, axis=1)
        return cosine / ops.cast(temperature, "float32")[:, None]

    def compute_output_spec(self, similarities, temperature):
        return keras.KerasTensor(
            (similarities.shape[0], similarities.shape[2]), dtype="float32"
        )

    def get_config(self):
        config = super().get_config()
        config.update({"cls_token": self.cls_token})
        return config


class ClassEmbeddingTaskMixin:
    """What the zero-shot tasks share: class names, prompts, class embeddings.

    For a `TIPSImageTask`. The task's constructor calls
    `_init_class_similarity` before it builds its functional model (this
    sets `backbone`, `preprocessor` and the `class_similarity` layer) and
    `_init_class_embeddings` after (this sets the config and the class
    embeddings).
    """

    # `from_preset(preset, class_names=[...])`: a backbone preset holds no
    # task weights, so the classes come from the caller (without
    # `num_classes`, which would make keras-hub look for task weights).
    required_preset_arguments = ("class_names",)

    def _init_class_similarity(
        self, backbone, preprocessor, class_names, prompt_templates
    ):
        """Checks the shared arguments and sets the shared layers.

        Returns the checked class names (a list) and prompt templates (a
        tuple).
        """
        check_backbone(backbone)
        class_names = check_class_name_groups(class_names)
        prompt_templates = check_prompt_templates(prompt_templates)
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.class_similarity = ClassEmbeddingSimilarity(
            len(class_names),
            backbone.hidden_dim,
            names_per_class=names_per_class(class_names),
            name="class_similarity",
        )
        return class_names, prompt_templates

    def _init_class_embeddings(
        self, class_names, prompt_templates, class_embeddings
    ):
        """Sets the config and the class embeddings (embeds the prompts)."""
        self.class_names = class_names
        self.prompt_templates = prompt_templates
        tokenizer = getattr(self.preprocessor, "tokenizer", None)
        if class_embeddings is None and restoring_without_vocabulary(
            tokenizer
        ):
            # Rebuilt from a config (e.g. `keras.saving.load_model`): the
            # tokenizer's vocabulary and the class embeddings are restored
            # with the saved assets and weights.
            return
        if class_embeddings is None:
            class_embeddings = class_text_embeddings(
                self.backbone,
                tokenizer,
                flat_class_names(class_names),
                prompt_templates,
            )
        self.class_similarity.set_class_embeddings(class_embeddings)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "class_names": self.class_names,
                "prompt_templates": list(self.prompt_templates),
            }
        )
        return config

    @property
    def class_embeddings(self):
        """The `(num_names, D)` unit text embeddings (NumPy), one per name.

        Rows follow `flat_class_names(class_names)`: one per class, or one
        per synonym of a class named by a list.
        """
        return ops.convert_to_numpy(self.class_similarity.class_embeddings)


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSZeroShotClassifier(ClassEmbeddingTaskMixin, TIPSImageTask):
    """Zero-shot image classifier: TIPS image embeddings vs. class prompts.

    Each class name is put into prompt templates, embedded by the text
    encoder and averaged into one unit vector (`class_text_embeddings`).
    An image is embedded by the vision encoder; its logits are the cosine
    similarities of a class token with every class, divided by the model's
    contrastive temperature, so `softmax(logits)` is the model's class
    probability.

    Calling the model (or `predict`) maps images to logits
    `(batch, num_classes)`. With a `preprocessor`, `predict` and
    `classify` take raw images (`0..255`, any size: they are resized by the
    preprocessor's image converter); without one they take model-ready
    float images in `[0, 1]` whose sides are multiples of 14.

    Args:
        backbone: a `keras_tips.TIPSBackbone`.
        class_names: list with one entry per class: its name, or a list of
            synonyms, of which the best-matching one scores the class
            (`classify` reports such a class by its first name).
        preprocessor: a `keras_tips.TIPSPreprocessor` (its tokenizer embeds
            the class names), or `None` when `class_embeddings` is given.
        prompt_templates: strings with one `{}`; defaults to the seven
            CLIP ImageNet templates. `SINGLE_PROMPT_TEMPLATE` is
            `("a photo of a {}.",)`.
        cls_token: `"first"`, `"second"` or `"both"`: which class token is
            compared with the class embeddings (`"both"` averages the two
            cosine similarities). TIPS aligns the first with web alt-text and
            the second with dense synthetic captions.
        class_embeddings: optional precomputed class embeddings, one row
            per name (`(num_classes, D)` without synonyms); skips embedding
            the prompts.
        **kwargs: `keras_hub.models.Task` arguments, e.g. `name`.

    Example:
    ```python
    classifier = keras_tips.tasks.TIPSZeroShotClassifier.from_preset(
        "tips_v2_b14", class_names=["cat", "dog", "car"])
    logits = classifier.predict(images)   # raw uint8 images
    classifier.classify(images, top_k=2)  # [[("cat", 0.91), ("dog", 0.08)]]
    ```
    """

    def __init__(
        self,
        backbone,
        class_names,
        preprocessor=None,
        prompt_templates=IMAGENET_PROMPT_TEMPLATES,
        cls_token="first",
        class_embeddings=None,
        **kwargs,
    ):
        # === Layers ===
        class_names, prompt_templates = self._init_class_similarity(
            backbone, preprocessor, class_names, prompt_templates
        )
        self.logits_layer = ZeroShotLogits(cls_token, name="logits")

        # === Functional model ===
        vision_encoder = backbone.vision_encoder
        images = keras.Input(shape=vision_encoder.image_shape, name="images")
        cls_embeddings = vision_encoder(images)["cls_embeddings"]
        temperature = backbone.temperature_layer(cls_embeddings[:, 0])
        similarities = self.class_similarity(cls_embeddings)
        logits = self.logits_layer(similarities, temperature)
        # Inference-only task: no optimizer unless compiled explicitly.
        kwargs.setdefault("compile", False)
        super().__init__(inputs=images, outputs=logits, **kwargs)

        # === Config ===
        self.cls_token = cls_token
        self._init_class_embeddings(
            class_names, prompt_templates, class_embeddings
        )

    def classify(self, images, top_k=5):
        """The `top_k` classes of each image with their probabilities.

        Args:
            images: a batch of images (raw with a preprocessor, else
                model-ready floats), or a list of same-size images.
            top_k: int. Classes returned per image.

        Returns:
            A list (one per image) of `(class_name, probability)` pairs,
            most probable first.
        """
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"`top_k` must be a positive int; got {top_k!r}.")
        # `predict_on_batch` applies the preprocessor (if any) and runs the
        # compiled model.
        logits = np.asarray(self.predict_on_batch(images), dtype="float32")
        logits = logits - logits.max(axis=-1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
        k = min(top_k, len(self.class_names))
        order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
        return [
            [
                (display_class_name(self.class_names[j]), float(row[j]))
                for j in indices
            ]
            for row, indices in zip(probabilities, order)
        ]

    def get_config(self):
        config = super().get_config()
        config.update({"cls_token": self.cls_token})
        return config
