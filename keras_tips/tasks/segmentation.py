"""Zero-shot semantic segmentation with TIPS patch features and class texts."""

import math

import keras
import numpy as np
from keras import ops

from keras_tips.tasks._tips_task import TIPSImageTask
from keras_tips.tasks.zero_shot import TCL_PROMPT_TEMPLATES
from keras_tips.tasks.zero_shot import ClassEmbeddingTaskMixin


def to_unit_images(images, name="images"):
    """Images as float32 NumPy `(B, H, W, 3)` in `[0, 1]`.

    Integer images are divided by 255; float images must already lie in
    `[0, 1]`. A single `(H, W, 3)` image gets a batch axis.
    """
    if not isinstance(images, np.ndarray):
        images = ops.convert_to_numpy(images)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"`{name}` must be RGB images (H, W, 3) or (B, H, W, 3); received "
            f"shape {images.shape}."
        )
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise ValueError(f"`{name}` are empty: shape {images.shape}.")
    if np.issubdtype(images.dtype, np.integer):
        return images.astype("float32") / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"`{name}` must be numeric; received {images.dtype}.")
    images = images.astype("float32")
    if not np.isfinite(images).all():
        raise ValueError(f"`{name}` contain NaN or Inf values.")
    if images.min() < -1e-3 or images.max() > 1.0 + 1e-3:
        raise ValueError(
            f"Float `{name}` must lie in [0, 1]; received values in "
            f"[{images.min():g}, {images.max():g}]. Pass uint8 images or "
            "divide by 255."
        )
    return images


def _is_positive_int(value):
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, bool)
        and value >= 1
    )


def short_side_size(height, width, short_side):
    """`(height, width)` scaled so the shorter side is `short_side`.

    The longer side is truncated to an int, as the official evaluation's
    `ShortSideResize` does.
    """
    if width <= height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


