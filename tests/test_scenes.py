"""Tests for the synthetic scenes (`training/scenes/generator.py`, `shards.py`)
and tools/make_scenes.py."""

import collections
import glob
import os
import re

import numpy as np
import pytest

from training.scenes import generator
from training.scenes import shards

pytestmark = pytest.mark.backend_independent

SHAPE_WORDS = {**{s: s for s in generator.SHAPES}, **{
    plural: shape for shape, plural in generator.SHAPE_PLURALS.items()
}}
COLOR_RE = "|".join(generator.COLORS)
SHAPE_RE = "|".join(sorted(SHAPE_WORDS, key=len, reverse=True))
COUNT_WORDS = {"a": 1, "an": 1, "two": 2, "three": 3, "four": 4}


def _scene(index, seed=0, split="train", config=None):
    return generator.generate_scene(
        generator.scene_rng(seed, split, index), config or generator.SceneConfig()
    )


def _parse_short(caption):
    """(colour, shape) multiset of 'a red circle, two blue stars and ...'."""
    found = collections.Counter()
    pattern = rf"\b(a|an|two|three|four) ({COLOR_RE}) ({SHAPE_RE})\b"
    for count, color, shape in re.findall(pattern, caption):
        found[(color, SHAPE_WORDS[shape])] += COUNT_WORDS[count]
    return found


def _parse_dense(caption):
    """(size, colour, texture, shape, position) of each object sentence."""
    pattern = (
        rf"\bAn? (small|medium|large) ({COLOR_RE})(?: (striped|dotted))? "
        rf"({SHAPE_RE}) is (?:in the|at the|on the) "
        r"(top left|top right|bottom left|bottom right|top|bottom|left|right"
        r"|center)\b"
    )
    found = collections.Counter()
    for size, color, texture, shape, position in re.findall(pattern, caption):
        found[(size, color, texture or "solid", shape, position)] += 1
    return found


def test_class_names_and_constants():
    assert generator.class_names() == [
        "background", "circle", "square", "triangle", "star", "ring", "cross"
    ]
    assert generator.color_class_names() == [
        "background", "red", "green", "blue", "yellow", "purple", "orange",
        "white", "black",
    ]
    assert list(generator.COLORS) == [
        "red", "green", "blue", "yellow", "purple", "orange", "white", "black"
    ]
    # Object colours are pairwise far apart (distinguishable).
    values = np.array(list(generator.COLORS.values()), np.float64)
    distances = np.linalg.norm(values[:, None] - values[None], axis=-1)
    assert distances[~np.eye(len(values), dtype=bool)].min() > 80


def test_same_seed_same_scene_and_different_seed_differs():
    for index in range(5):
        first, second = _scene(index, seed=7), _scene(index, seed=7)
        np.testing.assert_array_equal(first.image, second.image)
        np.testing.assert_array_equal(first.mask, second.mask)
        np.testing.assert_array_equal(first.color_mask, second.color_mask)
        assert first.objects == second.objects
        assert first.noisy_caption == second.noisy_caption
        assert first.synthetic_captions == second.synthetic_captions
        assert shards.encode_scene(first, "x") == shards.encode_scene(second, "x")
    other = _scene(0, seed=8)
    assert not np.array_equal(_scene(0, seed=7).image, other.image)
    # Different splits draw independent streams.
    assert not np.array_equal(
        _scene(0, split="train").image, _scene(0, split="eval").image
    )


