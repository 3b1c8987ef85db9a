"""Tests of the data modules: the tf.data pretraining and eval pipelines
(training/pipelines.py) with the records, augmentations and captions they
assemble."""

import colorsys
import io
import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from training import augmentations
from training import captions
from training import masking
from training import pipelines
from training import records
from training.data_config import DataConfig

# Pure tf.data: the Keras backend plays no part (the keras-hub tokenizer
# runs as TensorFlow inside tf.data on every backend).
pytestmark = pytest.mark.backend_independent

SEQUENCE_LENGTH = 16
SMALL = dict(
    global_crop_size=56,
    local_crop_size=28,
    num_local_crops=2,
    sequence_length=SEQUENCE_LENGTH,
)


# ---------------------------------------------------------------------------
# Fixtures: tokenizer and small TFRecord shards written here.


@pytest.fixture(scope="module")
def sentencepiece(tokenizer_model):
    import keras_hub

    return keras_hub.tokenizers.SentencePieceTokenizer(
        proto=str(tokenizer_model),
        sequence_length=SEQUENCE_LENGTH,
    )


@pytest.fixture(scope="module")
def tokenizer(sentencepiece):
    return lambda texts: sentencepiece(tf.strings.lower(texts))


def _reference_ids(sentencepiece, text):
    """Token ids of one caption, computed outside the pipeline."""
    return np.asarray(sentencepiece(tf.strings.lower(tf.constant([text]))))[0]


def _encode(array, image_format="JPEG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format)
    return buffer.getvalue()


def _example(image=None, noisy=None, synthetic=None, example_id=b"", segmentation=None,
             color_segmentation=None):
    example = records.make_example(
        {
            records.IMAGE: None if image is None else [image],
            records.CAPTION_NOISY: noisy,
            records.CAPTION_SYNTHETIC: synthetic,
            records.ID: [example_id],
            records.SEGMENTATION: None if segmentation is None else [segmentation],
            records.COLOR_SEGMENTATION: (
                None if color_segmentation is None else [color_segmentation]
            ),
        }
    )
    for name, values in ((records.CAPTION_NOISY, noisy), (records.CAPTION_SYNTHETIC, synthetic)):
        if values is not None and not values:
            # Present without a value, as other writers may leave it.
            example.features.feature[name].bytes_list.SetInParent()
    return example.SerializeToString()


def _pretraining_dataset(file_pattern, tokenizer, stats=None, **settings):
    """`make_pretraining_dataset` with a `DataConfig` of `settings`."""
    return pipelines.make_pretraining_dataset(
        file_pattern, tokenizer, DataConfig(**settings), stats=stats
    )


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _random_image(rng, height, width):
    # Smooth content (JPEG-friendly) plus noise.
    base = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(base).resize((width, height)))
    noise = rng.integers(-20, 21, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


NOISY_CAPTIONS = ["a red circle", "two blue squares", "green star on the left"]
SYNTHETIC_CAPTIONS = [
    [b"a circle", b"a red circle in the middle of the image"],
    [b"blue squares"],
    [b"a star", b"a green star", b"a green star on the left side"],
]


@pytest.fixture(scope="module")
def clean_shards(tmp_path_factory):
    """Two shards, 12 good records each; every third has no noisy caption."""
    directory = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(0)
    noisy_texts, synthetic_first = [], []
    for shard in range(2):
        records = []
        for i in range(12):
            image = _random_image(rng, int(rng.integers(40, 90)), int(rng.integers(40, 90)))
            k = i % 3
            noisy = [NOISY_CAPTIONS[k].encode()] if i % 4 else None
            records.append(
                _example(
                    _encode(image, "PNG" if i % 2 else "JPEG"),
                    noisy=noisy,
                    synthetic=SYNTHETIC_CAPTIONS[k],
                    example_id=f"{shard}-{i}".encode(),
                )
            )
            noisy_texts.append(NOISY_CAPTIONS[k] if noisy else None)
            synthetic_first.append(SYNTHETIC_CAPTIONS[k][0].decode())
        _write(directory / f"train-{shard:05d}-of-00002.tfrecord", records)
    return {
        "pattern": str(directory / "train-*.tfrecord"),
        "noisy": noisy_texts,
        "synthetic_first": synthetic_first,
    }


def _collect(dataset):
    batches = [
        {k: np.asarray(v) for k, v in batch.items()} for batch in dataset
    ]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}, batches


def _sorted_rows(array):
    return sorted(map(tuple, np.asarray(array).tolist()))


# ---------------------------------------------------------------------------
# Pretraining dataset.


