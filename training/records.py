"""The TFRecord format of TIPS training data: schema, writing, reading.

One home for the record schema. Records are `tf.train.Example`s in sharded
TFRecord files with the features

* `image` (`IMAGE`): bytes, an encoded JPEG or PNG (RGB; other formats that
  `tf.io.decode_image` reads work too),
* `caption_noisy` (`CAPTION_NOISY`): bytes list with 0 or 1 value (web
  alt-text; may be empty or missing),
* `caption_synthetic` (`CAPTION_SYNTHETIC`): bytes list with 0..N values
  (synthetic captions at several granularities; may be missing),
* `id` (`ID`): bytes,
* evaluation shards: `segmentation` (`SEGMENTATION`; PNG, one channel of
  shape class ids), `color_segmentation` (`COLOR_SEGMENTATION`; PNG, one
  channel of colour class ids) and the scene annotations `object_shapes`,
  `object_colors` (bytes lists) and `object_bboxes` (floats, 4 per object).

A caption that is blank (empty or whitespace only) counts as missing.
Readers ignore features they do not know.

This module writes records (`make_example`), lists the files of a glob
(`list_files`), reads them (`read_records`) and parses and decodes them
(`decode_records`), dropping bad records and counting them in a
`PipelineStats`: a record whose image is missing, empty or cannot be decoded
(or which is not a valid `tf.train.Example`) is dropped, never raising; a
TFRecord file that is itself damaged (bad CRC, truncated) ends early, the
rest of that file skipped with a warning in the TensorFlow log.

Example:

```python
example = make_example({IMAGE: [png_bytes], CAPTION_NOISY: [b"a red circle"],
                        CAPTION_SYNTHETIC: [b"a circle"], ID: [b"0"]})
writer.write(example.SerializeToString())
stats = PipelineStats()
decoded = decode_records(read_records(list_files("train-*.tfrecord")), stats)
```
"""

import tensorflow as tf

IMAGE = "image"
CAPTION_NOISY = "caption_noisy"
CAPTION_SYNTHETIC = "caption_synthetic"
ID = "id"
SEGMENTATION = "segmentation"
COLOR_SEGMENTATION = "color_segmentation"
OBJECT_SHAPES = "object_shapes"
OBJECT_COLORS = "object_colors"
OBJECT_BBOXES = "object_bboxes"

# Value type of every feature: "bytes" (`BytesList`) or "float"
# (`FloatList`).
FEATURE_TYPES = {
    IMAGE: "bytes",
    CAPTION_NOISY: "bytes",
    CAPTION_SYNTHETIC: "bytes",
    ID: "bytes",
    SEGMENTATION: "bytes",
    COLOR_SEGMENTATION: "bytes",
    OBJECT_SHAPES: "bytes",
    OBJECT_COLORS: "bytes",
    OBJECT_BBOXES: "float",
}
# Features the pretraining pipeline reads; evaluation adds `SEGMENTATION`
# and `COLOR_SEGMENTATION`.
PRETRAINING_FEATURES = (IMAGE, CAPTION_NOISY, CAPTION_SYNTHETIC, ID)

# Status of a parsed record.
_STATUS_OK = 0
_STATUS_MISSING_IMAGE = 1
_STATUS_CORRUPT = 2
_STATUS_END = 3  # Sentinel after the last record of a finite pass.


def make_example(features):
    """A `tf.train.Example` of the schema from feature values.

    Args:
        features: dict of feature name (a key of `FEATURE_TYPES`) to a list
            of values: `bytes` for bytes features, floats for
            `object_bboxes`. Features with no value (an empty list or None)
            are left out of the example, so that their absence reads as
            missing (e.g. an empty noisy caption).

    Returns:
        `tf.train.Example`; serialize it with `.SerializeToString()`.

    Raises:
        ValueError: on a feature name outside the schema.

    Example:

    ```python
    example = make_example({IMAGE: [jpeg_bytes], ID: [b"train-0"]})
    ```
    """
    unknown = sorted(set(features) - set(FEATURE_TYPES))
    if unknown:
        raise ValueError(
            f"Unknown record feature(s) {unknown}; the schema has "
            f"{list(FEATURE_TYPES)}."
        )
    feature = {}
    for name, values in features.items():
        if not values:
            continue
        if FEATURE_TYPES[name] == "float":
            feature[name] = tf.train.Feature(
                float_list=tf.train.FloatList(value=values)
            )
        else:
            feature[name] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=values)
            )
    return tf.train.Example(features=tf.train.Features(feature=feature))