def test_scene_arrays_and_objects_are_consistent():
    config = generator.SceneConfig()
    counts = collections.Counter()
    for index in range(60):
        scene = _scene(index, config=config)
        size = config.image_size
        assert scene.image.shape == (size, size, 3)
        assert scene.image.dtype == np.uint8
        assert scene.mask.shape == (size, size) and scene.mask.dtype == np.uint8
        assert scene.color_mask.shape == (size, size)
        assert scene.color_mask.dtype == np.uint8
        assert 1 <= len(scene.objects) <= 4
        counts[len(scene.objects)] += 1
        # Background exactly where no object is visible, in both masks.
        np.testing.assert_array_equal(scene.mask == 0, scene.instance_mask == 0)
        np.testing.assert_array_equal(scene.color_mask == 0, scene.mask == 0)
        assert scene.instance_mask.max() == len(scene.objects)
        for i, obj in enumerate(scene.objects):
            pixels = scene.instance_mask == i + 1
            assert pixels.sum() == obj.area > 0
            # The mask holds the shape class of the object.
            assert set(np.unique(scene.mask[pixels])) == {
                generator.SHAPES.index(obj.shape) + 1
            }
            # The colour mask holds the class of the object's colour.
            assert set(np.unique(scene.color_mask[pixels])) == {
                generator.color_class_names().index(obj.color)
            }
            ys, xs = np.nonzero(pixels)
            assert obj.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            color = np.array(generator.COLORS[obj.color], np.uint8)
            matches = np.all(scene.image[pixels] == color, axis=-1)
            if obj.texture == "solid":
                assert matches.all(), (index, i, obj)
            else:
                # Stripes/dots in a second shade; the named colour dominates.
                assert 0.5 < matches.mean() < 1.0, (index, i, obj)
                others = np.unique(scene.image[pixels][~matches], axis=0)
                assert len(others) == 1  # a single second shade
                distance = np.linalg.norm(others[0].astype(float) - color)
                assert distance > 60, (obj, others[0])
        # Every object keeps most of its pixels visible.
        assert scene.salient_index == max(
            range(len(scene.objects)), key=lambda k: (scene.objects[k].area, -k)
        )
    assert set(counts) == {1, 2, 3, 4}


def test_synthetic_captions_name_every_object_in_the_mask():
    for index in range(80):
        scene = _scene(index, seed=1)
        objects = scene.objects
        short, positional, dense = scene.synthetic_captions
        expected_pairs = collections.Counter((o.color, o.shape) for o in objects)
        assert _parse_short(short) == expected_pairs, short
        # The short caption ends with the background, as the dense one
        # describes it.
        article = generator._article(scene.background)
        phrase = f" on {article} {scene.background} background"
        assert short.endswith(phrase), (short, scene.background)
        assert f"{phrase}." in dense
        *colors, kind = scene.background.replace(" and ", " ").split()
        assert kind in generator.BACKGROUND_KINDS
        assert set(colors) <= set(generator.BACKGROUND_COLORS)
        # Every (colour, shape) the captions name exists in the mask with
        # that class, on pixels of that colour.
        for color, shape in _parse_short(short):
            class_id = generator.class_names().index(shape)
            color_value = np.array(generator.COLORS[color], np.uint8)
            on_class = scene.mask == class_id
            assert on_class.any(), (short, shape)
            assert np.all(scene.image[on_class] == color_value, axis=-1).any()
        for obj in objects:
            phrase = (
                f"{generator._article(obj.color)} {obj.color} {obj.shape} "
                f"{generator._position_phrase(obj.position)}"
            )
            assert phrase in positional, (phrase, positional)
        expected_dense = collections.Counter(
            (o.size, o.color, o.texture, o.shape, o.position) for o in objects
        )
        assert _parse_dense(dense) == expected_dense, dense
        word = ("one", "two", "three", "four")[len(objects) - 1]
        assert dense.startswith(word.capitalize() + " object")


def test_positions_and_relations_follow_geometry():
    scene = None
    for index in range(200):
        candidate = _scene(index, seed=2)
        if len(candidate.objects) == 2:
            scene = candidate
            break
    assert scene is not None
    size = generator.SceneConfig().image_size
    for obj in scene.objects:
        x, y = obj.centroid
        vertical = "top" if y < size / 3 else "bottom" if y >= 2 * size / 3 else ""
        horizontal = "left" if x < size / 3 else "right" if x >= 2 * size / 3 else ""
        assert obj.position == (f"{vertical} {horizontal}".strip() or "center")
    first = scene.objects[scene.salient_index]
    second = scene.objects[1 - scene.salient_index]
    dense = scene.synthetic_captions[2]
    dx = second.centroid[0] - first.centroid[0]
    dy = second.centroid[1] - first.centroid[1]
    threshold = 0.12 * size
    if dx > threshold:
        assert "to the right of the" in dense
    if dx < -threshold:
        assert "to the left of the" in dense
    if dy > threshold:
        assert "below" in dense
    if dy < -threshold:
        assert "above" in dense


