"""The synthetic scenes as TFRecord shards of `tf.train.Example`.

`encode_scene` turns a `Scene` (`training.scenes.generator`) into the
feature values of its record (`training.records.make_example` makes the
`tf.train.Example`), and `write_scene_shards` writes a split of scenes as
`{split}-{i:05d}-of-{n:05d}.tfrecord` shards plus a `{split}-info.json`,
generating the scenes in worker processes. The bytes written depend only on
the seed, the split and the `SceneConfig`, not on the number of shards or
workers.

Example:

```python
from training.scenes import generator
from training.scenes import shards

config = generator.SceneConfig(image_size=112)
shards.write_scene_shards("/tmp/scenes", num_scenes=1000, num_shards=4,
                          seed=0, config=config, split_name="train")
```
"""

import dataclasses
import io
import json
import multiprocessing
import os

from PIL import Image

from training.scenes.generator import COLORS
from training.scenes.generator import SceneConfig
from training.scenes.generator import class_names
from training.scenes.generator import color_class_names
from training.scenes.generator import generate_scene
from training.scenes.generator import scene_rng


def _encode_png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def encode_scene(scene, scene_id, config=None):
    """Encodes a scene into the feature values of its TFRecord example.

    Args:
        scene: a `Scene`.
        scene_id: str, unique id of the scene.
        config: the `SceneConfig` it was made with (image format).

    Returns:
        dict of feature name to list of `bytes` (or floats for
        `object_bboxes`): `image`, `caption_noisy` (no value when the noisy
        caption is empty), `caption_synthetic`, `id`, `segmentation`
        (PNG of `scene.mask`, shape classes), `color_segmentation` (PNG of
        `scene.color_mask`, colour classes), `object_shapes`,
        `object_colors`, `object_bboxes` (normalized
        `x_min, y_min, x_max, y_max` per object, flattened).

    Example:

    ```python
    features = encode_scene(scene, "train-00000000")
    ```
    """
    if config is None:
        config = SceneConfig()
    if config.image_format == "png":
        image_bytes = _encode_png(scene.image)
    else:
        buffer = io.BytesIO()
        Image.fromarray(scene.image).save(
            buffer, format="JPEG", quality=config.jpeg_quality
        )
        image_bytes = buffer.getvalue()
    height, width = scene.mask.shape
    bboxes = []
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.bbox
        bboxes.extend([x0 / width, y0 / height, x1 / width, y1 / height])
    return {
        "image": [image_bytes],
        "caption_noisy": (
            [scene.noisy_caption.encode("utf-8")] if scene.noisy_caption else []
        ),
        "caption_synthetic": [c.encode("utf-8") for c in scene.synthetic_captions],
        "id": [scene_id.encode("utf-8")],
        "segmentation": [_encode_png(scene.mask)],
        "color_segmentation": [_encode_png(scene.color_mask)],
        "object_shapes": [obj.shape.encode("utf-8") for obj in scene.objects],
        "object_colors": [obj.color.encode("utf-8") for obj in scene.objects],
        "object_bboxes": bboxes,
    }



def shard_file_name(split_name, shard_index, num_shards):
    """`{split}-{i:05d}-of-{n:05d}.tfrecord`."""
    return f"{split_name}-{shard_index:05d}-of-{num_shards:05d}.tfrecord"