@pytest.mark.parametrize("mask_mode", ["random", "block"])
def test_pretraining_shapes_dtypes_ranges(clean_shards, tokenizer, sentencepiece, mask_mode):
    batch_size = 5
    dataset = _pretraining_dataset(
        clean_shards["pattern"],
        tokenizer,
        batch_size=batch_size,
        mask_mode=mask_mode,
        seed=0,
        repeat=False,
        **SMALL,
    )
    merged, batches = _collect(dataset)
    assert len(batches) == 24 // batch_size  # drop_remainder
    expected = {
        "global_images": ((batch_size, 56, 56, 3), np.float32),
        "local_images": ((batch_size, 2, 28, 28, 3), np.float32),
        "patch_mask": ((batch_size, 4, 4), np.bool_),
        "noisy_token_ids": ((batch_size, SEQUENCE_LENGTH), np.int32),
        "noisy_padding_mask": ((batch_size, SEQUENCE_LENGTH), np.int32),
        "synthetic_token_ids": ((batch_size, SEQUENCE_LENGTH), np.int32),
        "synthetic_padding_mask": ((batch_size, SEQUENCE_LENGTH), np.int32),
        "has_noisy_caption": ((batch_size,), np.float32),
        "has_synthetic_caption": ((batch_size,), np.float32),
    }
    assert set(batches[0]) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert batches[0][key].shape == shape, key
        assert batches[0][key].dtype == dtype, key
    for key in ("global_images", "local_images"):
        assert merged[key].min() >= 0.0 and merged[key].max() <= 1.0
        assert merged[key].std() > 0.05  # Real content, not zeros.
    # Exactly round(0.75 * 16) = 12 masked patches per image, both modes.
    np.testing.assert_array_equal(merged["patch_mask"].sum(axis=(1, 2)), 12)
    for kind in ("noisy", "synthetic"):
        ids = merged[f"{kind}_token_ids"]
        padding_mask = merged[f"{kind}_padding_mask"]
        np.testing.assert_array_equal(padding_mask, (ids != 0).astype(np.int32))
        # Real tokens first, padding after.
        assert np.all(np.diff(padding_mask, axis=1) <= 0)
    # Captions: the multiset of token rows matches the tokenizer applied to
    # the kept records' captions (20 of 24 records are in full batches, so
    # compare against all 24 as a superset, counting multiplicities).
    has_noisy = merged["has_noisy_caption"]
    assert set(np.unique(has_noisy)) <= {0.0, 1.0}
    np.testing.assert_array_equal(
        merged["noisy_token_ids"][has_noisy == 0], 0
    )
    np.testing.assert_array_equal(merged["has_synthetic_caption"], 1.0)
    reference_noisy = _sorted_rows(
        [
            _reference_ids(sentencepiece, t) if t else np.zeros(SEQUENCE_LENGTH, int)
            for t in clean_shards["noisy"]
        ]
    )
    reference_synthetic = _sorted_rows(
        [_reference_ids(sentencepiece, t) for t in clean_shards["synthetic_first"]]
    )
    for rows, reference in (
        (_sorted_rows(merged["noisy_token_ids"]), reference_noisy),
        (_sorted_rows(merged["synthetic_token_ids"]), reference_synthetic),
    ):
        remaining = list(reference)
        for row in rows:
            assert row in remaining
            remaining.remove(row)
        assert len(remaining) == 24 - len(rows)


def test_pretraining_same_seed_same_batches(clean_shards, tokenizer):
    def first_batches(seed):
        dataset = _pretraining_dataset(
            clean_shards["pattern"],
            tokenizer,
            batch_size=4,
            seed=seed,
            mask_mode="block",
            synthetic_caption_sampling="random",
            shuffle_buffer=16,
            **SMALL,
        )
        return [
            {k: np.asarray(v) for k, v in batch.items()}
            for batch in dataset.take(2)
        ]

    first, again, other = first_batches(7), first_batches(7), first_batches(8)
    for batch, batch_again in zip(first, again):
        for key in batch:
            np.testing.assert_array_equal(batch[key], batch_again[key], err_msg=key)
    assert not np.array_equal(first[0]["global_images"], other[0]["global_images"])
    assert not np.array_equal(first[0]["patch_mask"], other[0]["patch_mask"])
    # Later epochs see new crops of the same images (different seeds).
    assert not np.array_equal(first[0]["global_images"], first[1]["global_images"])


