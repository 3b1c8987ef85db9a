"""`tf.data` input pipelines for TIPS pretraining and evaluation.

Records are `tf.train.Example`s in sharded TFRecord files with the features

* `image`: bytes, an encoded JPEG or PNG (RGB; other formats that
  `tf.io.decode_image` reads work too),
* `caption_noisy`: bytes list with 0 or 1 value (web alt-text; may be
  empty or missing),
* `caption_synthetic`: bytes list with 0..N values (synthetic captions at
  several granularities; may be missing),
* `id`: bytes,
* eval shards only: `segmentation` (PNG, one channel of class ids).

Other features are ignored.

`make_pretraining_dataset` yields batches of DINO-style multi-crop views (one
global crop, `num_local_crops` local crops), an iBOT patch mask for the
global crop and the two tokenized captions. `make_eval_dataset` yields
resized images, segmentation masks, ids and tokenized captions, in file
order and without augmentation.

Robustness: a record whose image is missing, empty or cannot be decoded (or
which is not a valid `tf.train.Example`) is dropped, never raising; a
`PipelineStats` passed as `stats=` counts such drops and missing captions.
A TFRecord file that is itself damaged (bad CRC, truncated) ends early: the
rest of that file is skipped with a warning in the TensorFlow log.

Reproducibility: every random choice (file and record shuffling, crops,
colour augmentation, masks, caption sampling) derives from `seed`; with the
same seed and files, the pipeline yields the same batches.

Example:

```python
tokenizer = TIPSTokenizer(proto="tokenizer.model", sequence_length=64)
stats = PipelineStats()
dataset = make_pretraining_dataset(
    "data/train-*.tfrecord", tokenizer, batch_size=32, seed=0, stats=stats
)
batch = next(iter(dataset))
batch["global_images"].shape   # (32, 224, 224, 3)
stats.result()                 # {"records_read": ..., ...}
```
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from training import masking

SYNTHETIC_CAPTION_SAMPLING = ("first", "random")

# Status of a parsed record.
_STATUS_OK = 0
_STATUS_MISSING_IMAGE = 1
_STATUS_CORRUPT = 2
_STATUS_END = 3  # Sentinel after the last record of a finite pass.

# torchvision / DINO augmentation constants.
_CROP_ASPECT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_CROP_ATTEMPTS = 10
_COLOR_JITTER_PROBABILITY = 0.8
_BRIGHTNESS = 0.4
_CONTRAST = 0.4
_SATURATION = 0.2
_HUE = 0.1
_GRAYSCALE_PROBABILITY = 0.2
_BLUR_KERNEL_SIZE = 9
_BLUR_SIGMA = (0.1, 2.0)
_SOLARIZE_THRESHOLD = 128.0 / 255.0


class PipelineStats:
    """Counters of what an input pipeline read, dropped and flagged.

    Pass one instance as `stats=` to `make_pretraining_dataset` or
    `make_eval_dataset`; the pipeline adds to its counters (int64
    `tf.Variable`s, so it works in graph mode and in parallel `tf.data`
    stages) as records go through. One instance may be shared by several
    datasets; counts then add up.

    Fields (read them as Python ints, eagerly):

    * `records_read`: records that went through the decode stage (each
      pass of a repeated dataset counts again).
    * `records_dropped_missing_image`: records without an `image` value (or
      with empty bytes).
    * `records_dropped_corrupt`: records whose image could not be decoded
      (or which were not a parseable `tf.train.Example`, or had an empty
      image).
    * `captions_missing_noisy`: kept records without a non-blank noisy
      caption (`has_noisy_caption` = 0).
    * `captions_missing_synthetic`: kept records without a non-blank
      synthetic caption (`has_synthetic_caption` = 0).

    `records_dropped` is the sum of both drop counters; `records_kept` is
    `records_read - records_dropped`. Counts cover records that reached the
    end of the decode stage: while iterating, up to a few buffers' worth of
    records are in flight and not yet counted.

    Example:

    ```python
    stats = PipelineStats()
    dataset = make_eval_dataset("eval-*.tfrecord", tokenizer, 224, 8,
                                stats=stats)
    for batch in dataset:
        ...
    print(stats.result())
    stats.reset()
    ```
    """

    FIELDS = (
        "records_read",
        "records_dropped_missing_image",
        "records_dropped_corrupt",
        "captions_missing_noisy",
        "captions_missing_synthetic",
    )

    def __init__(self):
        with tf.init_scope(), tf.device("/cpu:0"):
            self._variables = {
                field: tf.Variable(
                    0, dtype=tf.int64, trainable=False, name=field
                )
                for field in self.FIELDS
            }

    def __getattr__(self, name):
        variables = self.__dict__.get("_variables", {})
        if name in variables:
            return int(variables[name].numpy())
        raise AttributeError(
            f"`PipelineStats` has no attribute {name!r}; fields are "
            f"{self.FIELDS}."
        )

    @property
    def records_dropped(self):
        return self.records_dropped_missing_image + self.records_dropped_corrupt

    @property
    def records_kept(self):
        return self.records_read - self.records_dropped

    def variable(self, field):
        """The `tf.Variable` behind `field` (for use inside graphs)."""
        if field not in self._variables:
            raise ValueError(
                f"Unknown field {field!r}; fields are {self.FIELDS}."
            )
        return self._variables[field]

    def result(self):
        """All counters (and `records_dropped`, `records_kept`) as a dict."""
        values = {field: getattr(self, field) for field in self.FIELDS}
        values["records_dropped"] = (
            values["records_dropped_missing_image"]
            + values["records_dropped_corrupt"]
        )
        values["records_kept"] = values["records_read"] - values["records_dropped"]
        return values

    def reset(self):
        """Sets every counter back to 0."""
        for variable in self._variables.values():
            variable.assign(0)

    def _add_all(self, increments):
        """Graph-mode update: `increments` maps field -> int64 scalar."""
        return [
            self._variables[field].assign_add(tf.cast(value, tf.int64))
            for field, value in increments.items()
        ]

    def __repr__(self):
        items = ", ".join(f"{k}={v}" for k, v in self.result().items())
        return f"PipelineStats({items})"


# ---------------------------------------------------------------------------
# Argument checks and file listing.


def _check_positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


def _check_scale(name, scale):
    try:
        low, high = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a pair (min, max) of floats, got {scale!r}."
        ) from None
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(
            f"`{name}` must satisfy 0 < min <= max <= 1, got {scale!r}."
        )
    return low, high


def _check_probability(name, value):
    if not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1], got {value!r}.")
    return float(value)


def _image_size_pair(name, size):
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be an int or a (height, width) pair, got {size!r}."
        ) from None
    if height < 1 or width < 1:
        raise ValueError(f"`{name}` must be positive, got {size!r}.")
    return height, width


def list_files(file_pattern):
    """Sorted files matching a glob pattern (or a list of patterns/paths).

    Args:
        file_pattern: str or list of str; glob patterns (`*`, `?`, `[...]`)
            or plain paths, local or any filesystem `tf.io.gfile` reads.

    Returns:
        Sorted list of unique file paths.

    Raises:
        ValueError: naming the pattern, if a pattern matches no file (or
            a plain path does not exist).

    Example:

    ```python
    files = list_files("data/train-*.tfrecord")
    ```
    """
    if isinstance(file_pattern, (str, bytes)):
        patterns = [file_pattern]
    else:
        try:
            patterns = list(file_pattern)
        except TypeError:
            raise ValueError(
                "`file_pattern` must be a str or a list of str, got "
                f"{file_pattern!r}."
            ) from None
    if not patterns:
        raise ValueError("`file_pattern` is an empty list: no input files.")
    files = set()
    for pattern in patterns:
        if isinstance(pattern, bytes):
            pattern = pattern.decode("utf-8")
        if not isinstance(pattern, str):
            raise ValueError(
                f"`file_pattern` entries must be str, got {pattern!r}."
            )
        matches = tf.io.gfile.glob(pattern)
        if not matches:
            raise ValueError(
                f"No input files match `file_pattern` {pattern!r} (empty glob "
                "or missing file)."
            )
        files.update(matches)
    return sorted(files)


# ---------------------------------------------------------------------------
# Parsing, decoding and drop accounting.


def _parse_and_decode(index, record, is_end, with_segmentation):
    """Parses one serialized example and decodes its image.

    Never fails on a missing image (status `_STATUS_MISSING_IMAGE`); a record
    that cannot be parsed or decoded raises, and the following
    `ignore_errors` drops it (counted later from the gap in `index`).
    """
    features = {
        "image": tf.io.VarLenFeature(tf.string),
        "caption_noisy": tf.io.VarLenFeature(tf.string),
        "caption_synthetic": tf.io.VarLenFeature(tf.string),
        "id": tf.io.VarLenFeature(tf.string),
    }
    if with_segmentation:
        features["segmentation"] = tf.io.VarLenFeature(tf.string)
    parsed = tf.io.parse_single_example(record, features)
    parsed = {k: tf.sparse.to_dense(v, default_value="") for k, v in parsed.items()}

    image_values = parsed["image"]
    has_image = tf.logical_and(
        tf.size(image_values) > 0,
        tf.strings.length(tf.concat([image_values, [""]], 0)[0]) > 0,
    )

    def decode():
        image = tf.io.decode_image(
            image_values[0], channels=3, expand_animations=False
        )
        return tf.ensure_shape(image, [None, None, 3])

    image = tf.cond(has_image, decode, lambda: tf.zeros([0, 0, 3], tf.uint8))
    shape = tf.shape(image)
    non_empty = tf.logical_and(shape[0] > 0, shape[1] > 0)
    status = tf.where(
        is_end,
        _STATUS_END,
        tf.where(
            has_image,
            tf.where(non_empty, _STATUS_OK, _STATUS_CORRUPT),
            _STATUS_MISSING_IMAGE,
        ),
    )
    element = {
        "index": index,
        "status": status,
        "image": image,
        "noisy_captions": parsed["caption_noisy"],
        "synthetic_captions": parsed["caption_synthetic"],
        "id": tf.concat([parsed["id"], [""]], 0)[0],
    }
    if with_segmentation:
        segmentation_values = parsed["segmentation"]
        has_segmentation = tf.size(segmentation_values) > 0

        def decode_segmentation():
            mask = tf.io.decode_png(segmentation_values[0], channels=1)
            return tf.ensure_shape(mask, [None, None, 1])

        element["segmentation"] = tf.cond(
            has_segmentation,
            decode_segmentation,
            lambda: tf.zeros([0, 0, 1], tf.uint8),
        )
        element["has_segmentation"] = has_segmentation
    return element


def _first_non_blank(captions):
    """First caption that is not blank, and whether there is one."""
    keep = tf.strings.length(tf.strings.strip(captions)) > 0
    captions = tf.boolean_mask(captions, keep)
    return tf.concat([captions, [""]], 0)[0], tf.size(captions) > 0


def _caption_flags(element):
    _, has_noisy = _first_non_blank(element["noisy_captions"])
    _, has_synthetic = _first_non_blank(element["synthetic_captions"])
    return has_noisy, has_synthetic


def _decoded_records(records, stats, with_segmentation):
    """Parse + decode + drop bad records (+ count them in `stats`).

    `records` yields serialized examples. Records are numbered before the
    (order-preserving) decode stage; records dropped by `ignore_errors`
    leave gaps in the numbering, which a `scan` turns into counts. A
    sentinel element after the last record makes trailing drops visible for
    finite datasets.
    """
    sentinel = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True)))
    records = records.map(lambda record: (record, tf.constant(False)))
    records = records.concatenate(sentinel).enumerate()
    decoded = records.map(
        lambda index, item: _parse_and_decode(
            index, item[0], item[1], with_segmentation
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        # Order must be kept for the gap counting below.
        deterministic=True,
    ).ignore_errors()

    if stats is not None:

        def account(last_index, element):
            index = element["index"]
            status = element["status"]
            is_end = tf.equal(status, _STATUS_END)
            # Records between the previous survivor and this one raised.
            lost = index - last_index - 1
            has_noisy, has_synthetic = _caption_flags(element)
            is_ok = tf.equal(status, _STATUS_OK)
            one = tf.constant(1, tf.int64)
            zero = tf.constant(0, tf.int64)
            updates = stats._add_all(
                {
                    "records_read": lost + tf.where(is_end, zero, one),
                    "records_dropped_corrupt": lost
                    + tf.where(tf.equal(status, _STATUS_CORRUPT), one, zero),
                    "records_dropped_missing_image": tf.where(
                        tf.equal(status, _STATUS_MISSING_IMAGE), one, zero
                    ),
                    "captions_missing_noisy": tf.where(
                        tf.logical_and(is_ok, tf.logical_not(has_noisy)), one, zero
                    ),
                    "captions_missing_synthetic": tf.where(
                        tf.logical_and(is_ok, tf.logical_not(has_synthetic)),
                        one,
                        zero,
                    ),
                }
            )
            with tf.control_dependencies(updates):
                element = dict(element)
                element["status"] = tf.identity(status)
            return index, element

        decoded = decoded.scan(tf.constant(-1, tf.int64), account)

    return decoded.filter(lambda element: tf.equal(element["status"], _STATUS_OK))


def _read_records(files, *, shuffle_files, file_seed, num_parallel_reads, deterministic):
    """Interleaved TFRecord reading; a damaged file ends early with a warning."""
    file_dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        file_dataset = file_dataset.shuffle(
            len(files), seed=file_seed, reshuffle_each_iteration=True
        )
    cycle_length = min(num_parallel_reads, len(files))
    parallel = {}
    if cycle_length > 1:
        parallel = {"num_parallel_calls": cycle_length, "deterministic": deterministic}
    return file_dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path).ignore_errors(log_warning=True),
        cycle_length=cycle_length,
        block_length=1,
        **parallel,
    )


# ---------------------------------------------------------------------------
# Augmentation (DINO multi-crop), stateless.


def _random_resized_crop_window(height, width, scale, u):
    """torchvision `RandomResizedCrop.get_params`, vectorized over tries.

    `u` holds 4 * `_CROP_ATTEMPTS` uniforms. Returns `(top, left, h, w)`.
    """
    u = tf.reshape(u, [4, _CROP_ATTEMPTS])
    height_f = tf.cast(height, tf.float32)
    width_f = tf.cast(width, tf.float32)
    area = height_f * width_f
    target_area = area * (scale[0] + u[0] * (scale[1] - scale[0]))
    log_low, log_high = (math.log(r) for r in _CROP_ASPECT_RATIO)
    aspect = tf.exp(log_low + u[1] * (log_high - log_low))
    crop_w = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
    crop_h = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
    valid = (crop_w > 0) & (crop_h > 0) & (crop_w <= width) & (crop_h <= height)
    first = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)
    found = tf.reduce_any(valid)
    sampled_h = crop_h[first]
    sampled_w = crop_w[first]
    sampled_top = tf.cast(
        tf.floor(u[2][first] * tf.cast(height - sampled_h + 1, tf.float32)), tf.int32
    )
    sampled_left = tf.cast(
        tf.floor(u[3][first] * tf.cast(width - sampled_w + 1, tf.float32)), tf.int32
    )
    # Fallback: central crop with the aspect ratio clamped to the range.
    in_ratio = width_f / height_f
    low_ratio, high_ratio = _CROP_ASPECT_RATIO
    fallback_w = tf.where(
        in_ratio > high_ratio,
        tf.cast(tf.round(height_f * high_ratio), tf.int32),
        width,
    )
    fallback_h = tf.where(
        in_ratio < low_ratio,
        tf.cast(tf.round(width_f / low_ratio), tf.int32),
        height,
    )
    fallback_w = tf.clip_by_value(fallback_w, 1, width)
    fallback_h = tf.clip_by_value(fallback_h, 1, height)
    crop_h = tf.where(found, sampled_h, fallback_h)
    crop_w = tf.where(found, sampled_w, fallback_w)
    top = tf.where(found, sampled_top, (height - fallback_h) // 2)
    left = tf.where(found, sampled_left, (width - fallback_w) // 2)
    top = tf.clip_by_value(top, 0, height - crop_h)
    left = tf.clip_by_value(left, 0, width - crop_w)
    return top, left, crop_h, crop_w


def _grayscale(image):
    return tf.image.rgb_to_grayscale(image)


def _blend(image, other, factor):
    return tf.clip_by_value(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def _color_jitter(image, u):
    """torchvision `ColorJitter(0.4, 0.4, 0.2, 0.1)`: random order of the
    four adjustments. `u` holds 8 uniforms (4 factors, 4 for the order)."""
    brightness = 1.0 - _BRIGHTNESS + 2.0 * _BRIGHTNESS * u[0]
    contrast = 1.0 - _CONTRAST + 2.0 * _CONTRAST * u[1]
    saturation = 1.0 - _SATURATION + 2.0 * _SATURATION * u[2]
    hue = -_HUE + 2.0 * _HUE * u[3]
    order = tf.argsort(u[4:8])

    branches = [
        lambda x: tf.clip_by_value(x * brightness, 0.0, 1.0),
        lambda x: _blend(x, tf.reduce_mean(_grayscale(x)), contrast),
        lambda x: _blend(x, _grayscale(x), saturation),
        lambda x: tf.clip_by_value(tf.image.adjust_hue(x, hue), 0.0, 1.0),
    ]
    for step in range(4):
        image = tf.switch_case(
            order[step],
            [lambda fn=fn, x=image: fn(x) for fn in branches],
        )
    return image


def _gaussian_blur(image, sigma):
    """Separable Gaussian blur, kernel 9, reflect padding (DINOv2)."""
    radius = _BLUR_KERNEL_SIZE // 2
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    vertical = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 3, 1])
    horizontal = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, 3, 1])
    padded = tf.pad(
        image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT"
    )
    blurred = tf.nn.depthwise_conv2d(padded, vertical, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, horizontal, [1, 1, 1, 1], "VALID")
    return blurred[0]


# Uniforms used per crop: crop window, flip, jitter gate + 8, grayscale,
# blur gate + sigma, solarize.
_CROP_UNIFORMS = 4 * _CROP_ATTEMPTS + 1 + 9 + 1 + 2 + 1


def _augment_crop(
    image,
    seed,
    size,
    scale,
    blur_probability,
    solarize_probability,
    flip_probability=0.5,
    color_jitter_probability=None,
    grayscale_probability=None,
):
    """One DINO view of a uint8 `(H, W, 3)` image: float32 `(size, size, 3)`.

    Random resized crop (area `scale`, aspect 3/4..4/3, bicubic with
    antialiasing), horizontal flip (p `flip_probability`), colour jitter
    (p 0.8 by default), grayscale (p 0.2 by default), Gaussian blur
    (p `blur_probability`, sigma 0.1..2), solarization
    (p `solarize_probability`).
    """
    if color_jitter_probability is None:
        color_jitter_probability = _COLOR_JITTER_PROBABILITY
    if grayscale_probability is None:
        grayscale_probability = _GRAYSCALE_PROBABILITY
    u = tf.random.stateless_uniform([_CROP_UNIFORMS], seed=seed)
    shape = tf.shape(image)
    top, left, crop_h, crop_w = _random_resized_crop_window(
        shape[0], shape[1], scale, u[: 4 * _CROP_ATTEMPTS]
    )
    u = u[4 * _CROP_ATTEMPTS :]
    crop = tf.slice(image, [top, left, 0], [crop_h, crop_w, 3])
    view = tf.image.resize(
        crop, [size, size], method="bicubic", antialias=True
    )
    view = tf.clip_by_value(view / 255.0, 0.0, 1.0)
    view = tf.cond(
        u[0] < flip_probability, lambda: tf.reverse(view, axis=[1]), lambda: view
    )
    view = tf.cond(
        u[1] < color_jitter_probability,
        lambda: _color_jitter(view, u[2:10]),
        lambda: view,
    )
    view = tf.cond(
        u[10] < grayscale_probability,
        lambda: tf.tile(_grayscale(view), [1, 1, 3]),
        lambda: view,
    )
    if blur_probability > 0.0:
        sigma = _BLUR_SIGMA[0] + u[12] * (_BLUR_SIGMA[1] - _BLUR_SIGMA[0])
        view = tf.cond(
            u[11] < blur_probability,
            lambda: _gaussian_blur(view, sigma),
            lambda: view,
        )
    if solarize_probability > 0.0:
        view = tf.cond(
            u[13] < solarize_probability,
            lambda: tf.where(view >= _SOLARIZE_THRESHOLD, 1.0 - view, view),
            lambda: view,
        )
    view = tf.clip_by_value(view, 0.0, 1.0)
    return tf.ensure_shape(view, [size, size, 3])


def _select_synthetic_caption(captions, sampling, u):
    """First, or uniformly random, non-blank synthetic caption."""
    keep = tf.strings.length(tf.strings.strip(captions)) > 0
    captions = tf.boolean_mask(captions, keep)
    count = tf.size(captions)
    if sampling == "random":
        index = tf.cast(tf.floor(u * tf.cast(count, tf.float32)), tf.int32)
        index = tf.clip_by_value(index, 0, tf.maximum(count - 1, 0))
    else:
        index = 0
    caption = tf.concat([captions, [""]], 0)[index]
    return caption, count > 0


# ---------------------------------------------------------------------------
# Tokenization.


def _vocabulary_size(tokenizer):
    """The tokenizer's vocabulary size if it reports one, else None."""
    size = getattr(tokenizer, "vocabulary_size", None)
    if not callable(size):
        return None
    try:
        size = size()
    except Exception:  # e.g. a tokenizer whose vocabulary loads later
        return None
    return int(size) if isinstance(size, numbers.Integral) else None