def parsing_spec(with_segmentation=False):
    """`tf.io.parse_single_example` features of the pipeline's reads.

    Every feature is read as a variable-length string list, so a missing
    feature parses as empty instead of failing.
    """
    names = PRETRAINING_FEATURES
    if with_segmentation:
        names += (SEGMENTATION, COLOR_SEGMENTATION)
    return {name: tf.io.VarLenFeature(tf.string) for name in names}


class PipelineStats:
    """Counters of what an input pipeline read, dropped and flagged.

    Pass one instance as `stats=` to `make_pretraining_dataset` or
    `make_eval_dataset` (or `decode_records`); the pipeline adds to its
    counters (int64 `tf.Variable`s, so it works in graph mode and in
    parallel `tf.data` stages) as records go through. One instance may be
    shared by several datasets; counts then add up.

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


def check_stats(stats):
    """Raises a `TypeError` unless `stats` is a `PipelineStats` or None."""
    if stats is not None and not isinstance(stats, PipelineStats):
        raise TypeError(
            f"`stats` must be a `PipelineStats` or None, got {type(stats)}."
        )


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


def read_records(
    files,
    *,
    shuffle_files=False,
    file_seed=None,
    num_parallel_reads=1,
    deterministic=True,
):
    """Serialized records of `files`, interleaved.

    Args:
        files: list of TFRecord paths (see `list_files`).
        shuffle_files: shuffle the file order (anew each pass).
        file_seed: int or None, seed of the file shuffle.
        num_parallel_reads: files read at once (interleave cycle).
        deterministic: keep the interleave order when reading in parallel.

    Returns:
        `tf.data.Dataset` of scalar `tf.string` records. A damaged file
        ends early with a warning in the TensorFlow log.
    """
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


def non_blank(values):
    """The values of a string list that are not blank (empty or spaces)."""
    return tf.boolean_mask(values, tf.strings.length(tf.strings.strip(values)) > 0)


def first_non_blank(values):
    """The first non-blank value of a string list (or `""`), and whether
    there is one."""
    values = non_blank(values)
    return tf.concat([values, [""]], 0)[0], tf.size(values) > 0


def _decode_mask(values):
    """The first PNG of a bytes list as uint8 `(H, W, 1)` (empty when the
    list is), and whether there is one."""
    has_mask = tf.size(values) > 0

    def decode():
        mask = tf.io.decode_png(values[0], channels=1)
        return tf.ensure_shape(mask, [None, None, 1])

    mask = tf.cond(has_mask, decode, lambda: tf.zeros([0, 0, 1], tf.uint8))
    return mask, has_mask


def _parse_and_decode(index, record, is_end, with_segmentation):
    """Parses one serialized example and decodes its image.

    Never fails on a missing image (status `_STATUS_MISSING_IMAGE`); a record
    that cannot be parsed or decoded raises, and the following
    `ignore_errors` drops it (counted later from the gap in `index`).
    """
    parsed = tf.io.parse_single_example(record, parsing_spec(with_segmentation))
    parsed = {k: tf.sparse.to_dense(v, default_value="") for k, v in parsed.items()}

    image_values = parsed[IMAGE]
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
        "noisy_captions": parsed[CAPTION_NOISY],
        "synthetic_captions": parsed[CAPTION_SYNTHETIC],
        "id": tf.concat([parsed[ID], [""]], 0)[0],
    }
    if with_segmentation:
        for name in (SEGMENTATION, COLOR_SEGMENTATION):
            element[name], element[f"has_{name}"] = _decode_mask(parsed[name])
    return element


def decode_records(records, stats=None, with_segmentation=False):
    """Parses and decodes records, dropping (and counting) bad ones.

    Records are numbered before the (order-preserving) decode stage;
    records dropped by `ignore_errors` leave gaps in the numbering, which a
    `scan` turns into counts. A sentinel element after the last record makes
    trailing drops visible for finite datasets.

    Args:
        records: `tf.data.Dataset` of serialized examples.
        stats: optional `PipelineStats` to count records and drops.
        with_segmentation: also decode the `segmentation` and
            `color_segmentation` PNGs.

    Returns:
        `tf.data.Dataset` of dicts: `"index"` (int64 position of the record
        in `records`, a per-record seed), `"image"` uint8 `(H, W, 3)`,
        `"noisy_captions"`, `"synthetic_captions"` (string lists), `"id"`,
        `"status"`; with segmentation also `"segmentation"` and
        `"color_segmentation"` uint8 `(H, W, 1)` (empty when missing) and
        their flags `"has_segmentation"`, `"has_color_segmentation"`.
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
            _, has_noisy = first_non_blank(element["noisy_captions"])
            _, has_synthetic = first_non_blank(element["synthetic_captions"])
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