def sliding_windows(height, width, window_size, stride):
    """`(top, bottom, left, right)` of the windows covering an image.

    Windows of `window_size` start every `stride` pixels; the last row and
    column of windows is shifted back to end at the image border, and an
    image smaller than a window gets one window over all of it (the layout
    of the official TIPS / TCL sliding-window inference).
    """
    rows = max(height - window_size + stride - 1, 0) // stride + 1
    cols = max(width - window_size + stride - 1, 0) // stride + 1
    windows = []
    for i in range(rows):
        for j in range(cols):
            bottom = min(i * stride + window_size, height)
            right = min(j * stride + window_size, width)
            windows.append(
                (
                    max(bottom - window_size, 0),
                    bottom,
                    max(right - window_size, 0),
                    right,
                )
            )
    return windows


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSZeroShotSegmenter(ClassEmbeddingTaskMixin, TIPSImageTask):
    """Zero-shot semantic segmentation: dense TIPS features vs. class texts.

    Follows the official TIPS zero-shot segmentation evaluation. Patch
    features are read out MaskCLIP-style (`value_attention_patches`: the
    last block's attention replaced by its value projection); each patch's
    cosine similarity with every class text embedding (an ensemble of the
    TCL prompt templates) is upsampled bilinearly to pixels and turned into
    class probabilities with a softmax over classes (of the raw cosines, as
    the official code does).

    Calling the model maps float images `(B, H, W, 3)` in `[0, 1]` (sides
    multiples of 14) to patch-level cosine similarities
    `(B, H / 14, W / 14, num_classes)`. `segment()` does the full
    inference on images of any size: optional short-side resizing,
    sliding windows (each window resized to a multiple of 14 if needed),
    per-pixel averaging of the windows' probabilities and upsampling back
    to the input size. `segment_masks()` returns the argmax class maps.

    Args:
        backbone: a `keras_tips.TIPSBackbone`.
        class_names: list with one entry per class: its name, or a list of
            synonyms, of which the best-matching one scores each patch
            (e.g. `[["sky", "clouds"], "tree"]`; a background is often best
            named by the stuff it shows).
        preprocessor: a `keras_tips.TIPSPreprocessor` whose tokenizer embeds
            the class names (its image converter is not used by
            `segment()`, which keeps the input resolution).
        prompt_templates: strings with one `{}`; defaults to the TCL
            templates of the official evaluation.
        class_embeddings: optional precomputed class embeddings, one row
            per name (`(num_classes, D)` without synonyms).
        **kwargs: `keras_hub.models.Task` arguments.

    Example:
    ```python
    segmenter = keras_tips.tasks.TIPSZeroShotSegmenter.from_preset(
        "tips_v2_b14", class_names=["sky", "tree", "person"])
    masks = segmenter.segment_masks(
        image_uint8, short_side=448, window_size=448, stride=336)
    masks.shape  # (1, H, W), values in [0, 3)
    ```
    """

    def __init__(
        self,
        backbone,
        class_names,
        preprocessor=None,
        prompt_templates=TCL_PROMPT_TEMPLATES,
        class_embeddings=None,
        **kwargs,
    ):
        # === Layers ===
        class_names, prompt_templates = self._init_class_similarity(
            backbone, preprocessor, class_names, prompt_templates
        )

        # === Functional model ===
        vision_encoder = backbone.vision_encoder
        images = keras.Input(shape=(None, None, 3), name="images")
        patches = vision_encoder.value_attention_patches(images)
        similarities = self.class_similarity(patches)
        # Inference-only task: no optimizer unless compiled explicitly.
        kwargs.setdefault("compile", False)
        super().__init__(inputs=images, outputs=similarities, **kwargs)

        # === Config ===
        self.patch_size = vision_encoder.patch_size
        self._init_class_embeddings(
            class_names, prompt_templates, class_embeddings
        )

    def preprocess_samples(self, x, y=None, sample_weight=None):
        # No image converter: `segment()` feeds windows of their own size
        # through `predict_on_batch`.
        if isinstance(x, dict):
            x = x["images"]
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def window_probabilities(self, windows):
        """Class probabilities of image windows at their own resolution.

        Args:
            windows: float `(B, h, w, 3)` in `[0, 1]`, any `h`, `w`.

        Returns:
            float32 NumPy `(B, h, w, num_classes)`: softmax over classes of
            the patch cosines, bilinearly upsampled to the window.
        """
        height, width = windows.shape[1], windows.shape[2]
        patch = self.patch_size
        model_size = (
            math.ceil(height / patch) * patch,
            math.ceil(width / patch) * patch,
        )
        inputs = ops.convert_to_tensor(windows, "float32")
        if model_size != (height, width):
            # As the official code: bicubic resize up to a multiple of 14.
            inputs = ops.clip(
                ops.image.resize(
                    inputs, model_size, interpolation="bicubic",
                    antialias=False,
                ),
                0.0,
                1.0,
            )
        # Compiled inference (one trace per window size).
        cosine = ops.convert_to_tensor(self.predict_on_batch(inputs))
        cosine = ops.image.resize(
            cosine, (height, width), interpolation="bilinear", antialias=False
        )
        return ops.convert_to_numpy(ops.softmax(cosine, axis=-1))

    def segment(
        self,
        images,
        short_side=None,
        window_size=None,
        stride=None,
        callback=None,
    ):
        """Per-pixel class probabilities of images of any size.

        Args:
            images: `(H, W, 3)` or `(B, H, W, 3)` images, uint8 `0..255` or
                float `[0, 1]`; any height and width.
            short_side: optional int. Resize (bicubic) so the shorter side
                has this length before inference (448 in the official
                evaluation); results are upsampled back to the input size.
            window_size: optional int. Sliding-window side in pixels (448 in
                the official evaluation). `None`: one pass over the whole
                image.
            stride: int. Window step; defaults to `3 * window_size // 4`
                (336 for 448).
            callback: optional `callback(done, total)` called after each
                window, e.g. to drive a progress bar.

        Returns:
            float32 NumPy `(B, H, W, num_classes)`; each pixel sums to 1.
        """
        images = to_unit_images(images)
        batch, height, width = images.shape[:3]
        work = images
        if short_side is not None:
            if not _is_positive_int(short_side):
                raise ValueError(
                    f"`short_side` must be a positive int; got {short_side!r}."
                )
            size = short_side_size(height, width, short_side)
            if size != (height, width):
                work = ops.convert_to_numpy(
                    ops.clip(
                        ops.image.resize(
                            images, size, interpolation="bicubic",
                            antialias=True,
                        ),
                        0.0,
                        1.0,
                    )
                )
        work_height, work_width = work.shape[1:3]
        if window_size is None:
            windows = [(0, work_height, 0, work_width)]
        else:
            if not _is_positive_int(window_size):
                raise ValueError(
                    "`window_size` must be a positive int; got "
                    f"{window_size!r}."
                )
            stride = stride if stride is not None else max(
                3 * window_size // 4, 1
            )
            if not _is_positive_int(stride):
                raise ValueError(
                    f"`stride` must be a positive int; got {stride!r}."
                )
            windows = sliding_windows(
                work_height, work_width, window_size, stride
            )
        num_classes = len(self.class_names)
        totals = np.zeros(
            (batch, work_height, work_width, num_classes), "float32"
        )
        counts = np.zeros((work_height, work_width), "float32")
        for done, (top, bottom, left, right) in enumerate(windows, 1):
            totals[:, top:bottom, left:right] += self.window_probabilities(
                work[:, top:bottom, left:right]
            )
            counts[top:bottom, left:right] += 1.0
            if callback is not None:
                callback(done, len(windows))
        probabilities = totals / counts[None, :, :, None]
        if (work_height, work_width) != (height, width):
            probabilities = ops.convert_to_numpy(
                ops.image.resize(
                    probabilities, (height, width), interpolation="bilinear",
                    antialias=False,
                )
            )
        return probabilities

    def segment_masks(self, images, **kwargs):
        """The most probable class per pixel: int32 `(B, H, W)`.

        Takes the arguments of `segment()`.
        """
        probabilities = self.segment(images, **kwargs)
        return np.argmax(probabilities, axis=-1).astype("int32")
