"""`tf.data` input pipelines for TIPS pretraining and evaluation.

* `make_pretraining_dataset`: batches of DINO-style multi-crop views (one
  global crop, `num_local_crops` local crops), an iBOT patch mask for the
  global crop and the two tokenized captions, as one `DataConfig` sets
  them.
* `make_eval_dataset`: resized images, segmentation masks (shape and colour
  classes), ids and tokenized captions, in file order and without
  augmentation.

They assemble the pieces of the other data modules: the record format,
reading, decoding and drop counting (`training.records`), the multi-crop
augmentation (`training.augmentations`), the patch masks
(`training.masking`) and caption choice and tokenization
(`training.captions`).

Reproducibility: every random choice (file and record shuffling, crops,
colour augmentation, masks, caption sampling) derives from the config's
`seed`; with the same seed and files, the pipeline yields the same batches.

Example:

```python
tokenizer = TIPSTokenizer(proto="tokenizer.model", sequence_length=64)
stats = PipelineStats()
dataset = make_pretraining_dataset(
    "data/train-*.tfrecord", tokenizer, DataConfig(batch_size=32, seed=0),
    stats=stats,
)
batch = next(iter(dataset))
batch["global_images"].shape   # (32, 224, 224, 3)
stats.result()                 # {"records_read": ..., ...}
```
"""

import numbers

import numpy as np
import tensorflow as tf

from training import augmentations
from training import captions
from training import masking
from training import records
from training.data_config import DataConfig