@pytest.fixture(scope="module")
def corrupt_shard(tmp_path_factory):
    """6 good records, 4 corrupt ones and 2 without an image."""
    directory = tmp_path_factory.mktemp("corrupt")
    rng = np.random.default_rng(1)
    good = [
        _example(
            _encode(_random_image(rng, 48, 64)),
            noisy=[b"a caption"],
            synthetic=[b"a synthetic caption"],
            example_id=f"good-{i}".encode(),
        )
        for i in range(6)
    ]
    truncated = _encode(_random_image(rng, 64, 64))
    truncated = truncated[: len(truncated) // 2]
    bad = [
        _example(b"this is not an image", noisy=[b"x"], example_id=b"garbage"),
        _example(b"\xff\xd8\xff\xe0" + bytes(100), example_id=b"bad-jpeg-header"),
        _example(truncated, example_id=b"truncated"),
        b"\x00\x01 not a tf.train.Example proto \xff",
    ]
    missing = [
        _example(None, noisy=[b"no image"], example_id=b"no-image"),
        _example(b"", noisy=[b"empty image"], example_id=b"empty-image"),
    ]
    records = [
        good[0], bad[0], good[1], missing[0], good[2], bad[1],
        good[3], bad[2], missing[1], good[4], good[5], bad[3],
    ]
    return _write(directory / "corrupt.tfrecord", records)


def test_corrupt_records_dropped_and_counted(corrupt_shard, tokenizer):
    stats = records.PipelineStats()
    dataset = _pretraining_dataset(
        corrupt_shard,
        tokenizer,
        batch_size=4,
        seed=0,
        repeat=False,
        drop_remainder=False,
        stats=stats,
        **SMALL,
    )
    merged, _ = _collect(dataset)
    assert merged["global_images"].shape[0] == 6
    assert stats.result() == {
        "records_read": 12,
        "records_dropped_missing_image": 2,
        "records_dropped_corrupt": 4,
        "captions_missing_noisy": 0,
        "captions_missing_synthetic": 0,
        "records_dropped": 6,
        "records_kept": 6,
    }
    # A second pass adds up; reset() clears.
    _collect(dataset)
    assert stats.records_read == 24 and stats.records_dropped_corrupt == 8
    stats.reset()
    assert stats.records_read == 0


def test_corrupt_records_repeated_dataset_keeps_running(corrupt_shard, tokenizer):
    stats = records.PipelineStats()
    dataset = _pretraining_dataset(
        corrupt_shard, tokenizer, batch_size=6, seed=1, stats=stats, **SMALL
    )
    for batch in dataset.take(4):  # 24 good images = 4 passes over the file.
        assert batch["global_images"].shape[0] == 6
    # 24 good images = 4 whole passes (the shuffle stays within a pass):
    # at least 3 passes are fully counted, more records may be in flight.
    result = stats.result()
    assert result["records_read"] >= 42
    assert result["records_dropped_corrupt"] >= 12
    assert result["records_dropped_missing_image"] >= 6
    assert result["records_kept"] >= 24


def test_eval_dataset_drops_and_counts(corrupt_shard, tokenizer):
    stats = records.PipelineStats()
    dataset = pipelines.make_eval_dataset(
        corrupt_shard, tokenizer, 32, 4, sequence_length=SEQUENCE_LENGTH, stats=stats
    )
    merged, _ = _collect(dataset)
    assert [i.decode() for i in merged["ids"]] == [f"good-{i}" for i in range(6)]
    assert stats.records_dropped_corrupt == 4
    assert stats.records_dropped_missing_image == 2
    assert stats.records_kept == 6


@pytest.fixture(scope="module")
def caption_shard(tmp_path_factory):
    directory = tmp_path_factory.mktemp("captions")
    image = _encode(np.full((30, 30, 3), 128, np.uint8), "PNG")
    records = [
        _example(image, noisy=[b"a noisy caption"], synthetic=[b"first", b"second"], example_id=b"0"),
        _example(image, noisy=None, synthetic=[b"only synthetic"], example_id=b"1"),
        _example(image, noisy=[b""], synthetic=None, example_id=b"2"),
        _example(image, noisy=[b"   "], synthetic=[b"", b"  ", b"after blanks"], example_id=b"3"),
        _example(image, noisy=[b"noisy only"], synthetic=[], example_id=b"4"),
    ]
    return _write(directory / "captions.tfrecord", records)


def test_missing_captions_flagged(caption_shard, tokenizer, sentencepiece):
    expected_noisy = [1, 0, 0, 0, 1]
    expected_synthetic = [1, 1, 0, 1, 0]
    stats = records.PipelineStats()
    dataset = _pretraining_dataset(
        caption_shard,
        tokenizer,
        batch_size=5,
        seed=0,
        shuffle_buffer=0,
        repeat=False,
        stats=stats,
        **SMALL,
    )
    (batch,) = [{k: np.asarray(v) for k, v in b.items()} for b in dataset]
    np.testing.assert_array_equal(batch["has_noisy_caption"], expected_noisy)
    np.testing.assert_array_equal(batch["has_synthetic_caption"], expected_synthetic)
    for kind, flags in (("noisy", expected_noisy), ("synthetic", expected_synthetic)):
        missing = np.asarray(flags) == 0
        np.testing.assert_array_equal(batch[f"{kind}_token_ids"][missing], 0)
        np.testing.assert_array_equal(batch[f"{kind}_padding_mask"][missing], 0)
        assert np.all(batch[f"{kind}_padding_mask"][~missing].sum(axis=1) > 0)
    # Blank synthetic captions are skipped: record 3 uses "after blanks".
    np.testing.assert_array_equal(
        batch["synthetic_token_ids"][3], _reference_ids(sentencepiece, "after blanks")
    )
    assert stats.captions_missing_noisy == 3
    assert stats.captions_missing_synthetic == 2
    assert stats.records_dropped == 0


def test_empty_glob_and_missing_file_raise(tmp_path, tokenizer):
    pattern = str(tmp_path / "nothing-*.tfrecord")
    with pytest.raises(ValueError, match="nothing-"):
        _pretraining_dataset(pattern, tokenizer, batch_size=2)
    missing = str(tmp_path / "missing.tfrecord")
    with pytest.raises(ValueError, match="missing.tfrecord"):
        pipelines.make_eval_dataset(missing, tokenizer, 32, 2)
    with pytest.raises(ValueError, match="empty list"):
        records.list_files([])


def test_argument_errors(clean_shards, tokenizer):
    pattern = clean_shards["pattern"]
    with pytest.raises(ValueError, match="global_crop_size"):
        _pretraining_dataset(pattern, tokenizer, batch_size=2, global_crop_size=50)
    with pytest.raises(ValueError, match="mask_mode"):
        _pretraining_dataset(pattern, tokenizer, batch_size=2, mask_mode="grid")
    with pytest.raises(ValueError, match="synthetic_caption_sampling"):
        _pretraining_dataset(
            pattern, tokenizer, batch_size=2, synthetic_caption_sampling="last"
        )
    with pytest.raises(ValueError, match="local_crop_scale"):
        _pretraining_dataset(
            pattern, tokenizer, batch_size=2, local_crop_scale=(0.5, 0.1)
        )
    with pytest.raises(ValueError, match="batch_size"):
        _pretraining_dataset(pattern, tokenizer, batch_size=0)
    with pytest.raises(TypeError, match="stats"):
        _pretraining_dataset(pattern, tokenizer, batch_size=2, stats={})
    # A tokenizer giving one id per string (rank 1) is rejected when traced.
    with pytest.raises(ValueError, match="tokenizer"):
        _pretraining_dataset(
            pattern,
            lambda texts: tf.strings.length(texts),
            batch_size=2,
            **SMALL,
        )


def test_ragged_and_long_tokenizer_outputs_are_fitted(caption_shard):
    def ragged_tokenizer(texts):
        words = tf.strings.split(texts)
        return tf.ragged.map_flat_values(
            lambda w: tf.strings.to_hash_bucket_fast(w, 100) + 1, words
        )

    def long_tokenizer(texts):
        return tf.ones([tf.shape(texts)[0], 40], tf.int64)

    def first_batch(tokenizer, length):
        dataset = _pretraining_dataset(
            caption_shard,
            tokenizer,
            batch_size=5,
            seed=0,
            shuffle_buffer=0,
            repeat=False,
            **{**SMALL, "sequence_length": length},
        )
        batch = next(iter(dataset))
        assert batch["noisy_token_ids"].shape == (5, length)
        assert batch["noisy_token_ids"].dtype == tf.int32
        return {k: np.asarray(v) for k, v in batch.items()}

    # Ragged: padded; "a noisy caption" has 3 words -> 3 real tokens.
    batch = first_batch(ragged_tokenizer, 16)
    assert batch["noisy_padding_mask"][0].tolist() == [1] * 3 + [0] * 13
    # Too long: truncated.
    batch = first_batch(long_tokenizer, 8)
    assert batch["noisy_padding_mask"][0].tolist() == [1] * 8


def test_synthetic_caption_sampling(tmp_path, tokenizer, sentencepiece):
    captions = [b"alpha", b"beta gamma", b"delta epsilon zeta"]
    image = _encode(np.full((40, 40, 3), 200, np.uint8), "PNG")
    path = _write(
        tmp_path / "sampling.tfrecord",
        [_example(image, noisy=[b"n"], synthetic=captions + [b"  "], example_id=b"x")],
    )
    references = [tuple(_reference_ids(sentencepiece, c.decode())) for c in captions]
    assert len(set(references)) == 3

    def draws(sampling):
        dataset = _pretraining_dataset(
            path,
            tokenizer,
            batch_size=16,
            seed=3,
            synthetic_caption_sampling=sampling,
            **{**SMALL, "num_local_crops": 0},
        )
        rows = []
        for batch in dataset.take(4):
            rows.extend(map(tuple, np.asarray(batch["synthetic_token_ids"]).tolist()))
        return rows

    random_rows = draws("random")
    counts = [random_rows.count(reference) for reference in references]
    assert sum(counts) == 64  # Never the blank one.
    # Uniform over 3: ~21 each (binomial std ~3.8).
    assert min(counts) >= 9, counts
    first_rows = draws("first")
    assert set(first_rows) == {references[0]}


def _phrases(caption, max_phrases=6):
    phrases, present = captions.split_phrases(tf.constant(caption), max_phrases)
    phrases = [p.decode() for p in phrases.numpy()]
    assert list(present.numpy()) == [bool(p) for p in phrases]
    return phrases


def test_split_phrases_reads_list_like_captions():
    assert _phrases(
        "a yellow star, two red squares and a green star on a sand and "
        "teal stripes background") == [
        "a yellow star", "two red squares", "a green star",
        "a sand and teal stripes background", "", ""]
    assert _phrases("a white ring on an olive noise background", 3) == [
        "a white ring", "an olive noise background", ""]
    # Without " on ", the whole caption is a list; blanks are dropped.
    assert _phrases(" a cat and  a dog ,  ", 3) == ["a cat", "a dog", ""]
    assert _phrases("", 2) == ["", ""]
    # More phrases than asked for: the first ones are kept.
    assert _phrases("a, b, c and d on e", 3) == ["a", "b", "c"]
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="max_phrases"):
            captions.split_phrases(tf.constant("a on b"), bad)