def _checked_token_ids(ids, vocabulary_size):
    """`ids` after in-graph checks that they lie in `[0, vocabulary_size)`.

    The values are only known while the pipeline runs, so an id out of range
    stops iteration with an `InvalidArgumentError` carrying this message
    (instead of reaching the embedding, where JAX returns NaN).
    """
    where = (
        f"[0, {vocabulary_size}), the vocabulary of the tokenizer"
        if vocabulary_size is not None
        else "[0, vocabulary size)"
    )
    message = (
        f"`tokenizer` produced token ids outside {where}. Use the model's "
        "TIPSTokenizer; ids of another tokenizer do not match the text "
        "encoder's embedding table."
    )
    wide = tf.cast(ids, tf.int64)  # no wrap-around of the bounds
    checks = [
        tf.debugging.assert_greater_equal(
            wide, tf.constant(0, tf.int64), message=message
        )
    ]
    if vocabulary_size is not None:
        checks.append(
            tf.debugging.assert_less(
                wide, tf.constant(vocabulary_size, tf.int64), message=message
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(ids)


def _tokenize(tokenizer, texts, present, sequence_length):
    """Token ids `(B, L)` int32 and padding mask; zeros where not present."""
    ids = tokenizer(texts)
    if isinstance(ids, tf.RaggedTensor):
        ids = ids.to_tensor(default_value=0)
    ids = tf.convert_to_tensor(ids)
    if not ids.dtype.is_integer:
        raise TypeError(
            "`tokenizer` must return integer token ids; got dtype "
            f"{ids.dtype.name}. Casting would silently truncate; fix the "
            "tokenizer (TIPSTokenizer returns int32)."
        )
    if ids.shape.rank is not None and ids.shape.rank != 2:
        raise ValueError(
            "`tokenizer` must map a (B,) string tensor to (B, sequence_length) "
            f"token ids; got rank {ids.shape.rank} output of shape {ids.shape}."
        )
    ids = tf.cast(_checked_token_ids(ids, _vocabulary_size(tokenizer)), tf.int32)
    ids = ids[:, :sequence_length]
    ids = tf.pad(ids, [[0, 0], [0, sequence_length - tf.shape(ids)[1]]])
    ids = tf.ensure_shape(ids, [None, sequence_length])
    ids = ids * tf.cast(present, tf.int32)[:, None]
    padding_mask = tf.cast(tf.not_equal(ids, 0), tf.int32)
    return ids, padding_mask


def _tokenize_batch(tokenizer, sequence_length):
    def tokenize(batch):
        batch = dict(batch)
        for kind in ("noisy", "synthetic"):
            texts = batch.pop(f"{kind}_caption")
            ids, padding_mask = _tokenize(
                tokenizer, texts, batch[f"has_{kind}_caption"] > 0, sequence_length
            )
            batch[f"{kind}_token_ids"] = ids
            batch[f"{kind}_padding_mask"] = padding_mask
        return batch

    return tokenize


# ---------------------------------------------------------------------------
# Public pipelines.


def make_pretraining_dataset(
    file_pattern,
    tokenizer,
    *,
    batch_size,
    global_crop_size=224,
    local_crop_size=98,
    num_local_crops=6,
    global_crop_scale=(0.32, 1.0),
    local_crop_scale=(0.05, 0.32),
    patch_size=14,
    mask_ratio=0.75,
    mask_mode="random",
    sequence_length=64,
    synthetic_caption_sampling="first",
    global_blur_probability=0.5,
    local_blur_probability=0.5,
    global_solarize_probability=0.2,
    caption_safe_global_crop=False,
    shuffle_buffer=4096,
    seed=None,
    drop_remainder=True,
    repeat=True,
    num_parallel_reads=8,
    stats=None,
):
    """Batches of TIPS pretraining inputs from TFRecord shards.

    Pipeline: list files -> (seeded) file shuffle -> interleaved parallel
    reads -> record shuffle -> repeat -> parse + decode (bad records dropped
    and counted) -> per-image DINO multi-crop augmentation, patch mask and
    caption choice -> batch -> tokenize -> prefetch.

    Augmentation follows DINO / DINOv2, with TIPS' single global crop:
    random resized crop (area `global_crop_scale` / `local_crop_scale` of
    the image, aspect ratio 3/4..4/3, bicubic), horizontal flip (p 0.5),
    colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1;
    p 0.8), grayscale (p 0.2), Gaussian blur (sigma 0.1..2, kernel 9) and,
    on the global crop only, solarization (p 0.2). DINO blurs its first
    global crop always and its second with p 0.1; TIPS keeps one global
    crop which is also the image of the image-text contrastive loss, so
    the default blurs it with p 0.5 (`global_blur_probability`), like the
    local crops. Images come out in [0, 1], not normalized.

    Args:
        file_pattern: glob pattern or list of patterns/paths of TFRecord
            files.
        tokenizer: callable mapping a `(B,)` `tf.string` tensor to int
            token ids `(B, sequence_length)` (pad id 0); shorter or ragged
            outputs are padded, longer ones truncated. Runs inside
            `tf.data`, so it must be TF-traceable (e.g. `TIPSTokenizer`).
            Non-integer outputs raise a `TypeError` here; ids below 0 (or
            at least `tokenizer.vocabulary_size()`, when the tokenizer has
            that method) stop iteration with an `InvalidArgumentError`
            naming the problem.
        batch_size: int, images per batch.
        global_crop_size: int, side of the global crop (multiple of
            `patch_size`).
        local_crop_size: int, side of the local crops.
        num_local_crops: int >= 0, local crops per image.
        global_crop_scale: `(min, max)` area fraction of the global crop.
        local_crop_scale: `(min, max)` area fraction of local crops.
        patch_size: int, ViT patch size; the mask grid is
            `global_crop_size // patch_size` square.
        mask_ratio: float in [0, 1], fraction of masked patches.
        mask_mode: `"random"` or `"block"` (see `training.masking`).
        sequence_length: int, token sequence length.
        synthetic_caption_sampling: `"first"` (the first non-blank synthetic
            caption) or `"random"` (TIPSv2: uniform among a record's
            non-blank synthetic captions, drawn anew each time).
        global_blur_probability: float, blur probability of the global crop.
        local_blur_probability: float, blur probability of local crops.
        global_solarize_probability: float, solarization probability of the
            global crop.
        caption_safe_global_crop: bool. No flip, colour jitter, grayscale
            or solarization on the global crop, so captions naming colours and left/right
            positions stay true of it (local crops keep full DINO
            augmentation).
        shuffle_buffer: int, record shuffle buffer, in serialized records
            (memory: about `shuffle_buffer` times the mean encoded image
            size). 0 or 1: no shuffling; files are then read in sorted
            order, interleaved.
        seed: int or None. With an int, the output is reproducible (same
            seed, same files -> same batches). None: random.
        drop_remainder: bool, drop the last incomplete batch.
        repeat: bool, repeat forever (reshuffling each pass).
        num_parallel_reads: int, files read at once (interleave cycle).
        stats: optional `PipelineStats` to count records and drops.

    Returns:
        `tf.data.Dataset` of dicts:
        `"global_images"` `(B, G, G, 3)` float32 in [0, 1];
        `"local_images"` `(B, V, L, L, 3)` float32 in [0, 1];
        `"patch_mask"` `(B, G/p, G/p)` bool, True = masked;
        `"noisy_token_ids"`, `"noisy_padding_mask"`,
        `"synthetic_token_ids"`, `"synthetic_padding_mask"` `(B, seq)`
        int32 (mask 1 = real token; all zeros where the caption is
        missing); `"has_noisy_caption"`, `"has_synthetic_caption"` `(B,)`
        float32, 0 where the caption is missing or blank.

    Raises:
        ValueError: on a bad argument, or when `file_pattern` matches no
            file (the message names the pattern).

    Example:

    ```python
    dataset = make_pretraining_dataset(
        "train-*.tfrecord", tokenizer, batch_size=8, global_crop_size=56,
        local_crop_size=28, num_local_crops=2, seed=0)
    batch = next(iter(dataset))
    ```
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("global_crop_size", global_crop_size)
    _check_positive_int("local_crop_size", local_crop_size)
    _check_positive_int("patch_size", patch_size)
    _check_positive_int("sequence_length", sequence_length)
    _check_positive_int("num_parallel_reads", num_parallel_reads)
    if (
        not isinstance(num_local_crops, numbers.Integral)
        or isinstance(num_local_crops, bool)
        or num_local_crops < 0
    ):
        raise ValueError(
            f"`num_local_crops` must be an int >= 0, got {num_local_crops!r}."
        )
    if global_crop_size % patch_size:
        raise ValueError(
            f"`global_crop_size` ({global_crop_size}) must be a multiple of "
            f"`patch_size` ({patch_size})."
        )
    global_crop_scale = _check_scale("global_crop_scale", global_crop_scale)
    local_crop_scale = _check_scale("local_crop_scale", local_crop_scale)
    global_blur_probability = _check_probability(
        "global_blur_probability", global_blur_probability
    )
    local_blur_probability = _check_probability(
        "local_blur_probability", local_blur_probability
    )
    global_solarize_probability = _check_probability(
        "global_solarize_probability", global_solarize_probability
    )
    if mask_mode not in masking.MASK_MODES:
        raise ValueError(
            f"`mask_mode` must be one of {masking.MASK_MODES}, got {mask_mode!r}."
        )
    grid = global_crop_size // patch_size
    masking.num_masked_patches(grid, grid, mask_ratio)  # Validates the ratio.
    if synthetic_caption_sampling not in SYNTHETIC_CAPTION_SAMPLING:
        raise ValueError(
            "`synthetic_caption_sampling` must be one of "
            f"{SYNTHETIC_CAPTION_SAMPLING}, got {synthetic_caption_sampling!r}."
        )
    if (
        not isinstance(shuffle_buffer, numbers.Integral)
        or isinstance(shuffle_buffer, bool)
        or shuffle_buffer < 0
    ):
        raise ValueError(
            f"`shuffle_buffer` must be an int >= 0, got {shuffle_buffer!r}."
        )
    if seed is not None and (
        not isinstance(seed, numbers.Integral) or isinstance(seed, bool)
    ):
        raise ValueError(f"`seed` must be an int or None, got {seed!r}.")
    if stats is not None and not isinstance(stats, PipelineStats):
        raise TypeError(
            f"`stats` must be a `PipelineStats` or None, got {type(stats)}."
        )
    if not callable(tokenizer):
        raise TypeError(f"`tokenizer` must be callable, got {tokenizer!r}.")

    files = list_files(file_pattern)
    deterministic = seed is not None
    if seed is None:
        base_seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    else:
        base_seed = int(seed) % (2**31 - 1)
    shuffle = shuffle_buffer > 1

    records = _read_records(
        files,
        shuffle_files=shuffle,
        file_seed=base_seed if deterministic else None,
        num_parallel_reads=num_parallel_reads,
        deterministic=deterministic,
    )
    if shuffle:
        records = records.shuffle(
            shuffle_buffer,
            seed=(base_seed + 1) if deterministic else None,
            reshuffle_each_iteration=True,
        )
    if repeat:
        records = records.repeat()
    decoded = _decoded_records(
        records, stats, with_segmentation=False
    )

    num_seeds = 3 + num_local_crops
    # Captions describe colours and left/right positions: a caption-safe
    # global crop (the view contrasted with the captions) keeps them true:
    # no flip and nothing that changes colours (jitter, grayscale,
    # solarization). Blur changes no colour name and stays.
    global_photometric = (
        {"flip_probability": 0.0, "color_jitter_probability": 0.0,
         "grayscale_probability": 0.0}
        if caption_safe_global_crop
        else {}
    )
    if caption_safe_global_crop:
        global_solarize_probability = 0.0

    def augment(element):
        element_seed = tf.stack(
            [tf.constant(base_seed, tf.int64), element["index"]]
        )
        seeds = tf.random.experimental.stateless_split(element_seed, num_seeds)
        image = element["image"]
        global_image = _augment_crop(
            image,
            seeds[0],
            global_crop_size,
            global_crop_scale,
            global_blur_probability,
            global_solarize_probability,
            **global_photometric,
        )
        local_views = [
            _augment_crop(
                image,
                seeds[1 + i],
                local_crop_size,
                local_crop_scale,
                local_blur_probability,
                0.0,
            )
            for i in range(num_local_crops)
        ]
        if local_views:
            local_images = tf.stack(local_views)
        else:
            local_images = tf.zeros(
                [0, local_crop_size, local_crop_size, 3], tf.float32
            )
        mask = masking.patch_mask(
            mask_mode, grid, grid, mask_ratio, seeds[1 + num_local_crops]
        )
        caption_u = tf.random.stateless_uniform(
            [], seed=seeds[2 + num_local_crops]
        )
        synthetic, has_synthetic = _select_synthetic_caption(
            element["synthetic_captions"], synthetic_caption_sampling, caption_u
        )
        noisy, has_noisy = _first_non_blank(element["noisy_captions"])
        return {
            "global_images": global_image,
            "local_images": local_images,
            "patch_mask": mask,
            "noisy_caption": noisy,
            "synthetic_caption": synthetic,
            "has_noisy_caption": tf.cast(has_noisy, tf.float32),
            "has_synthetic_caption": tf.cast(has_synthetic, tf.float32),
        }

    dataset = decoded.map(
        augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
    )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(
        _tokenize_batch(tokenizer, sequence_length),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(
    file_pattern,
    tokenizer,
    image_size,
    batch_size,
    *,
    sequence_length=64,
    with_segmentation=True,
    stats=None,
):
    """Batches of evaluation inputs, in file order, without augmentation.

    Files are read one after the other in sorted order; records keep their
    order, bad records are dropped (and counted in `stats`), the last batch
    may be smaller, and the dataset is not repeated.

    Args:
        file_pattern: glob pattern or list of patterns/paths.
        tokenizer: callable as for `make_pretraining_dataset`.
        image_size: int or `(height, width)`; images are resized to it
            (bilinear, antialiased, aspect ratio not kept).
        batch_size: int.
        sequence_length: int, token sequence length.
        with_segmentation: bool, read the `segmentation` PNG feature.
        stats: optional `PipelineStats`.

    Returns:
        `tf.data.Dataset` of dicts: `"images"` `(B, H, W, 3)` float32 in
        [0, 1]; `"ids"` `(B,)` string; `"noisy_token_ids"`,
        `"noisy_padding_mask"` (noisy caption), `"synthetic_token_ids"`,
        `"synthetic_padding_mask"` (FIRST non-blank synthetic caption)
        `(B, seq)` int32; `"has_noisy_caption"`, `"has_synthetic_caption"`
        `(B,)` float32; with segmentation also `"segmentation"` `(B, H, W)`
        int32 (class ids, nearest-neighbour resized; zeros when missing) and
        `"has_segmentation"` `(B,)` float32.

    Example:

    ```python
    for batch in make_eval_dataset("eval-*.tfrecord", tokenizer, 224, 16):
        ...
    ```
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("sequence_length", sequence_length)
    height, width = _image_size_pair("image_size", image_size)
    if stats is not None and not isinstance(stats, PipelineStats):
        raise TypeError(
            f"`stats` must be a `PipelineStats` or None, got {type(stats)}."
        )
    if not callable(tokenizer):
        raise TypeError(f"`tokenizer` must be callable, got {tokenizer!r}.")
    files = list_files(file_pattern)
    records = _read_records(
        files,
        shuffle_files=False,
        file_seed=None,
        num_parallel_reads=1,
        deterministic=True,
    )
    decoded = _decoded_records(
        records, stats, with_segmentation=with_segmentation
    )

    def prepare(element):
        image = tf.image.resize(
            element["image"], [height, width], method="bilinear", antialias=True
        )
        image = tf.clip_by_value(image / 255.0, 0.0, 1.0)
        noisy, has_noisy = _first_non_blank(element["noisy_captions"])
        synthetic, has_synthetic = _first_non_blank(element["synthetic_captions"])
        output = {
            "images": tf.ensure_shape(image, [height, width, 3]),
            "ids": element["id"],
            "noisy_caption": noisy,
            "synthetic_caption": synthetic,
            "has_noisy_caption": tf.cast(has_noisy, tf.float32),
            "has_synthetic_caption": tf.cast(has_synthetic, tf.float32),
        }
        if with_segmentation:
            has_segmentation = element["has_segmentation"]
            segmentation = tf.cond(
                has_segmentation,
                lambda: tf.image.resize(
                    element["segmentation"], [height, width], method="nearest"
                ),
                lambda: tf.zeros([height, width, 1], tf.uint8),
            )
            output["segmentation"] = tf.ensure_shape(
                tf.cast(segmentation[..., 0], tf.int32), [height, width]
            )
            output["has_segmentation"] = tf.cast(has_segmentation, tf.float32)
        return output

    dataset = decoded.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=False)
    dataset = dataset.map(
        _tokenize_batch(tokenizer, sequence_length),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