def test_noisy_captions_are_noisy_but_about_the_salient_object():
    config = generator.SceneConfig()
    empty = wrong = 0
    total = 400
    fillers = 0
    for index in range(total):
        scene = _scene(index, seed=3, config=config)
        caption = scene.noisy_caption
        if not caption:
            empty += 1
            assert not scene.noisy_color_is_wrong
            continue
        salient = scene.objects[scene.salient_index]
        text = caption.lower()
        assert re.search(rf"\b{salient.shape}\b", text), (caption, salient)
        # Only the salient object's shape is named.
        named_shapes = set(re.findall(rf"\b({'|'.join(generator.SHAPES)})\b", text))
        assert named_shapes == {salient.shape}
        named_colors = re.findall(rf"\b({COLOR_RE})\b", text)
        assert len(named_colors) <= 1
        if scene.noisy_color_is_wrong:
            wrong += 1
            assert named_colors and named_colors[0] != salient.color
        elif named_colors:
            assert named_colors[0] == salient.color
        if re.search(r"\.(jpe?g|png)\b|buy now|stock photo|sale|clipart|icon"
                     r"|sticker|wallpaper|price|shipping|quality|royalty|vector",
                     text):
            fillers += 1
    assert 0.01 * total <= empty <= 0.12 * total
    non_empty = total - empty
    # 80% name a colour, 20% of those wrong: about 16%.
    assert 0.08 * non_empty <= wrong <= 0.26 * non_empty
    assert fillers > 0.5 * non_empty


def test_config_validation_and_image_sizes():
    for size in (28, 56, 224):
        scene = _scene(0, config=generator.SceneConfig(image_size=size))
        assert scene.image.shape == (size, size, 3)
        assert scene.mask.shape == (size, size)
    with pytest.raises(ValueError, match="image_size"):
        generator.SceneConfig(image_size=100)
    with pytest.raises(TypeError, match="image_size"):
        generator.SceneConfig(image_size=112.0)
    with pytest.raises(ValueError, match="max_objects"):
        generator.SceneConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="image_format"):
        generator.SceneConfig(image_format="gif")
    with pytest.raises(ValueError, match="noisy_empty_prob"):
        generator.SceneConfig(noisy_empty_prob=1.5)
    with pytest.raises(TypeError, match="rng"):
        generator.generate_scene(0, generator.SceneConfig())
    with pytest.raises(ValueError, match="num_shards"):
        shards.write_scene_shards("/tmp/unused", 4, 0, seed=0)


def _parse_spec(tf):
    return {
        "image": tf.io.FixedLenFeature([], tf.string),
        "caption_noisy": tf.io.VarLenFeature(tf.string),
        "caption_synthetic": tf.io.VarLenFeature(tf.string),
        "id": tf.io.FixedLenFeature([], tf.string),
        "segmentation": tf.io.FixedLenFeature([], tf.string),
        "color_segmentation": tf.io.FixedLenFeature([], tf.string),
        "object_shapes": tf.io.VarLenFeature(tf.string),
        "object_colors": tf.io.VarLenFeature(tf.string),
        "object_bboxes": tf.io.VarLenFeature(tf.float32),
    }


