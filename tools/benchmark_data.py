"""Throughput benchmark of the TIPS pretraining input pipeline.

Builds TFRecord shards of synthetic images (smooth random scenes saved as
JPEG) in a temporary directory, or reads `--data`, runs
`training.pipelines.make_pretraining_dataset` with a `DataConfig` of the
options, at the real defaults (global crop 224, 6 local crops of 98, batch
32), and prints images/s and batches/s after a warm-up, then one JSON line
with all numbers.

Usage:

```
python tools/benchmark_data.py                       # 512 synthetic images
python tools/benchmark_data.py --data "train-*.tfrecord" --batches 50
python tools/benchmark_data.py --num-images 256 --mask-mode block --json
```
"""

import argparse
import io
import json
import os
import tempfile
import time

import numpy as np

import tensorflow as tf

from keras_tips.tips_presets import EMBEDDED_TOKENIZER
from training import pipelines
from training import records
from training.data_config import MASK_MODES
from training.data_config import SYNTHETIC_CAPTION_SAMPLING
from training.data_config import DataConfig

_WORDS = (
    "a red blue green circle square triangle on the left right of near small "
    "large image photo with background top bottom center striped"
).split()


def synthetic_image(rng, size):
    """A smooth random RGB scene (gradient background and rectangles).

    Args:
        rng: `np.random.Generator`.
        size: int, image side in pixels.

    Returns:
        uint8 array `(size, size, 3)`.
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    start, slope_y, slope_x = rng.uniform(0, 255, (3, 3)).astype(np.float32)
    image = start + slope_y * ys[..., None] * 0.5 + slope_x * xs[..., None] * 0.5
    for _ in range(int(rng.integers(2, 6))):
        y0, x0 = rng.integers(0, size - 8, 2)
        h, w = rng.integers(8, size // 2, 2)
        image[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _caption(rng, num_words):
    return " ".join(rng.choice(_WORDS, num_words)).encode("utf-8")


def write_synthetic_shards(directory, num_images, num_shards, image_size, seed=0):
    """Writes `num_images` synthetic records as `num_shards` TFRecord files.

    Args:
        directory: output directory.
        num_images: int, records in total.
        num_shards: int, number of files.
        image_size: int, JPEG side in pixels.
        seed: int, RNG seed.

    Returns:
        Glob pattern of the written files.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    for shard in range(num_shards):
        path = os.path.join(directory, f"bench-{shard:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for index in range(shard, num_images, num_shards):
                buffer = io.BytesIO()
                Image.fromarray(synthetic_image(rng, image_size)).save(
                    buffer, format="JPEG", quality=90
                )
                example = records.make_example(
                    {
                        records.IMAGE: [buffer.getvalue()],
                        records.CAPTION_NOISY: [_caption(rng, 6)],
                        records.CAPTION_SYNTHETIC: [
                            _caption(rng, 5),
                            _caption(rng, 15),
                            _caption(rng, 40),
                        ],
                        records.ID: [f"bench-{index}".encode("utf-8")],
                    }
                )
                writer.write(example.SerializeToString())
    return os.path.join(directory, "bench-*.tfrecord")


def hashing_tokenizer(sequence_length, vocabulary_size=32_000):
    """Whitespace + hashing tokenizer (when no SentencePiece model is at hand).

    Returns a callable `(B,) string -> (B, sequence_length) int32`, pad 0.
    """

    def tokenize(texts):
        words = tf.strings.split(tf.strings.lower(texts))
        ids = tf.strings.to_hash_bucket_fast(words, vocabulary_size - 1) + 1
        ids = ids.to_tensor(default_value=0, shape=[None, sequence_length])
        return tf.cast(ids, tf.int32)

    return tokenize


def make_tokenizer(path, sequence_length):
    """SentencePiece tokenizer from `path` (lowercasing), else hashing."""
    if path and os.path.exists(path):
        import keras_hub

        sentencepiece = keras_hub.tokenizers.SentencePieceTokenizer(
            proto=path, sequence_length=sequence_length
        )
        return (lambda texts: sentencepiece(tf.strings.lower(texts))), path
    return hashing_tokenizer(sequence_length), "hashing"


def run_benchmark(dataset, warmup_batches, batches, window=10):
    """Times `batches` batches after `warmup_batches`.

    Returns:
        `(seconds, window_rates)`: total seconds of the timed batches, and
        batches/s of each window of `window` consecutive batches (the
        median of these is robust to other load on the machine).
    """
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    start = window_start = time.perf_counter()
    window_rates = []
    for index in range(1, batches + 1):
        batch = next(iterator)
        # Materialize on the host, as a training loop would.
        _ = batch["global_images"].numpy()
        if index % window == 0:
            now = time.perf_counter()
            window_rates.append(window / (now - window_start))
            window_start = now
    return time.perf_counter() - start, window_rates


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="TFRecord glob (default: synthetic).")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--num-shards", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--global-crop-size", type=int, default=224)
    parser.add_argument("--local-crop-size", type=int, default=98)
    parser.add_argument("--num-local-crops", type=int, default=6)
    parser.add_argument("--mask-mode", default="random", choices=MASK_MODES)
    parser.add_argument(
        "--synthetic-caption-sampling",
        default="random",
        choices=SYNTHETIC_CAPTION_SAMPLING,
    )
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--shuffle-buffer", type=int, default=1000)
    parser.add_argument("--warmup-batches", type=int, default=5)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default=EMBEDDED_TOKENIZER)
    parser.add_argument(
        "--json", action="store_true", help="Print only the JSON line."
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    tokenizer, tokenizer_name = make_tokenizer(args.tokenizer, args.sequence_length)
    with tempfile.TemporaryDirectory() as directory:
        if args.data:
            pattern = args.data
        else:
            start = time.perf_counter()
            pattern = write_synthetic_shards(
                directory, args.num_images, args.num_shards, args.image_size
            )
            if not args.json:
                print(
                    f"wrote {args.num_images} synthetic {args.image_size}px JPEGs "
                    f"in {time.perf_counter() - start:.1f} s"
                )
        stats = records.PipelineStats()
        config = DataConfig(
            batch_size=args.batch_size,
            global_crop_size=args.global_crop_size,
            local_crop_size=args.local_crop_size,
            num_local_crops=args.num_local_crops,
            mask_mode=args.mask_mode,
            sequence_length=args.sequence_length,
            synthetic_caption_sampling=args.synthetic_caption_sampling,
            shuffle_buffer=args.shuffle_buffer,
            seed=args.seed,
        )
        dataset = pipelines.make_pretraining_dataset(
            pattern, tokenizer, config, stats=stats
        )
        seconds, window_rates = run_benchmark(
            dataset, args.warmup_batches, args.batches
        )
    images = args.batches * args.batch_size
    median_batches_per_s = float(np.median(window_rates)) if window_rates else None
    result = {
        "benchmark": "tips_pretraining_pipeline",
        "images_per_s": round(images / seconds, 2),
        "batches_per_s": round(args.batches / seconds, 3),
        "median_window_images_per_s": (
            round(median_batches_per_s * args.batch_size, 2)
            if median_batches_per_s
            else None
        ),
        "seconds": round(seconds, 3),
        "batches": args.batches,
        "warmup_batches": args.warmup_batches,
        "batch_size": args.batch_size,
        "global_crop_size": args.global_crop_size,
        "local_crop_size": args.local_crop_size,
        "num_local_crops": args.num_local_crops,
        "mask_mode": args.mask_mode,
        "source": args.data or f"synthetic {args.image_size}px JPEG",
        "tokenizer": tokenizer_name,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "records_read": stats.records_read,
        "records_dropped": stats.records_dropped,
    }
    if not args.json:
        print(
            f"{result['images_per_s']:.1f} images/s, "
            f"{result['batches_per_s']:.2f} batches/s, median over windows of 10 "
            f"batches {result['median_window_images_per_s']} images/s "
            f"({args.batches} batches of {args.batch_size} after "
            f"{args.warmup_batches} warm-up batches, {os.cpu_count()} CPUs)"
        )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