def test_phrases_of_the_first_synthetic_caption(tmp_path, tokenizer, sentencepiece):
    image = _encode(np.full((40, 40, 3), 90, np.uint8), "PNG")
    path = _write(tmp_path / "phrases.tfrecord", [
        _example(image, noisy=[b"n"], synthetic=[
            b"  ", b"a red circle and a blue star on a gray background",
            b"a red circle at the top"], example_id=b"0"),
        _example(image, noisy=[b"n"], synthetic=[], example_id=b"1"),
    ])
    settings = dict(batch_size=2, seed=0, shuffle_buffer=0, repeat=False,
                    synthetic_caption_sampling="random", **SMALL)
    (batch,) = [{k: np.asarray(v) for k, v in b.items()} for b in
                _pretraining_dataset(path, tokenizer, max_phrases=4,
                                     phrase_length=8, **settings)]
    assert batch["phrase_token_ids"].shape == (2, 4, 8)
    assert batch["phrase_padding_mask"].shape == (2, 4, 8)
    assert batch["phrase_token_ids"].dtype == np.int32
    np.testing.assert_array_equal(batch["has_phrase"], [[1, 1, 1, 0], [0, 0, 0, 0]])
    for j, phrase in enumerate(
            ["a red circle", "a blue star", "a gray background"]):
        expected = _reference_ids(sentencepiece, phrase)[:8]
        np.testing.assert_array_equal(batch["phrase_token_ids"][0, j], expected)
        np.testing.assert_array_equal(
            batch["phrase_padding_mask"][0, j], expected != 0)
    np.testing.assert_array_equal(batch["phrase_token_ids"][0, 3], 0)
    np.testing.assert_array_equal(batch["phrase_token_ids"][1], 0)
    np.testing.assert_array_equal(batch["phrase_padding_mask"][1], 0)
    # Off by default: no phrase keys.
    (plain,) = list(_pretraining_dataset(path, tokenizer, **settings))
    assert not {"phrase_token_ids", "phrase_padding_mask", "has_phrase"} & set(plain)
    with pytest.raises(ValueError, match="max_phrases"):
        DataConfig(batch_size=2, max_phrases=-1)
    with pytest.raises(ValueError, match="phrase_length"):
        DataConfig(batch_size=2, phrase_length=0)


