"""Validates scene TFRecords with TensorFlow Data Validation (TFDV).

Runs only in the TFDV venv (TFDV 1.16.1 pins TF 2.16 / numpy 1.x; it does
not import keras_tips, only the record schema of `training/records.py`):

```
bash tools/setup_tfdv_env.sh            # once, creates .venv-tfdv
.venv-tfdv/bin/python -m tools.validate_data \
    --data 'DIR/train-*.tfrecord' --schema tools/data_schema.pbtxt \
    --output_dir OUT
```

Steps:

1. `tfdv.generate_statistics_from_tfrecord` over the shards (Beam
   DirectRunner), with an image-format statistics generator on every feature
   that has an `image_domain` in the schema;
2. `tfdv.validate_statistics` against the schema kept in the repo (feature
   presence, value counts, string domains, float ranges, image formats);
3. custom checks TFDV cannot express, reported as `CUSTOM_VALIDATION`
   anomalies on the feature: a sample of images and masks per shard is
   decoded (RGB image, side a multiple of the patch size, single-channel
   masks of the same size with class ids below 1 + the number of shapes in
   the schema's `object_shapes` domain for `segmentation` and 1 + the
   number of colours in its `object_colors` domain for
   `color_segmentation`), object lists agree in length, synthetic captions
   are non-empty, ids are unique.

Writes `OUT/statistics.tfrecord` (binary, `tfdv.load_statistics`),
`OUT/statistics.pbtxt`, `OUT/anomalies.pbtxt` and `OUT/report.txt`, prints
the report and exits 0 when clean, 1 on anomalies (each named as
`feature: TYPE: description`), 2 on bad arguments.
"""

import argparse
import glob
import logging
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:
    import tensorflow_data_validation as tfdv
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_data_validation.statistics.generators import (
        image_stats_generator,
    )
    from tensorflow_metadata.proto.v0 import anomalies_pb2
except ImportError as error:  # pragma: no cover - depends on the venv
    raise ImportError(
        "tools/validate_data.py needs TensorFlow Data Validation, which "
        "lives in its own venv: run `bash tools/setup_tfdv_env.sh`, then "
        "`.venv-tfdv/bin/python -m tools.validate_data ...` from the repository root "
        f"(import failed: {error})."
    ) from error

# The record schema (run with `-m` from the repository root, so `training`
# is importable); `training.records` needs only TensorFlow, which this
# venv has (it does not import keras_tips).
from training import records  # noqa: E402

_ANOMALY_TYPE_NAMES = anomalies_pb2.AnomalyInfo.Type.Name


class SchemaImageStatsGenerator(image_stats_generator.ImageStatsGenerator):
    """TFDV image-format statistics, only for the given features.

    Always emits the format histogram (no "looks like an image" threshold),
    so that the schema's `image_domain.minimum_supported_image_fraction`
    is checked even when most values are not images.

    Args:
        feature_names: names of the (top-level) image features.
    """

    def __init__(self, feature_names):
        super().__init__(
            name="SchemaImageStatsGenerator",
            is_image_ratio_threshold=0.0,
            values_threshold=1,
        )
        self._feature_names = frozenset(feature_names)

    def add_input(self, accumulator, feature_path, feature_array):
        if feature_path.steps()[-1] not in self._feature_names:
            accumulator.invalidate = True
            return accumulator
        return super().add_input(accumulator, feature_path, feature_array)


def _tf_error_message(error):
    """First line of a TF op error without the function-node prefix."""
    message = str(error).splitlines()[0] if str(error) else repr(error)
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:\w+\]", "", message)
    return message[:160]


def _add_custom_anomaly(anomalies, feature, short, description):
    info = anomalies.anomaly_info[feature]
    info.severity = anomalies_pb2.AnomalyInfo.ERROR
    reason = info.reason.add()
    reason.type = anomalies_pb2.AnomalyInfo.CUSTOM_VALIDATION
    reason.short_description = short
    reason.description = description
    if not info.short_description:
        info.short_description = short
        info.description = description
    else:
        info.short_description = "Multiple errors"
        info.description = f"{info.description} {description}"