def test_shards_parse_with_tf_data_and_match_the_generator(tmp_path):
    tf = pytest.importorskip("tensorflow")
    config = generator.SceneConfig(image_size=56)
    paths = shards.write_scene_shards(
        str(tmp_path), num_scenes=25, num_shards=3, seed=5, config=config,
        split_name="eval",
    )
    names = [os.path.basename(p) for p in paths]
    assert names == [f"eval-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert sorted(os.listdir(tmp_path)) == sorted(names + ["eval-info.json"])
    dataset = tf.data.TFRecordDataset(paths).map(
        lambda record: tf.io.parse_single_example(record, _parse_spec(tf))
    )
    seen = 0
    for index, example in enumerate(dataset):
        seen += 1
        scene = generator.generate_scene(generator.scene_rng(5, "eval", index), config)
        assert example["id"].numpy() == f"eval-{index:08d}".encode()
        image = tf.io.decode_image(example["image"], channels=3).numpy()
        np.testing.assert_array_equal(image, scene.image)
        mask = tf.io.decode_png(example["segmentation"]).numpy()
        assert mask.shape == (56, 56, 1) and mask.dtype == np.uint8
        np.testing.assert_array_equal(mask[..., 0], scene.mask)
        color_mask = tf.io.decode_png(example["color_segmentation"]).numpy()
        assert color_mask.shape == (56, 56, 1) and color_mask.dtype == np.uint8
        np.testing.assert_array_equal(color_mask[..., 0], scene.color_mask)
        noisy = example["caption_noisy"].values.numpy().tolist()
        assert noisy == ([scene.noisy_caption.encode()] if scene.noisy_caption else [])
        synthetic = example["caption_synthetic"].values.numpy().tolist()
        assert synthetic == [c.encode() for c in scene.synthetic_captions]
        assert example["object_shapes"].values.numpy().tolist() == [
            o.shape.encode() for o in scene.objects
        ]
        assert example["object_colors"].values.numpy().tolist() == [
            o.color.encode() for o in scene.objects
        ]
        boxes = example["object_bboxes"].values.numpy().reshape(-1, 4)
        np.testing.assert_allclose(
            boxes * 56, np.array([o.bbox for o in scene.objects]), atol=1e-4
        )
    assert seen == 25


def test_shard_bytes_are_deterministic_across_runs_and_workers(tmp_path):
    config = generator.SceneConfig(image_size=56)
    first = shards.write_scene_shards(
        str(tmp_path / "a"), 24, 2, seed=11, config=config, num_workers=1
    )
    second = shards.write_scene_shards(
        str(tmp_path / "b"), 24, 2, seed=11, config=config, num_workers=2
    )
    for path_a, path_b in zip(first, second):
        with open(path_a, "rb") as a, open(path_b, "rb") as b:
            assert a.read() == b.read()
    # A different number of shards holds the same scenes in the same order.
    tf = pytest.importorskip("tensorflow")
    third = shards.write_scene_shards(
        str(tmp_path / "c"), 24, 5, seed=11, config=config
    )
    records_a = [r.numpy() for r in tf.data.TFRecordDataset(first)]
    records_c = [r.numpy() for r in tf.data.TFRecordDataset(third)]
    assert records_a == records_c


def test_interrupted_write_leaves_no_partial_shard(tmp_path, monkeypatch):
    tf = pytest.importorskip("tensorflow")
    config = generator.SceneConfig(image_size=28)
    out = str(tmp_path)
    # A complete earlier version of shard 1 must survive a failed rewrite.
    old = shards.write_scene_shards(out, 20, 2, seed=0, config=config)
    with open(old[1], "rb") as f:
        old_shard_1 = f.read()

    real_generate = generator.generate_scene
    calls = {"n": 0}

    def failing_generate(rng, config=None):
        calls["n"] += 1
        if calls["n"] > 15:  # fails inside shard 1 (scenes 10..19)
            raise RuntimeError("killed")
        return real_generate(rng, config)

    monkeypatch.setattr(shards, "generate_scene", failing_generate)
    with pytest.raises(RuntimeError, match="killed"):
        shards.write_scene_shards(out, 20, 2, seed=1, config=config, num_workers=1)
    monkeypatch.setattr(shards, "generate_scene", real_generate)

    # No temporary files left; shard 1 is the old complete one.
    assert sorted(os.listdir(out)) == sorted(
        ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
         "train-info.json"]
    )
    with open(old[1], "rb") as f:
        assert f.read() == old_shard_1
    # Shard 0 was fully rewritten with the new seed (10 complete records).
    records = list(tf.data.TFRecordDataset(old[0]))
    assert len(records) == 10
    example = tf.train.Example.FromString(records[0].numpy())
    new_scene = real_generate(generator.scene_rng(1, "train", 0), config)
    assert example.features.feature["caption_synthetic"].bytes_list.value[0] == (
        new_scene.synthetic_captions[0].encode()
    )


def test_generation_throughput_sanity():
    # Not timed (machines vary): a few hundred scenes must simply complete
    # and be distinct.
    config = generator.SceneConfig()
    digests = set()
    for index in range(300):
        scene = _scene(index, seed=9, config=config)
        digests.add(scene.image.tobytes()[:4096] + scene.mask.tobytes())
    assert len(digests) == 300


def test_make_scenes_cli(tmp_path, capsys):
    from tools import make_scenes

    out = str(tmp_path / "data")
    code = make_scenes.main([
        "--output_dir", out, "--num_train", "12", "--num_eval", "5",
        "--num_shards", "2", "--seed", "3", "--image_size", "42",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "train: 12 scenes in 2 shards" in printed
    assert "eval: 5 scenes in 1 shards" in printed
    assert "scenes/min" in printed
    assert len(glob.glob(os.path.join(out, "train-*-of-00002.tfrecord"))) == 2
    assert len(glob.glob(os.path.join(out, "eval-*-of-00001.tfrecord"))) == 1
    with pytest.raises(SystemExit, match="image_size"):
        make_scenes.main(["--output_dir", out, "--image_size", "50"])