# ---------------------------------------------------------------------------
# Eval dataset.


def test_eval_dataset(tmp_path, tokenizer, sentencepiece):
    colors = [(255, 0, 0), (0, 128, 255), (10, 200, 30), (90, 90, 90), (250, 250, 0)]
    records = []
    for i, color in enumerate(colors):
        image = np.zeros((40, 60, 3), np.uint8) + np.array(color, np.uint8)
        segmentation = np.zeros((40, 60), np.uint8)
        segmentation[:, :30] = 1
        segmentation[:, 30:] = 2 + i
        color_segmentation = np.zeros((40, 60), np.uint8)
        color_segmentation[20:] = 3 + i
        records.append(
            _example(
                _encode(image, "PNG"),
                noisy=[f"noisy {i}".encode()] if i != 2 else None,
                synthetic=[f"first synthetic {i}".encode(), b"second one"],
                example_id=f"eval-{i}".encode(),
                segmentation=_encode(segmentation, "PNG"),
                # Record 4 is like an older shard, without colour masks.
                color_segmentation=(
                    _encode(color_segmentation, "PNG") if i != 4 else None
                ),
            )
        )
    pattern = _write(tmp_path / "eval-00000.tfrecord", records[:3])
    _write(tmp_path / "eval-00001.tfrecord", records[3:])
    dataset = pipelines.make_eval_dataset(
        str(tmp_path / "eval-*.tfrecord"), tokenizer, (32, 48), 2,
        sequence_length=SEQUENCE_LENGTH,
    )
    del pattern
    merged, batches = _collect(dataset)
    assert [b["images"].shape[0] for b in batches] == [2, 2, 1]  # No drop.
    assert [i.decode() for i in merged["ids"]] == [f"eval-{i}" for i in range(5)]
    assert merged["images"].shape == (5, 32, 48, 3)
    assert merged["images"].dtype == np.float32
    for i, color in enumerate(colors):
        np.testing.assert_allclose(
            merged["images"][i], np.broadcast_to(np.array(color) / 255.0, (32, 48, 3)),
            atol=1.5 / 255,
        )
        segmentation = merged["segmentation"][i]
        assert segmentation.shape == (32, 48) and segmentation.dtype == np.int32
        np.testing.assert_array_equal(segmentation[:, :24], 1)
        np.testing.assert_array_equal(segmentation[:, 24:], 2 + i)
        color_segmentation = merged["color_segmentation"][i]
        assert color_segmentation.shape == (32, 48)
        assert color_segmentation.dtype == np.int32
        np.testing.assert_array_equal(color_segmentation[:16], 0)
        np.testing.assert_array_equal(color_segmentation[16:], 3 + i if i != 4 else 0)
        np.testing.assert_array_equal(
            merged["synthetic_token_ids"][i],
            _reference_ids(sentencepiece, f"first synthetic {i}"),
        )
    np.testing.assert_array_equal(merged["has_noisy_caption"], [1, 1, 0, 1, 1])
    np.testing.assert_array_equal(merged["has_segmentation"], 1.0)
    np.testing.assert_array_equal(merged["has_color_segmentation"], [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(
        merged["noisy_token_ids"][1], _reference_ids(sentencepiece, "noisy 1")
    )
    np.testing.assert_array_equal(merged["noisy_token_ids"][2], 0)
    # Not repeated: a second pass gives the same 5 records again.
    again, _ = _collect(dataset)
    np.testing.assert_array_equal(again["images"], merged["images"])


def test_scene_masks_round_trip_through_shards_to_the_eval_dataset(
    tmp_path, tokenizer
):
    from training.scenes import generator
    from training.scenes.shards import write_scene_shards

    config = generator.SceneConfig(image_size=56)
    write_scene_shards(str(tmp_path), 6, 2, seed=4, config=config)
    pattern = str(tmp_path / "train-*.tfrecord")
    merged, _ = _collect(pipelines.make_eval_dataset(
        pattern, tokenizer, 56, 4, sequence_length=SEQUENCE_LENGTH))
    half, _ = _collect(pipelines.make_eval_dataset(
        pattern, tokenizer, 28, 4, sequence_length=SEQUENCE_LENGTH))
    np.testing.assert_array_equal(merged["has_color_segmentation"], 1.0)
    for index in range(6):
        scene = generator.generate_scene(
            generator.scene_rng(4, "train", index), config)
        np.testing.assert_array_equal(merged["segmentation"][index], scene.mask)
        np.testing.assert_array_equal(
            merged["color_segmentation"][index], scene.color_mask)
        # Nearest-neighbour resizing: every other pixel.
        np.testing.assert_array_equal(
            half["color_segmentation"][index], scene.color_mask[1::2, 1::2])


def test_scene_evaluation_names_shards_without_colour_masks(
    tmp_path, tokenizer
):
    from training.scenes import evaluation

    image = np.zeros((28, 28, 3), np.uint8)
    mask = _encode(np.zeros((28, 28), np.uint8), "PNG")
    records = [
        _example(_encode(image, "PNG"), synthetic=[b"a red circle"],
                 example_id=f"old-{i}".encode(), segmentation=mask)
        for i in range(3)
    ]
    _write(tmp_path / "eval-00000.tfrecord", records)
    with pytest.raises(ValueError, match=r"3 of the 3 .*`color_segmentation`.*make_scenes"):
        evaluation.load_eval_batches(
            tokenizer, str(tmp_path / "eval-*.tfrecord"), 28, 2)


# ---------------------------------------------------------------------------
# Augmentation building blocks against independent references.


def test_random_resized_crop_window_matches_torchvision_rules():
    rng = np.random.default_rng(0)
    for height, width, scale in ((100, 150, (0.05, 0.32)), (64, 64, (0.32, 1.0))):
        for _ in range(50):
            u = tf.constant(rng.random(40), tf.float32)
            top, left, crop_h, crop_w = (
                int(v)
                for v in augmentations.random_resized_crop_window(height, width, scale, u)
            )
            assert 0 <= top and top + crop_h <= height
            assert 0 <= left and left + crop_w <= width
            area = crop_h * crop_w / (height * width)
            # Rounding of the sides loosens the bounds a little.
            assert scale[0] * 0.8 <= area <= scale[1] * 1.25
            assert 3 / 4 * 0.85 <= crop_w / crop_h <= 4 / 3 * 1.15
    # No try fits a very elongated image at scale ~1: central crop with the
    # aspect ratio clamped to 4/3 (torchvision's fallback).
    u = tf.constant(np.full(40, 0.99), tf.float32)
    top, left, crop_h, crop_w = (
        int(v) for v in augmentations.random_resized_crop_window(20, 200, (0.95, 1.0), u)
    )
    assert (crop_h, crop_w) == (20, round(20 * 4 / 3))
    assert (top, left) == (0, (200 - crop_w) // 2)


def _jitter_reference(image, u, max_hue=0.1):
    """torchvision ColorJitter(0.4, 0.4, 0.2, max_hue) in NumPy + colorsys."""
    brightness = 0.6 + 0.8 * u[0]
    contrast = 0.6 + 0.8 * u[1]
    saturation = 0.8 + 0.4 * u[2]
    hue = -max_hue + 2 * max_hue * u[3]
    weights = np.array([0.2989, 0.587, 0.114])

    def gray(x):
        return (x * weights).sum(-1, keepdims=True)

    def adjust_hue(x):
        out = np.empty_like(x)
        for index in np.ndindex(x.shape[:2]):
            h, s, v = colorsys.rgb_to_hsv(*x[index])
            out[index] = colorsys.hsv_to_rgb((h + hue) % 1.0, s, v)
        return out

    operations = [
        lambda x: np.clip(x * brightness, 0, 1),
        lambda x: np.clip(contrast * x + (1 - contrast) * gray(x).mean(), 0, 1),
        lambda x: np.clip(saturation * x + (1 - saturation) * gray(x), 0, 1),
        lambda x: np.clip(adjust_hue(x), 0, 1),
    ]
    for operation in np.argsort(u[4:8], kind="stable"):
        image = operations[operation](image)
    return image


def test_color_jitter_matches_reference():
    rng = np.random.default_rng(0)
    image = rng.random((6, 7, 3)).astype(np.float32)
    for _ in range(6):
        u = rng.random(8).astype(np.float32)
        got = augmentations.color_jitter(tf.constant(image), tf.constant(u)).numpy()
        np.testing.assert_allclose(got, _jitter_reference(image.astype(np.float64), u), atol=2e-3)
    # Neutral factors: identity.
    neutral = np.array([0.5, 0.5, 0.5, 0.5, 0.1, 0.2, 0.3, 0.4], np.float32)
    np.testing.assert_allclose(
        augmentations.color_jitter(tf.constant(image), tf.constant(neutral)).numpy(),
        image,
        atol=1e-5,
    )


def test_color_jitter_hue_sets_the_largest_hue_shift():
    rng = np.random.default_rng(2)
    image = rng.random((5, 6, 3)).astype(np.float32)
    for max_hue in (0.0, 0.05, 0.3):
        for _ in range(3):
            u = rng.random(8).astype(np.float32)
            got = augmentations.color_jitter(
                tf.constant(image), tf.constant(u), max_hue).numpy()
            np.testing.assert_allclose(
                got, _jitter_reference(image.astype(np.float64), u, max_hue),
                atol=2e-3)
    # The largest shift, everything else neutral: DINO's 0.1 turns pure red
    # 36 degrees towards yellow; 0 leaves it exactly as it was.
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 1.0
    largest = np.array([0.5, 0.5, 0.5, 1.0, 0.1, 0.2, 0.3, 0.4], np.float32)
    shifted = augmentations.color_jitter(
        tf.constant(red), tf.constant(largest), 0.1).numpy()
    np.testing.assert_allclose(shifted[0, 0], [1.0, 0.6, 0.0], atol=1e-5)
    unchanged = augmentations.color_jitter(
        tf.constant(red), tf.constant(largest), 0.0).numpy()
    np.testing.assert_array_equal(unchanged, red)


def test_gaussian_blur_matches_reference():
    rng = np.random.default_rng(1)
    image = rng.random((12, 10, 3)).astype(np.float32)
    sigma = 1.3
    offsets = np.arange(-4, 5)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    expected = np.zeros_like(image, dtype=np.float64)
    for dy in range(9):
        for dx in range(9):
            expected += (
                kernel[dy] * kernel[dx] * padded[dy : dy + 12, dx : dx + 10]
            )
    got = augmentations.gaussian_blur(tf.constant(image), tf.constant(sigma)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_augment_crop_on_constant_image_stays_constant():
    # Every augmentation is per pixel or spatially uniform on a flat image
    # (blur with reflect padding too), so the view stays flat and in range.
    image = tf.constant(np.full((50, 70, 3), (200, 40, 90), np.uint8))
    for i in range(8):
        view = augmentations.augment_crop(
            image, tf.constant([i, 1], tf.int64), 28, (0.05, 1.0), 1.0, 1.0
        ).numpy()
        assert view.shape == (28, 28, 3)
        assert view.min() >= 0 and view.max() <= 1
        np.testing.assert_allclose(view, np.broadcast_to(view[0, 0], view.shape), atol=1e-4)


def test_mask_grid_follows_crop_and_patch_size(clean_shards, tokenizer):
    dataset = _pretraining_dataset(
        clean_shards["pattern"],
        tokenizer,
        batch_size=2,
        global_crop_size=42,
        local_crop_size=14,
        num_local_crops=0,
        patch_size=7,
        mask_ratio=0.5,
        seed=0,
        sequence_length=SEQUENCE_LENGTH,
    )
    batch = next(iter(dataset))
    assert batch["patch_mask"].shape == (2, 6, 6)
    assert batch["local_images"].shape == (2, 0, 14, 14, 3)
    expected = masking.num_masked_patches(6, 6, 0.5)
    np.testing.assert_array_equal(
        np.asarray(batch["patch_mask"]).sum(axis=(1, 2)), expected
    )
    assert math.isclose(expected / 36, 0.5)


def test_benchmark_tool_runs_small():
    from tools import benchmark_data

    result = benchmark_data.main(
        [
            "--num-images", "12", "--num-shards", "2", "--image-size", "64",
            "--batch-size", "4", "--global-crop-size", "56",
            "--local-crop-size", "28", "--num-local-crops", "2",
            "--warmup-batches", "1", "--batches", "2", "--tokenizer", "",
            "--json",
        ]
    )
    assert result["images_per_s"] > 0 and result["batches_per_s"] > 0
    assert result["tokenizer"] == "hashing"
    assert result["records_dropped"] == 0 and result["records_read"] >= 12


def _two_colour_shard(tmp_path, count):
    """`count` records of an 80 px image: red left half, blue right half."""
    image = np.zeros((80, 80, 3), np.uint8)
    image[:, :40] = (220, 30, 35)
    image[:, 40:] = (35, 75, 225)
    records = [
        _example(_encode(image, "PNG"), [b"a red square"], [b"red left, blue right"],
                 str(i).encode())
        for i in range(count)
    ]
    return _write(tmp_path / "two_colour.tfrecord", records)


@pytest.mark.parametrize("caption_safe", [True, False])
def test_caption_safe_global_crop_keeps_colours_and_sides(tmp_path, tokenizer, caption_safe):
    pattern = _two_colour_shard(tmp_path, 48)
    dataset = _pretraining_dataset(
        pattern, tokenizer, batch_size=48, global_crop_size=56,
        local_crop_size=28, num_local_crops=1, global_crop_scale=(0.85, 1.0),
        # Solarize and blur every global crop unless caption-safe forbids it.
        global_solarize_probability=1.0, global_blur_probability=1.0,
        caption_safe_global_crop=caption_safe, shuffle_buffer=0, seed=3,
        sequence_length=SEQUENCE_LENGTH, repeat=False,
    )
    views = np.asarray(next(iter(dataset))["global_images"])
    red = np.array([220, 30, 35]) / 255.0
    blue = np.array([35, 75, 225]) / 255.0
    # The crop spans both halves; its outer columns are far from the edge
    # between them, so they keep the exact colours unless augmented.
    left_is_red = np.abs(views[:, :, 0] - red).max(axis=(1, 2)) < 0.02
    right_is_blue = np.abs(views[:, :, -1] - blue).max(axis=(1, 2)) < 0.02
    kept = left_is_red & right_is_blue
    if caption_safe:
        assert kept.all(), np.flatnonzero(~kept)
    else:
        # Solarization alone changes every view: the check can fail.
        assert not kept.any()


def _one_colour_shard(tmp_path, count, colour=(230, 120, 20)):
    """`count` records of a uniform 80 px image of one (orange) colour."""
    image = np.zeros((80, 80, 3), np.uint8) + np.array(colour, np.uint8)
    records = [
        _example(_encode(image, "PNG"), [b"orange"], [b"an orange image"],
                 str(i).encode())
        for i in range(count)
    ]
    return _write(tmp_path / "one_colour.tfrecord", records)


@pytest.mark.parametrize(
    "jitter, grayscale", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
)
def test_color_probabilities_apply_to_every_crop(tmp_path, tokenizer, jitter, grayscale):
    pattern = _one_colour_shard(tmp_path, 32)
    dataset = _pretraining_dataset(
        pattern, tokenizer, batch_size=32, global_crop_size=56,
        local_crop_size=28, num_local_crops=2,
        global_solarize_probability=0.0, global_blur_probability=0.0,
        local_blur_probability=0.0, color_jitter_probability=jitter,
        grayscale_probability=grayscale, caption_safe_global_crop=False,
        shuffle_buffer=0, seed=5, sequence_length=SEQUENCE_LENGTH, repeat=False,
    )
    batch = next(iter(dataset))
    orange = np.array([230, 120, 20]) / 255.0
    for name in ("global_images", "local_images"):
        views = np.asarray(batch[name])
        views = views.reshape(views.shape[0], -1, 3)
        kept = np.abs(views - orange).max(axis=(1, 2)) < 0.01
        if jitter == 0.0 and grayscale == 0.0:
            assert kept.all(), (name, np.flatnonzero(~kept))
        else:
            assert not kept.any(), (name, np.flatnonzero(kept))