def _values(example, name):
    feature = example.features.feature.get(name)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def num_mask_classes(schema):
    """Classes of each segmentation mask of the scenes, from the schema.

    `segmentation` value `k` is class `k` of
    `training.scenes.generator.class_names()`, `["background", *SHAPES]`,
    and `color_segmentation` value `k` is class `k` of
    `color_class_names()`, `["background", *COLORS]`. The schema's
    `object_shapes` and `object_colors` string domains list the shapes and
    the colours, so the counts come from the schema.

    Args:
        schema: a `tensorflow_metadata` `Schema`.

    Returns:
        dict of mask feature name to its number of classes (background
        included).

    Raises:
        ValueError: if the schema lacks `object_shapes` or `object_colors`.
    """
    domains = {feature.name: feature.string_domain for feature in schema.feature}
    classes = {}
    for mask, names in (
        (records.SEGMENTATION, records.OBJECT_SHAPES),
        (records.COLOR_SEGMENTATION, records.OBJECT_COLORS),
    ):
        if names not in domains:
            raise ValueError(
                f"The schema has no `{names}` feature with the class names "
                f"(its string domain sets the `{mask}` classes)."
            )
        classes[mask] = 1 + len(domains[names].value)
    return classes


def _check_mask(mask_bytes, name, num_classes, image_shape, where, problem):
    """Decodes one value of the mask feature `name`; reports problems."""
    label = name.replace("_", " ")
    try:
        mask = tf.io.decode_png(mask_bytes, channels=0)
    except (tf.errors.InvalidArgumentError, ValueError) as error:
        message = _tf_error_message(error)
        problem(
            name,
            f"Undecodable {label}",
            f"{where}: {name} bytes do not decode as PNG ({message}).",
        )
        return
    if mask.shape[-1] != 1 or (
        image_shape is not None and tuple(mask.shape[:2]) != image_shape[:2]
    ):
        problem(
            name,
            f"{label.capitalize()} shape mismatch",
            f"{where}: {name} mask shape {tuple(mask.shape)} does not match "
            f"image shape {image_shape} (need H, W, 1).",
        )
    elif int(tf.reduce_max(mask)) >= num_classes:
        problem(
            name,
            f"{label.capitalize()} class out of range",
            f"{where}: {name} mask value {int(tf.reduce_max(mask))} >= "
            f"{num_classes} classes.",
        )


