"""Tests of the data settings and the record schema: `DataConfig`
(training/data_config.py), the `PretrainConfig.data` section that feeds the
pipeline, and `training.records.make_example`."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from training import masking
from training import pipelines
from training import records
from training.config import PretrainConfig
from training.data_config import MASK_MODES
from training.data_config import ConfigFieldError
from training.data_config import DataConfig

pytestmark = pytest.mark.backend_independent


def test_data_config_validates_once_and_names_the_field():
    config = DataConfig(batch_size=4, global_crop_scale=[0.4, 1], mask_ratio=0)
    assert config.global_crop_scale == (0.4, 1) and isinstance(
        config.mask_ratio, float
    )
    assert config.mask_grid_size == 224 // 14
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 8
    for changes, message in (
        ({"batch_size": 0}, "DataConfig.batch_size must be >= 1. Received: 0."),
        ({"batch_size": True}, "DataConfig.batch_size must be an int"),
        ({"global_crop_size": 50}, "global_crop_size must be a multiple of patch_size=14"),
        ({"local_crop_scale": (0.5, 0.1)}, "local_crop_scale must be a pair"),
        ({"mask_mode": "grid"}, "mask_mode must be one of ['random', 'block']"),
        ({"synthetic_caption_sampling": "last"}, "synthetic_caption_sampling"),
        ({"global_blur_probability": float("nan")}, "global_blur_probability"),
        ({"color_jitter_probability": 1.5}, "color_jitter_probability must be in [0, 1]"),
        ({"grayscale_probability": -0.1}, "grayscale_probability must be in [0, 1]"),
        ({"color_jitter_hue": 0.6}, "color_jitter_hue must be in [0, 0.5]"),
        ({"shuffle_buffer": -1}, "shuffle_buffer must be >= 0"),
        ({"seed": 2.5}, "seed must be an int or None"),
        ({"num_parallel_reads": 0}, "num_parallel_reads"),
    ):
        with pytest.raises(ConfigFieldError) as info:
            config.replace(**changes)
        assert message in str(info.value), (changes, str(info.value))
        assert info.value.field == next(iter(changes))


def test_pretrain_config_data_section():
    config = PretrainConfig.tiny("tips_v2", seed=3, mask_mode="block")
    data = config.data
    assert isinstance(data, DataConfig)
    for name in (
        "batch_size", "global_crop_size", "local_crop_size", "num_local_crops",
        "global_crop_scale", "local_crop_scale", "patch_size", "mask_ratio",
        "mask_mode", "caption_safe_global_crop", "color_jitter_probability",
        "color_jitter_hue", "grayscale_probability", "seed",
    ):
        assert getattr(data, name) == getattr(config, name), name
    assert data.sequence_length == config.text_max_length
    assert data.synthetic_caption_sampling == "random"
    assert PretrainConfig.tiny("tips").data.synthetic_caption_sampling == "first"
    assert data.shuffle_buffer == 10_000
    high_res = data.replace(global_crop_size=config.high_res_crop_size)
    assert high_res.mask_grid_size == config.high_res_crop_size // 14
    # The data fields are checked by the section, reported in
    # PretrainConfig's words and names.
    with pytest.raises(ValueError) as info:
        config.replace(text_max_length=0)
    assert str(info.value) == (
        "PretrainConfig.text_max_length must be >= 1. Received: 0."
    )
    with pytest.raises(ValueError) as info:
        config.replace(mask_mode="grid")
    assert str(info.value) == (
        "PretrainConfig.mask_mode must be one of ['random', 'block']. "
        "Received: 'grid'."
    )


def test_mask_modes_have_one_home():
    assert masking.MASK_MODES is MASK_MODES


def test_pipeline_takes_a_data_config(tmp_path):
    with pytest.raises(TypeError, match="DataConfig"):
        pipelines.make_pretraining_dataset(
            str(tmp_path / "x.tfrecord"), lambda t: t, {"batch_size": 2}
        )


def test_make_example_follows_the_schema():
    example = records.make_example(
        {
            records.IMAGE: [b"png"],
            records.CAPTION_NOISY: [],
            records.CAPTION_SYNTHETIC: [b"a", b"b"],
            records.ID: [b"0"],
            records.OBJECT_BBOXES: [0.0, 0.25, 0.5, 1.0],
        }
    )
    features = example.features.feature
    assert records.CAPTION_NOISY not in features  # No value: left out.
    assert features[records.OBJECT_BBOXES].WhichOneof("kind") == "float_list"
    parsed = tf.io.parse_single_example(
        example.SerializeToString(), records.parsing_spec()
    )
    dense = {k: tf.sparse.to_dense(v).numpy().tolist() for k, v in parsed.items()}
    assert dense == {
        records.IMAGE: [b"png"],
        records.CAPTION_NOISY: [],
        records.CAPTION_SYNTHETIC: [b"a", b"b"],
        records.ID: [b"0"],
    }
    assert set(records.parsing_spec(with_segmentation=True)) == {
        *records.PRETRAINING_FEATURES, records.SEGMENTATION,
        records.COLOR_SEGMENTATION,
    }
    with pytest.raises(ValueError, match="caption"):
        records.make_example({"caption": [b"x"]})


def test_scene_shards_use_the_schema(tmp_path):
    from training.scenes.generator import SceneConfig
    from training.scenes.shards import write_scene_shards

    (path,) = write_scene_shards(
        str(tmp_path), 2, 1, seed=0, config=SceneConfig(image_size=28)
    )
    for record in tf.data.TFRecordDataset(path):
        example = tf.train.Example.FromString(record.numpy())
        assert set(example.features.feature) <= set(records.FEATURE_TYPES)
        assert set(records.PRETRAINING_FEATURES) - {records.CAPTION_NOISY} <= set(
            example.features.feature
        )
        bboxes = example.features.feature[records.OBJECT_BBOXES].float_list.value
        assert len(bboxes) % 4 == 0 and np.all(np.asarray(bboxes) <= 1.0)