def _shard_ranges(num_scenes, num_shards):
    bounds = [num_scenes * i // num_shards for i in range(num_shards + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(num_shards)]


def _encode_range(args):
    """Worker: generates and encodes scenes `[start, stop)`."""
    seed, split_name, start, stop, config = args
    encoded = []
    for index in range(start, stop):
        scene = generate_scene(scene_rng(seed, split_name, index), config)
        encoded.append(encode_scene(scene, f"{split_name}-{index:08d}", config))
    return encoded


def _chunks(seed, split_name, ranges, config, chunk_size):
    for start, stop in ranges:
        for chunk_start in range(start, stop, chunk_size):
            yield (
                seed,
                split_name,
                chunk_start,
                min(chunk_start + chunk_size, stop),
                config,
            )


def write_scene_shards(
    output_dir,
    num_scenes,
    num_shards,
    seed,
    config=None,
    split_name="train",
    num_workers=None,
):
    """Writes `num_scenes` scenes as TFRecord shards of `tf.train.Example`.

    Shard `i` is `{output_dir}/{split}-{i:05d}-of-{n:05d}.tfrecord` and holds
    a contiguous range of scene indices. Each shard is written to a hidden
    temporary file and renamed when complete, so an interrupted run leaves
    no partial shard under the final name. A `{split}-info.json` file with
    the counts, config and class names is written last.

    Features: `image` (encoded PNG or JPEG, RGB), `caption_noisy` (0 or 1
    value), `caption_synthetic` (1..N values), `id`, and the evaluation
    extras `segmentation` (PNG uint8 mask, see `class_names()`),
    `color_segmentation` (PNG uint8 mask, see `color_class_names()`),
    `object_shapes`, `object_colors`, `object_bboxes` (floats).

    Args:
        output_dir: directory to write into (created if missing).
        num_scenes: number of scenes (>= 0).
        num_shards: number of shards (>= 1).
        seed: dataset seed (int >= 0).
        config: `SceneConfig` (default `SceneConfig()`).
        split_name: split name used in file names, ids and random streams.
        num_workers: processes generating scenes; `None` picks
            `min(num_shards, cpu count)` for large jobs and 1 for small ones.
            The output is the same for any value.

    Returns:
        list of the shard paths written.

    Example:

    ```python
    paths = write_scene_shards("/tmp/scenes", 1000, 4, seed=0)
    ```
    """
    if config is None:
        config = SceneConfig()
    if not isinstance(config, SceneConfig):
        raise TypeError(
            f"`config` must be a SceneConfig, got {type(config).__name__}."
        )
    if int(num_scenes) != num_scenes or num_scenes < 0:
        raise ValueError(f"`num_scenes` must be an int >= 0, got {num_scenes}.")
    if int(num_shards) != num_shards or num_shards < 1:
        raise ValueError(f"`num_shards` must be an int >= 1, got {num_shards}.")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, got {seed}.")
    if not split_name or os.sep in split_name or "/" in split_name:
        raise ValueError(
            f"`split_name` must be a non-empty file-name part, got {split_name!r}."
        )
    num_scenes, num_shards, seed = int(num_scenes), int(num_shards), int(seed)
    if num_workers is None:
        num_workers = (
            min(num_shards, os.cpu_count() or 1) if num_scenes >= 1000 else 1
        )
    if num_workers < 1:
        raise ValueError(f"`num_workers` must be >= 1, got {num_workers}.")

    import tensorflow as tf

    from training import records

    os.makedirs(output_dir, exist_ok=True)
    ranges = _shard_ranges(num_scenes, num_shards)
    chunk_size = 64
    pool = None
    if num_workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(num_workers)
        chunk_results = pool.imap(
            _encode_range, _chunks(seed, split_name, ranges, config, chunk_size)
        )
    else:
        chunk_results = map(
            _encode_range, _chunks(seed, split_name, ranges, config, chunk_size)
        )
    paths = []
    try:
        for shard_index, (start, stop) in enumerate(ranges):
            name = shard_file_name(split_name, shard_index, num_shards)
            final_path = os.path.join(output_dir, name)
            temp_path = os.path.join(output_dir, f".{name}.tmp-{os.getpid()}")
            try:
                with tf.io.TFRecordWriter(temp_path) as writer:
                    for _ in range(start, stop, chunk_size):
                        for features in next(chunk_results):
                            writer.write(
                                records.make_example(features).SerializeToString(
                                    deterministic=True
                                )
                            )
                os.replace(temp_path, final_path)
            finally:
                if os.path.exists(temp_path):
                    os.remove(temp_path)
            paths.append(final_path)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    info = {
        "split": split_name,
        "num_scenes": num_scenes,
        "num_shards": num_shards,
        "seed": seed,
        "config": dataclasses.asdict(config),
        "class_names": class_names(),
        "color_class_names": color_class_names(),
        "colors": list(COLORS),
        "files": [os.path.basename(p) for p in paths],
    }
    info_path = os.path.join(output_dir, f"{split_name}-info.json")
    temp_info = f"{info_path}.tmp-{os.getpid()}"
    with open(temp_info, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(temp_info, info_path)
    return paths
