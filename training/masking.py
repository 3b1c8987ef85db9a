"""Patch masks for masked image modeling, as stateless TensorFlow ops.

The student of TIPS (iBOT-style masked image modeling) sees the global crop
with some of its patches replaced by a mask token. This module draws which
patches: a boolean `(grid_h, grid_w)` array, `True` = masked.

* `random_patch_mask`: exactly `num_masked_patches(...)` patches, chosen
  uniformly at random without replacement.
* `block_patch_mask`: BEiT / iBOT block-wise masking: rectangles of random
  area and aspect ratio are added until the target count is reached (then
  optionally topped up with single random patches, so the count is exact).
* `patch_mask`: picks one of the two by name (`"random"` or `"block"`,
  the `MASK_MODES` of `training.data_config`).

The TensorFlow versions are stateless: the same `seed` (a shape `(2,)`
integer tensor, as for `tf.random.stateless_uniform`, or a Python int) gives
the same mask, so they can run inside `tf.data` pipelines (parallel `map`)
and stay reproducible. `random_patch_mask_numpy` and
`block_patch_mask_numpy` implement the same algorithms with a NumPy
`Generator`; they are a readable reference and handy in tests.

Example:

```python
mask = random_patch_mask(16, 16, 0.75, seed=[1, 2])   # tf.bool (16, 16)
blocks = block_patch_mask(16, 16, 0.4, seed=7)        # 102 patches in blocks
ref = block_patch_mask_numpy(16, 16, 0.4, np.random.default_rng(0))
```
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from training.data_config import MASK_MODES


def _check_grid(grid_h, grid_w):
    for name, value in (("grid_h", grid_h), ("grid_w", grid_w)):
        if (
            not isinstance(value, numbers.Integral)
            or isinstance(value, bool)
            or value < 1
        ):
            raise ValueError(
                f"`{name}` must be a positive Python int, got {value!r}."
            )


def num_masked_patches(grid_h, grid_w, mask_ratio):
    """Number of masked patches for a grid and a ratio: `round(ratio * N)`.

    Args:
        grid_h: int, patch rows.
        grid_w: int, patch columns.
        mask_ratio: float in `[0, 1]`, fraction of the `N = grid_h * grid_w`
            patches to mask.

    Returns:
        Python int, `round(mask_ratio * N)` (Python rounding).

    Example:

    ```python
    num_masked_patches(16, 16, 0.75)  # 192
    ```
    """
    _check_grid(grid_h, grid_w)
    if (
        not isinstance(mask_ratio, numbers.Real)
        or isinstance(mask_ratio, bool)
        or not 0.0 <= float(mask_ratio) <= 1.0
    ):
        raise ValueError(
            f"`mask_ratio` must be a float in [0, 1], got {mask_ratio!r}."
        )
    return int(round(float(mask_ratio) * grid_h * grid_w))


def _as_seed(seed):
    """Turns a Python int or a `(2,)` tensor into a `(2,)` int64 seed."""
    if seed is None:
        raise ValueError(
            "`seed` is required (stateless op): pass a Python int or a "
            "shape (2,) integer tensor."
        )
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise ValueError(f"`seed` must be integer, got dtype {seed.dtype}.")
    if seed.shape.rank is not None and seed.shape.as_list() != [2]:
        raise ValueError(f"`seed` must have shape (2,), got {seed.shape}.")
    return tf.cast(seed, tf.int64)


def _check_block_args(min_block_patches, min_aspect, max_aspect, max_attempts):
    if min_block_patches < 1:
        raise ValueError(
            f"`min_block_patches` must be >= 1, got {min_block_patches}."
        )
    if max_aspect is None:
        max_aspect = 1.0 / min_aspect
    if not 0 < min_aspect <= max_aspect:
        raise ValueError(
            "Need 0 < `min_aspect` <= `max_aspect`, got "
            f"min_aspect={min_aspect}, max_aspect={max_aspect}."
        )
    if max_attempts < 1:
        raise ValueError(f"`max_attempts` must be >= 1, got {max_attempts}.")
    return max_aspect


def random_patch_mask(grid_h, grid_w, mask_ratio, seed):
    """Uniformly random patch mask with an exact number of masked patches.

    Args:
        grid_h: int, patch rows.
        grid_w: int, patch columns.
        mask_ratio: float in `[0, 1]`; exactly
            `num_masked_patches(grid_h, grid_w, mask_ratio)` patches are
            masked.
        seed: Python int or shape `(2,)` integer tensor (stateless seed).

    Returns:
        `tf.bool` tensor `(grid_h, grid_w)`, `True` = masked.

    Example:

    ```python
    mask = random_patch_mask(4, 4, 0.5, seed=[0, 3])  # 8 True entries
    ```
    """
    num_masked = num_masked_patches(grid_h, grid_w, mask_ratio)
    seed = _as_seed(seed)
    num_patches = grid_h * grid_w
    scores = tf.random.stateless_uniform([num_patches], seed=seed)
    # Rank of each patch's score; the `num_masked` lowest ranks are masked.
    ranks = tf.argsort(tf.argsort(scores))
    mask = ranks < num_masked
    return tf.reshape(mask, [grid_h, grid_w])


def block_patch_mask(
    grid_h,
    grid_w,
    mask_ratio,
    seed,
    *,
    min_block_patches=4,
    max_block_patches=None,
    min_aspect=0.3,
    max_aspect=None,
    max_attempts=10,
    fill_to_target=True,
):
    """Block-wise (BEiT / iBOT) patch mask.

    Repeatedly draws a rectangle with area uniform in
    `[min_block_patches, min(remaining, max_block_patches)]` patches and
    log-uniform aspect ratio in `[min_aspect, max_aspect]`, at a uniformly
    random position; it is kept when it adds at least one and at most
    `remaining` new masked patches. Drawing stops when the target count is
    reached or after `max_attempts` rejected draws in a row. Without
    `fill_to_target` the count can stay a little below the target (as in
    BEiT); with it, missing patches are added one by one at random
    positions, so exactly `num_masked_patches(...)` patches are masked.

    Args:
        grid_h: int, patch rows.
        grid_w: int, patch columns.
        mask_ratio: float in `[0, 1]`, target fraction of masked patches.
        seed: Python int or shape `(2,)` integer tensor (stateless seed).
        min_block_patches: int, smallest block area drawn (4).
        max_block_patches: int or None, largest block area drawn (None: the
            whole target).
        min_aspect: float, smallest block aspect ratio (0.3).
        max_aspect: float or None, largest aspect ratio (None:
            `1 / min_aspect`).
        max_attempts: int, rejected draws in a row before giving up (10).
        fill_to_target: bool, top up to the exact target count (True).

    Returns:
        `tf.bool` tensor `(grid_h, grid_w)`, `True` = masked.

    Example:

    ```python
    mask = block_patch_mask(14, 14, 0.4, seed=[5, 0])
    ```
    """
    target = num_masked_patches(grid_h, grid_w, mask_ratio)
    max_aspect = _check_block_args(
        min_block_patches, min_aspect, max_aspect, max_attempts
    )
    if max_block_patches is None:
        max_block_patches = target
    seed = _as_seed(seed)
    log_aspect_low = math.log(min_aspect)
    log_aspect_high = math.log(max_aspect)
    rows = tf.range(grid_h)[:, None]
    cols = tf.range(grid_w)[None, :]

    def keep_drawing(mask, count, attempt, failures):
        del mask, attempt
        return tf.logical_and(count < target, failures < max_attempts)

    def draw_block(mask, count, attempt, failures):
        draw_seed = tf.random.experimental.stateless_fold_in(seed, attempt)
        u = tf.random.stateless_uniform([4], seed=draw_seed, dtype=tf.float64)
        max_new = tf.cast(
            tf.minimum(target - count, max_block_patches), tf.float64
        )
        area = min_block_patches + u[0] * (max_new - min_block_patches)
        aspect = tf.exp(log_aspect_low + u[1] * (log_aspect_high - log_aspect_low))
        height = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
        width = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
        fits = tf.logical_and(height < grid_h, width < grid_w)
        # Positions uniform over [0, grid - size] (clamped when not fitting).
        top = tf.cast(
            tf.floor(u[2] * tf.cast(tf.maximum(grid_h - height + 1, 1), tf.float64)),
            tf.int32,
        )
        left = tf.cast(
            tf.floor(u[3] * tf.cast(tf.maximum(grid_w - width + 1, 1), tf.float64)),
            tf.int32,
        )
        block = tf.logical_and(
            tf.logical_and(rows >= top, rows < top + height),
            tf.logical_and(cols >= left, cols < left + width),
        )
        new_patches = tf.logical_and(block, tf.logical_not(mask))
        added = tf.reduce_sum(tf.cast(new_patches, tf.int32))
        accept = tf.logical_and(
            fits,
            tf.logical_and(added > 0, tf.cast(added, tf.float64) <= max_new),
        )
        mask = tf.where(accept, tf.logical_or(mask, block), mask)
        count = count + tf.where(accept, added, 0)
        failures = tf.where(accept, 0, failures + 1)
        return mask, count, attempt + 1, failures

    mask, count, _, _ = tf.while_loop(
        keep_drawing,
        draw_block,
        (
            tf.zeros([grid_h, grid_w], tf.bool),
            tf.constant(0, tf.int32),
            tf.constant(0, tf.int32),
            tf.constant(0, tf.int32),
        ),
    )
    if fill_to_target:
        fill_seed = tf.random.experimental.stateless_fold_in(seed, -1)
        scores = tf.random.stateless_uniform([grid_h * grid_w], seed=fill_seed)
        # Masked patches get score 2 so the lowest ranks are unmasked ones.
        scores = tf.where(tf.reshape(mask, [-1]), 2.0, scores)
        ranks = tf.argsort(tf.argsort(scores))
        extra = tf.reshape(ranks < target - count, [grid_h, grid_w])
        mask = tf.logical_or(mask, extra)
    return mask


def patch_mask(mode, grid_h, grid_w, mask_ratio, seed, **block_kwargs):
    """Patch mask by name: `"random"` or `"block"`.

    Args:
        mode: `"random"` (`random_patch_mask`) or `"block"`
            (`block_patch_mask`).
        grid_h: int, patch rows.
        grid_w: int, patch columns.
        mask_ratio: float in `[0, 1]`.
        seed: Python int or shape `(2,)` integer tensor.
        **block_kwargs: keyword arguments of `block_patch_mask` (only with
            `mode="block"`).

    Returns:
        `tf.bool` tensor `(grid_h, grid_w)`.

    Example:

    ```python
    mask = patch_mask("block", 16, 16, 0.75, seed=0)
    ```
    """
    if mode == "random":
        if block_kwargs:
            raise ValueError(
                "Block-mask arguments "
                f"{sorted(block_kwargs)} need `mode='block'`."
            )
        return random_patch_mask(grid_h, grid_w, mask_ratio, seed)
    if mode == "block":
        return block_patch_mask(grid_h, grid_w, mask_ratio, seed, **block_kwargs)
    raise ValueError(f"`mode` must be one of {MASK_MODES}, got {mode!r}.")


def random_patch_mask_numpy(grid_h, grid_w, mask_ratio, rng):
    """NumPy reference of `random_patch_mask`.

    Args:
        grid_h: int, patch rows.
        grid_w: int, patch columns.
        mask_ratio: float in `[0, 1]`.
        rng: `np.random.Generator`.

    Returns:
        bool array `(grid_h, grid_w)` with exactly
        `num_masked_patches(...)` `True` entries.

    Example:

    ```python
    mask = random_patch_mask_numpy(4, 4, 0.25, np.random.default_rng(0))
    ```
    """
    num_masked = num_masked_patches(grid_h, grid_w, mask_ratio)
    chosen = rng.permutation(grid_h * grid_w)[:num_masked]
    mask = np.zeros(grid_h * grid_w, dtype=bool)
    mask[chosen] = True
    return mask.reshape(grid_h, grid_w)


def block_patch_mask_numpy(
    grid_h,
    grid_w,
    mask_ratio,
    rng,
    *,
    min_block_patches=4,
    max_block_patches=None,
    min_aspect=0.3,
    max_aspect=None,
    max_attempts=10,
    fill_to_target=True,
):
    """NumPy reference of `block_patch_mask` (same algorithm, own RNG).

    Args:
        grid_h: int, patch rows.
        grid_w: int, patch columns.
        mask_ratio: float in `[0, 1]`.
        rng: `np.random.Generator`.
        min_block_patches, max_block_patches, min_aspect, max_aspect,
        max_attempts, fill_to_target: as in `block_patch_mask`.

    Returns:
        bool array `(grid_h, grid_w)`.

    Example:

    ```python
    mask = block_patch_mask_numpy(14, 14, 0.4, np.random.default_rng(1))
    ```
    """
    target = num_masked_patches(grid_h, grid_w, mask_ratio)
    max_aspect = _check_block_args(
        min_block_patches, min_aspect, max_aspect, max_attempts
    )
    if max_block_patches is None:
        max_block_patches = target
    log_aspect = (math.log(min_aspect), math.log(max_aspect))
    mask = np.zeros((grid_h, grid_w), dtype=bool)
    count = 0
    failures = 0
    while count < target and failures < max_attempts:
        max_new = min(target - count, max_block_patches)
        # Written out (not `rng.uniform`): `max_new` may be below the minimum.
        area = min_block_patches + rng.random() * (max_new - min_block_patches)
        aspect = math.exp(rng.uniform(*log_aspect))
        height = int(round(math.sqrt(area * aspect)))
        width = int(round(math.sqrt(area / aspect)))
        accepted = False
        if height < grid_h and width < grid_w:
            top = int(rng.integers(0, grid_h - height + 1))
            left = int(rng.integers(0, grid_w - width + 1))
            block = mask[top : top + height, left : left + width]
            added = int(block.size - block.sum())
            if 0 < added <= max_new:
                block[...] = True
                count += added
                accepted = True
        failures = 0 if accepted else failures + 1
    if fill_to_target and count < target:
        free = np.flatnonzero(~mask.reshape(-1))
        extra = rng.choice(free, size=target - count, replace=False)
        mask.reshape(-1)[extra] = True
    return mask
