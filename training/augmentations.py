"""DINO multi-crop image augmentation, as stateless TensorFlow ops.

The views of one image for TIPS pretraining, following DINO / DINOv2 with
TIPS' single global crop: random resized crop (area `scale` of the image,
aspect ratio 3/4..4/3, bicubic), horizontal flip (p 0.5), colour jitter
(brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1 by default; p 0.8),
grayscale
(p 0.2), Gaussian blur (sigma 0.1..2, kernel 9) and, on the global crop
only, solarization. DINO blurs its first global crop always and its second
with p 0.1; TIPS keeps one global crop which is also the image of the
image-text contrastive loss, so the default blurs it with p 0.5
(`DataConfig.global_blur_probability`), like the local crops. Views come out
in [0, 1], not normalized.

* `multi_crop`: the global view and the local views of an image, as a
  `DataConfig` asks for them.
* `augment_crop`: one view (crop, resize, photometric augmentation).
* `random_resized_crop_window`, `color_jitter`, `gaussian_blur`: the
  building blocks, each matching its torchvision / DINOv2 counterpart.

Every random choice derives from a stateless seed (a shape `(2,)` integer
tensor), so the views are reproducible and can be drawn in parallel
`tf.data` stages.

Example:

```python
seeds = tf.random.experimental.stateless_split([0, 7], 1 + config.num_local_crops)
global_view, local_views = multi_crop(image, seeds, config)
```
"""

import math

import tensorflow as tf

from training.data_config import DataConfig

# torchvision / DINO augmentation constants.
_CROP_ASPECT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_CROP_ATTEMPTS = 10
_BRIGHTNESS = 0.4
_CONTRAST = 0.4
_SATURATION = 0.2
_BLUR_KERNEL_SIZE = 9
_BLUR_SIGMA = (0.1, 2.0)
_SOLARIZE_THRESHOLD = 128.0 / 255.0

def random_resized_crop_window(height, width, scale, u):
    """torchvision `RandomResizedCrop.get_params`, vectorized over tries.

    Args:
        height, width: int32 scalars, the image size.
        scale: `(min, max)` area fraction of the crop.
        u: 4 * 10 uniforms in [0, 1) (10 tries of area, aspect ratio, top
            and left).

    Returns:
        `(top, left, crop_height, crop_width)`, int32 scalars: the first try
        that fits, else a central crop with the aspect ratio clamped to
        3/4..4/3 (torchvision's fallback).
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


def color_jitter(image, u, hue=DataConfig.color_jitter_hue):
    """torchvision `ColorJitter(0.4, 0.4, 0.2, hue)` of a float image.

    The four adjustments (brightness, contrast, saturation, hue) in random
    order. `u` holds 8 uniforms: 4 factors, then 4 that set the order.
    `hue` (DINO: 0.1) is the largest hue shift, as a fraction of the colour
    wheel; 0 leaves hue alone (as torchvision does).
    """
    brightness = 1.0 - _BRIGHTNESS + 2.0 * _BRIGHTNESS * u[0]
    contrast = 1.0 - _CONTRAST + 2.0 * _CONTRAST * u[1]
    saturation = 1.0 - _SATURATION + 2.0 * _SATURATION * u[2]
    hue_shift = -hue + 2.0 * hue * u[3]
    order = tf.argsort(u[4:8])

    def adjust_hue(x):
        if hue == 0:
            return x
        return tf.clip_by_value(tf.image.adjust_hue(x, hue_shift), 0.0, 1.0)

    branches = [
        lambda x: tf.clip_by_value(x * brightness, 0.0, 1.0),
        lambda x: _blend(x, tf.reduce_mean(_grayscale(x)), contrast),
        lambda x: _blend(x, _grayscale(x), saturation),
        adjust_hue,
    ]
    for step in range(4):
        image = tf.switch_case(
            order[step],
            [lambda fn=fn, x=image: fn(x) for fn in branches],
        )
    return image


def gaussian_blur(image, sigma):
    """Separable Gaussian blur of a float `(H, W, 3)` image, kernel 9,
    reflect padding (DINOv2)."""
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


def augment_crop(
    image,
    seed,
    size,
    scale,
    blur_probability,
    solarize_probability,
    flip_probability=0.5,
    color_jitter_probability=DataConfig.color_jitter_probability,
    grayscale_probability=DataConfig.grayscale_probability,
    color_jitter_hue=DataConfig.color_jitter_hue,
):
    """One DINO view of a uint8 `(H, W, 3)` image: float32 `(size, size, 3)`.

    `seed` is a shape `(2,)` stateless seed; `scale` the `(min, max)` area
    fraction of the crop.

    Random resized crop (area `scale`, aspect 3/4..4/3, bicubic with
    antialiasing), horizontal flip (p `flip_probability`), colour jitter
    (p `color_jitter_probability`, largest hue shift `color_jitter_hue`),
    grayscale (p `grayscale_probability`; all three default to
    `DataConfig`'s, DINO's 0.8, 0.1 and 0.2), Gaussian blur
    (p `blur_probability`, sigma 0.1..2), solarization
    (p `solarize_probability`).
    """
    u = tf.random.stateless_uniform([_CROP_UNIFORMS], seed=seed)
    shape = tf.shape(image)
    top, left, crop_h, crop_w = random_resized_crop_window(
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
        lambda: color_jitter(view, u[2:10], color_jitter_hue),
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
            lambda: gaussian_blur(view, sigma),
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


def multi_crop(image, seeds, config):
    """The global view and the local views of one image.

    Args:
        image: uint8 `(H, W, 3)` tensor.
        seeds: `(1 + config.num_local_crops, 2)` stateless seeds: the
            global view's, then one per local view.
        config: the `DataConfig` (crop sizes and scales, blur, colour
            jitter, grayscale and solarization probabilities,
            `caption_safe_global_crop`).

    Returns:
        `(global_view, local_views)`: float32 `(G, G, 3)` and
        `(num_local_crops, L, L, 3)`, in [0, 1].
    """
    # Captions describe colours and left/right positions: a caption-safe
    # global crop (the view contrasted with the captions) keeps them true:
    # no flip and nothing that changes colours (jitter, grayscale,
    # solarization). Blur changes no colour name and stays.
    colours = dict(
        color_jitter_probability=config.color_jitter_probability,
        grayscale_probability=config.grayscale_probability,
        color_jitter_hue=config.color_jitter_hue,
    )
    solarize_probability = config.global_solarize_probability
    global_colours = colours
    if config.caption_safe_global_crop:
        solarize_probability = 0.0
        global_colours = dict(
            flip_probability=0.0,
            color_jitter_probability=0.0,
            grayscale_probability=0.0,
        )
    global_view = augment_crop(
        image,
        seeds[0],
        config.global_crop_size,
        config.global_crop_scale,
        config.global_blur_probability,
        solarize_probability,
        **global_colours,
    )
    local_views = [
        augment_crop(
            image,
            seeds[1 + i],
            config.local_crop_size,
            config.local_crop_scale,
            config.local_blur_probability,
            0.0,
            **colours,
        )
        for i in range(config.num_local_crops)
    ]
    if not local_views:
        size = config.local_crop_size
        return global_view, tf.zeros([0, size, size, 3], tf.float32)
    return global_view, tf.stack(local_views)