def custom_checks(paths, decode_per_file, patch_size, mask_classes):
    """Checks TFDV's schema cannot express.

    Args:
        paths: TFRecord files.
        decode_per_file: images and masks decoded per file (the first ones);
            0 decodes none, -1 all.
        patch_size: image sides must be multiples of it (0 to skip).
        mask_classes: dict of mask feature name to its number of classes;
            mask values must be below it (see `num_mask_classes`).

    Returns:
        `(problems, summary)`: `problems` is a list of
        `(feature, short_description, description)`, `summary` a dict of
        counts.
    """
    found = {}

    def problem(feature, short, description):
        entry = found.setdefault((feature, short), [0, description])
        entry[0] += 1

    seen_ids = set()
    duplicate_ids = []
    summary = {"records": 0, "decoded_images": 0, "decoded_masks": 0}
    for path in paths:
        for index, record in enumerate(tf.data.TFRecordDataset(path)):
            summary["records"] += 1
            where = f"{os.path.basename(path)} record {index}"
            try:
                example = tf.train.Example.FromString(record.numpy())
            except Exception as error:  # noqa: BLE001 - any parse failure
                problem(records.ID, "Unparsable record", f"{where}: {error}.")
                continue
            for scene_id in _values(example, records.ID):
                if scene_id in seen_ids:
                    duplicate_ids.append(scene_id.decode("utf-8", "replace"))
                seen_ids.add(scene_id)
            shapes = _values(example, records.OBJECT_SHAPES)
            colors = _values(example, records.OBJECT_COLORS)
            bboxes = _values(example, records.OBJECT_BBOXES)
            if len(shapes) != len(colors) or len(bboxes) != 4 * len(shapes):
                problem(
                    records.OBJECT_SHAPES,
                    "Object lists disagree",
                    f"{where}: {len(shapes)} object_shapes, {len(colors)} "
                    f"object_colors, {len(bboxes)} object_bboxes values "
                    "(need equal counts and 4 boxes values per object).",
                )
            for caption in _values(example, records.CAPTION_SYNTHETIC):
                if not caption.strip():
                    problem(
                        records.CAPTION_SYNTHETIC,
                        "Empty synthetic caption",
                        f"{where}: a caption_synthetic value is empty.",
                    )
            if decode_per_file >= 0 and index >= decode_per_file:
                continue
            image_shape = None
            for image_bytes in _values(example, records.IMAGE):
                summary["decoded_images"] += 1
                try:
                    image = tf.io.decode_image(
                        image_bytes, channels=0, expand_animations=False
                    )
                except (tf.errors.InvalidArgumentError, ValueError) as error:
                    message = _tf_error_message(error)
                    problem(
                        records.IMAGE,
                        "Undecodable image",
                        f"{where}: image bytes do not decode ({message}).",
                    )
                    continue
                image_shape = tuple(image.shape)
                if image.dtype != tf.uint8 or image_shape[-1] != 3:
                    problem(
                        records.IMAGE,
                        "Image not RGB uint8",
                        f"{where}: decoded image has shape {image_shape} and "
                        f"dtype {image.dtype.name}; expected (H, W, 3) uint8.",
                    )
                elif patch_size and (
                    image_shape[0] % patch_size or image_shape[1] % patch_size
                ):
                    problem(
                        records.IMAGE,
                        "Image size not a patch multiple",
                        f"{where}: image is {image_shape[0]}x{image_shape[1]}, "
                        f"not a multiple of the patch size {patch_size}.",
                    )
            for name, num_classes in mask_classes.items():
                for mask_bytes in _values(example, name):
                    summary["decoded_masks"] += 1
                    _check_mask(
                        mask_bytes, name, num_classes, image_shape, where,
                        problem,
                    )
    if duplicate_ids:
        problem(
            records.ID,
            "Duplicate ids",
            f"{len(duplicate_ids)} duplicate ids, e.g. {duplicate_ids[0]!r}.",
        )
    problems = []
    for (feature, short), (count, description) in found.items():
        if count > 1:
            description = f"{description} ({count} occurrences in total)"
        problems.append((feature, short, description))
    return problems, summary


def _feature_summary(stats):
    rows = []
    dataset = stats.datasets[0]
    total = dataset.num_examples
    for feature in sorted(dataset.features, key=lambda f: f.path.step[-1]):
        which = feature.WhichOneof("stats")
        common = None
        if which in ("num_stats", "string_stats", "bytes_stats"):
            common = getattr(feature, which).common_stats
        name = ".".join(feature.path.step)
        if common is None:
            rows.append(f"  {name:<20} (no common stats)")
            continue
        present = common.num_non_missing / total if total else 0.0
        rows.append(
            f"  {name:<20} present {100 * present:6.2f}%   values/example "
            f"min {common.min_num_values} avg {common.avg_num_values:.2f} "
            f"max {common.max_num_values}"
        )
    return rows