def make_pretraining_dataset(file_pattern, tokenizer, config, *, stats=None):
    """Batches of TIPS pretraining inputs from TFRecord shards.

    Pipeline: list files -> (seeded) file shuffle -> interleaved parallel
    reads -> record shuffle -> repeat -> parse + decode (bad records dropped
    and counted) -> per-image multi-crop augmentation
    (`augmentations.multi_crop`), patch mask and caption choice -> batch ->
    tokenize -> prefetch.

    Args:
        file_pattern: glob pattern or list of patterns/paths of TFRecord
            files (see `training.records` for their features).
        tokenizer: callable mapping a `(B,)` `tf.string` tensor to int
            token ids `(B, sequence_length)` (pad id 0); shorter or ragged
            outputs are padded, longer ones truncated. Runs inside
            `tf.data`, so it must be TF-traceable (e.g. `TIPSTokenizer`).
            Non-integer outputs raise a `TypeError` here; ids below 0 (or
            at least `tokenizer.vocabulary_size()`, when the tokenizer has
            that method) stop iteration with an `InvalidArgumentError`
            naming the problem.
        config: `DataConfig`, every setting of the pipeline (a training run
            passes `PretrainConfig.data`).
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
        float32, 0 where the caption is missing or blank. With
        `config.max_phrases = P > 0` also the phrases of the first
        non-blank synthetic caption (`captions.split_phrases`):
        `"phrase_token_ids"`, `"phrase_padding_mask"` `(B, P,
        phrase_length)` int32 and `"has_phrase"` `(B, P)` float32.

    Raises:
        ValueError: when `file_pattern` matches no file (the message names
            the pattern).
        TypeError: when `config` is not a `DataConfig`, `stats` not a
            `PipelineStats` or `tokenizer` not callable.

    Example:

    ```python
    config = DataConfig(batch_size=8, global_crop_size=56,
                        local_crop_size=28, num_local_crops=2, seed=0)
    dataset = make_pretraining_dataset("train-*.tfrecord", tokenizer, config)
    batch = next(iter(dataset))
    ```
    """
    if not isinstance(config, DataConfig):
        raise TypeError(
            f"`config` must be a `DataConfig`, got {type(config).__name__}."
        )
    records.check_stats(stats)
    captions.check_tokenizer(tokenizer)

    files = records.list_files(file_pattern)
    deterministic = config.seed is not None
    if config.seed is None:
        base_seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    else:
        base_seed = int(config.seed) % (2**31 - 1)
    shuffle = config.shuffle_buffer > 1

    serialized = records.read_records(
        files,
        shuffle_files=shuffle,
        file_seed=base_seed if deterministic else None,
        num_parallel_reads=config.num_parallel_reads,
        deterministic=deterministic,
    )
    if shuffle:
        serialized = serialized.shuffle(
            config.shuffle_buffer,
            seed=(base_seed + 1) if deterministic else None,
            reshuffle_each_iteration=True,
        )
    if config.repeat:
        serialized = serialized.repeat()
    decoded = records.decode_records(serialized, stats)

    grid = config.mask_grid_size
    num_local_crops = config.num_local_crops

    def augment(element):
        # One seed per record, from the run's seed and its position:
        # global view, local views, patch mask, caption draw.
        element_seed = tf.stack(
            [tf.constant(base_seed, tf.int64), element["index"]]
        )
        seeds = tf.random.experimental.stateless_split(
            element_seed, 3 + num_local_crops
        )
        global_image, local_images = augmentations.multi_crop(
            element["image"], seeds[: 1 + num_local_crops], config
        )
        mask = masking.patch_mask(
            config.mask_mode, grid, grid, config.mask_ratio,
            seeds[1 + num_local_crops],
        )
        caption_u = tf.random.stateless_uniform(
            [], seed=seeds[2 + num_local_crops]
        )
        synthetic, has_synthetic = captions.select_synthetic_caption(
            element["synthetic_captions"],
            config.synthetic_caption_sampling,
            caption_u,
        )
        noisy, has_noisy = records.first_non_blank(element["noisy_captions"])
        phrases = {}
        if config.max_phrases:
            first_synthetic, _ = records.first_non_blank(
                element["synthetic_captions"]
            )
            phrases["phrases"], phrases["has_phrase"] = (
                captions.split_phrases(first_synthetic, config.max_phrases)
            )
        return {
            **phrases,
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
    dataset = dataset.batch(
        config.batch_size, drop_remainder=config.drop_remainder
    )
    dataset = dataset.map(
        captions.tokenize_captions(tokenizer, config.sequence_length),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if config.max_phrases:
        dataset = dataset.map(
            captions.tokenize_phrases(tokenizer, config.phrase_length),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _check_positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


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


def _resize_mask(mask, has_mask, height, width):
    """A decoded `(h, w, 1)` mask as int32 `(height, width)` class ids
    (nearest neighbour; zeros when missing) and its float32 flag."""
    mask = tf.cond(
        has_mask,
        lambda: tf.image.resize(mask, [height, width], method="nearest"),
        lambda: tf.zeros([height, width, 1], tf.uint8),
    )
    mask = tf.ensure_shape(tf.cast(mask[..., 0], tf.int32), [height, width])
    return mask, tf.cast(has_mask, tf.float32)


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
        with_segmentation: bool, read the `segmentation` and
            `color_segmentation` PNG features.
        stats: optional `PipelineStats`.

    Returns:
        `tf.data.Dataset` of dicts: `"images"` `(B, H, W, 3)` float32 in
        [0, 1]; `"ids"` `(B,)` string; `"noisy_token_ids"`,
        `"noisy_padding_mask"` (noisy caption), `"synthetic_token_ids"`,
        `"synthetic_padding_mask"` (FIRST non-blank synthetic caption)
        `(B, seq)` int32; `"has_noisy_caption"`, `"has_synthetic_caption"`
        `(B,)` float32; with segmentation also `"segmentation"` (shape
        classes) and `"color_segmentation"` (colour classes) `(B, H, W)`
        int32 (class ids, nearest-neighbour resized; zeros when missing) and
        their flags `"has_segmentation"`, `"has_color_segmentation"` `(B,)`
        float32.

    Example:

    ```python
    for batch in make_eval_dataset("eval-*.tfrecord", tokenizer, 224, 16):
        ...
    ```
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("sequence_length", sequence_length)
    height, width = _image_size_pair("image_size", image_size)
    records.check_stats(stats)
    captions.check_tokenizer(tokenizer)
    files = records.list_files(file_pattern)
    serialized = records.read_records(files)
    decoded = records.decode_records(
        serialized, stats, with_segmentation=with_segmentation
    )

    def prepare(element):
        image = tf.image.resize(
            element["image"], [height, width], method="bilinear", antialias=True
        )
        image = tf.clip_by_value(image / 255.0, 0.0, 1.0)
        noisy, has_noisy = records.first_non_blank(element["noisy_captions"])
        synthetic, has_synthetic = records.first_non_blank(
            element["synthetic_captions"]
        )
        output = {
            "images": tf.ensure_shape(image, [height, width, 3]),
            "ids": element["id"],
            "noisy_caption": noisy,
            "synthetic_caption": synthetic,
            "has_noisy_caption": tf.cast(has_noisy, tf.float32),
            "has_synthetic_caption": tf.cast(has_synthetic, tf.float32),
        }
        if with_segmentation:
            for name in (records.SEGMENTATION, records.COLOR_SEGMENTATION):
                output[name], output[f"has_{name}"] = _resize_mask(
                    element[name], element[f"has_{name}"], height, width
                )
        return output

    dataset = decoded.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=False)
    dataset = dataset.map(
        captions.tokenize_captions(tokenizer, sequence_length),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