def _describe_anomalies(anomalies):
    lines = []
    for feature in sorted(anomalies.anomaly_info):
        info = anomalies.anomaly_info[feature]
        for reason in info.reason:
            lines.append(
                f"  {feature}: {_ANOMALY_TYPE_NAMES(reason.type)}: "
                f"{reason.short_description}: {reason.description}"
            )
    if anomalies.HasField("dataset_anomaly_info"):
        for reason in anomalies.dataset_anomaly_info.reason:
            lines.append(
                f"  <dataset>: {_ANOMALY_TYPE_NAMES(reason.type)}: "
                f"{reason.short_description}: {reason.description}"
            )
    return lines


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="validate_data.py",
        description="Validate scene TFRecords against a TFDV schema.",
    )
    parser.add_argument(
        "--data", required=True, help="Glob of TFRecord files (quote it)."
    )
    parser.add_argument(
        "--schema", required=True, help="Schema text proto (.pbtxt)."
    )
    parser.add_argument(
        "--output_dir", required=True, help="Where stats and anomalies go."
    )
    parser.add_argument(
        "--decode_per_file",
        type=int,
        default=64,
        help="Images/masks decoded per file by the custom check (-1: all).",
    )
    parser.add_argument(
        "--patch_size",
        type=int,
        default=14,
        help="Image sides must be multiples of this (0 to skip).",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    paths = sorted(glob.glob(args.data))
    if not paths:
        print(
            f"validate_data: no files match --data {args.data!r}.",
            file=sys.stderr,
        )
        return 2
    if not os.path.isfile(args.schema):
        print(
            f"validate_data: --schema file {args.schema!r} not found.",
            file=sys.stderr,
        )
        return 2
    try:
        schema = tfdv.load_schema_text(args.schema)
    except Exception as error:  # noqa: BLE001 - text_format errors vary
        print(
            f"validate_data: cannot parse --schema {args.schema!r}: {error}",
            file=sys.stderr,
        )
        return 2
    try:
        mask_classes = num_mask_classes(schema)
    except ValueError as error:
        print(f"validate_data: --schema {args.schema!r}: {error}", file=sys.stderr)
        return 2
    os.makedirs(args.output_dir, exist_ok=True)

    image_features = [f.name for f in schema.feature if f.HasField("image_domain")]
    stats_options = tfdv.StatsOptions(
        schema=schema,
        generators=[SchemaImageStatsGenerator(image_features)],
    )
    pipeline_options = PipelineOptions(
        [
            "--runner=DirectRunner",
            "--direct_num_workers=1",
            "--direct_running_mode=in_memory",
        ]
    )
    stats = tfdv.generate_statistics_from_tfrecord(
        data_location=args.data,
        output_path=os.path.join(args.output_dir, "statistics.tfrecord"),
        stats_options=stats_options,
        pipeline_options=pipeline_options,
    )
    tfdv.write_stats_text(stats, os.path.join(args.output_dir, "statistics.pbtxt"))
    anomalies = tfdv.validate_statistics(stats, schema)

    problems, summary = custom_checks(
        paths, args.decode_per_file, args.patch_size, mask_classes
    )
    for feature, short, description in problems:
        _add_custom_anomaly(anomalies, feature, short, description)
    tfdv.write_anomalies_text(
        anomalies, os.path.join(args.output_dir, "anomalies.pbtxt")
    )

    num_examples = stats.datasets[0].num_examples if stats.datasets else 0
    lines = [
        f"TFDV {tfdv.__version__}: {num_examples} examples in {len(paths)} "
        f"files matching {args.data!r}, schema {args.schema}",
        *_feature_summary(stats),
        f"Custom checks: {summary['records']} records read, "
        f"{summary['decoded_images']} images and {summary['decoded_masks']} "
        "masks decoded.",
    ]
    anomaly_lines = _describe_anomalies(anomalies)
    if anomaly_lines:
        lines.append(f"ANOMALIES ({len(anomaly_lines)}):")
        lines.extend(anomaly_lines)
        lines.append(f"FAILED: see {args.output_dir}/anomalies.pbtxt")
    else:
        lines.append("OK: no anomalies.")
    report = "\n".join(lines)
    with open(os.path.join(args.output_dir, "report.txt"), "w") as f:
        f.write(report + "\n")
    print(report)
    return 1 if anomaly_lines else 0


if __name__ == "__main__":
    sys.exit(main())
