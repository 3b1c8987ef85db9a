"""Tests for training/masking.py (patch masks for masked image modeling)."""

import numpy as np
import pytest
import tensorflow as tf

from training import masking

# Pure TensorFlow / NumPy: the Keras backend plays no part.
pytestmark = pytest.mark.backend_independent


def _count(mask):
    return int(np.asarray(mask).sum())


def _neighbour_fraction(mask):
    """Fraction of masked patches with a masked 4-neighbour."""
    mask = np.asarray(mask, bool)
    padded = np.pad(mask, 1)
    neighbours = (
        padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    )
    return (mask & neighbours).sum() / max(mask.sum(), 1)


def _num_components(mask):
    """Number of 4-connected components of the masked patches."""
    mask = np.asarray(mask, bool)
    seen = np.zeros_like(mask)
    components = 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        components += 1
        stack = [start]
        seen[start] = True
        while stack:
            i, j = stack.pop()
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                y, x = i + di, j + dj
                if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]:
                    if mask[y, x] and not seen[y, x]:
                        seen[y, x] = True
                        stack.append((y, x))
    return components


def test_num_masked_patches():
    assert masking.num_masked_patches(16, 16, 0.75) == 192
    assert masking.num_masked_patches(4, 4, 0.0) == 0
    assert masking.num_masked_patches(4, 4, 1.0) == 16
    assert masking.num_masked_patches(3, 5, 0.5) == round(7.5)
    assert masking.num_masked_patches(14, 14, 0.4) == 78


@pytest.mark.parametrize(
    "grid_h, grid_w, ratio",
    [(4, 4, 0.75), (16, 16, 0.75), (14, 14, 0.4), (3, 7, 0.5), (5, 5, 0.0), (2, 3, 1.0)],
)
def test_random_mask_exact_count(grid_h, grid_w, ratio):
    expected = masking.num_masked_patches(grid_h, grid_w, ratio)
    for i in range(5):
        mask = masking.random_patch_mask(grid_h, grid_w, ratio, seed=[i, 7])
        assert mask.dtype == tf.bool
        assert mask.shape == (grid_h, grid_w)
        assert _count(mask) == expected
    rng = np.random.default_rng(0)
    reference = masking.random_patch_mask_numpy(grid_h, grid_w, ratio, rng)
    assert reference.shape == (grid_h, grid_w) and reference.dtype == bool
    assert reference.sum() == expected


def test_random_mask_is_deterministic_and_seed_dependent():
    first = masking.random_patch_mask(16, 16, 0.5, seed=[3, 4]).numpy()
    again = masking.random_patch_mask(16, 16, 0.5, seed=[3, 4]).numpy()
    other = masking.random_patch_mask(16, 16, 0.5, seed=[3, 5]).numpy()
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    # A Python int seed is accepted and deterministic too.
    np.testing.assert_array_equal(
        masking.random_patch_mask(8, 8, 0.5, seed=11).numpy(),
        masking.random_patch_mask(8, 8, 0.5, seed=11).numpy(),
    )


def test_random_mask_is_uniform_over_positions():
    num_masks = 600
    ratio = 0.25
    masks = np.stack(
        [
            masking.random_patch_mask(4, 4, ratio, seed=[i, 0]).numpy()
            for i in range(num_masks)
        ]
    )
    frequency = masks.mean(axis=0)
    # Binomial std of a frequency: sqrt(0.25 * 0.75 / 600) ~ 0.018.
    assert np.all(np.abs(frequency - ratio) < 0.08), frequency
    # Independent of position: no row or column bias either.
    assert abs(frequency[:, :2].mean() - frequency[:, 2:].mean()) < 0.04


def test_masks_work_inside_tf_data_and_tf_function():
    dataset = tf.data.Dataset.range(6).map(
        lambda i: (
            masking.random_patch_mask(
                4, 4, 0.5, tf.stack([tf.constant(1, tf.int64), i])
            ),
            masking.block_patch_mask(
                6, 6, 0.5, tf.stack([tf.constant(2, tf.int64), i])
            ),
        ),
        num_parallel_calls=2,
    )
    for random_mask, block_mask in dataset:
        assert _count(random_mask) == 8
        assert _count(block_mask) == 18
    compiled = tf.function(lambda seed: masking.block_patch_mask(8, 8, 0.3, seed))
    np.testing.assert_array_equal(
        compiled(tf.constant([5, 6])).numpy(),
        masking.block_patch_mask(8, 8, 0.3, [5, 6]).numpy(),
    )


@pytest.mark.parametrize("ratio", [0.1, 0.4, 0.75])
def test_block_mask_filled_count_is_exact(ratio):
    target = masking.num_masked_patches(14, 14, ratio)
    for i in range(8):
        mask = masking.block_patch_mask(14, 14, ratio, seed=[i, 1])
        assert mask.dtype == tf.bool and mask.shape == (14, 14)
        assert _count(mask) == target
        reference = masking.block_patch_mask_numpy(
            14, 14, ratio, np.random.default_rng(i)
        )
        assert reference.sum() == target


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.75])
def test_block_mask_without_fill_stays_near_target(ratio):
    target = masking.num_masked_patches(16, 16, ratio)
    counts = [
        _count(
            masking.block_patch_mask(16, 16, ratio, seed=[i, 2], fill_to_target=False)
        )
        for i in range(20)
    ]
    # Blocks never overshoot and stop at most a few patches short.
    assert max(counts) <= target
    assert min(counts) >= target - 6, counts
    assert np.mean(counts) >= target - 3


def test_block_mask_is_contiguous_unlike_random_mask():
    ratio = 0.3
    block_masks = [
        masking.block_patch_mask(14, 14, ratio, seed=[i, 3]).numpy()
        for i in range(20)
    ]
    random_masks = [
        masking.random_patch_mask(14, 14, ratio, seed=[i, 3]).numpy()
        for i in range(20)
    ]
    block_neighbours = np.mean([_neighbour_fraction(m) for m in block_masks])
    random_neighbours = np.mean([_neighbour_fraction(m) for m in random_masks])
    block_components = np.mean([_num_components(m) for m in block_masks])
    random_components = np.mean([_num_components(m) for m in random_masks])
    assert block_neighbours > 0.9
    assert random_neighbours < 0.85
    # 59 masked patches: a handful of blocks, not dozens of fragments.
    assert block_components < 10
    assert random_components > 2 * block_components


def test_block_mask_matches_numpy_reference_statistics():
    """TF graph version and NumPy version implement the same algorithm."""
    ratio = 0.4
    num = 40
    tf_masks = [
        masking.block_patch_mask(12, 12, ratio, seed=[i, 9], fill_to_target=False).numpy()
        for i in range(num)
    ]
    np_masks = [
        masking.block_patch_mask_numpy(
            12, 12, ratio, np.random.default_rng(1000 + i), fill_to_target=False
        )
        for i in range(num)
    ]
    tf_components = np.mean([_num_components(m) for m in tf_masks])
    np_components = np.mean([_num_components(m) for m in np_masks])
    tf_counts = np.mean([m.sum() for m in tf_masks])
    np_counts = np.mean([m.sum() for m in np_masks])
    assert abs(tf_counts - np_counts) < 2.0
    assert abs(tf_components - np_components) < 0.35 * max(np_components, 1.0)
    # Both leave the borders less covered than the centre (blocks lie
    # inside the grid at uniform positions), by a similar amount.
    def border_to_centre(masks):
        frequency = np.stack(masks).mean(axis=0)
        return frequency[[0, -1], :].mean() / frequency[4:8, 4:8].mean()

    assert border_to_centre(tf_masks) < 1.0
    assert border_to_centre(np_masks) < 1.0
    assert abs(border_to_centre(tf_masks) - border_to_centre(np_masks)) < 0.35


def test_block_mask_deterministic_and_blocks_respect_aspect_range():
    first = masking.block_patch_mask(16, 16, 0.5, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(
        first, masking.block_patch_mask(16, 16, 0.5, seed=[1, 2]).numpy()
    )
    assert (first != masking.block_patch_mask(16, 16, 0.5, seed=[2, 2]).numpy()).any()
    # Target 12 patches with blocks of area exactly 12: aspect ratios in
    # [0.3, 1/0.3] give sides round(sqrt(12 * a)) in [2, 6], so a mask that
    # is one 12-patch rectangle is 2x6, 3x4, 4x3 or 6x2.
    rectangles = 0
    for i in range(20):
        mask = masking.block_patch_mask(
            16,
            16,
            12 / 256,
            seed=[i, 4],
            min_block_patches=12,
            fill_to_target=False,
        ).numpy()
        rows = np.nonzero(mask.any(axis=1))[0]
        cols = np.nonzero(mask.any(axis=0))[0]
        if mask.sum() == len(rows) * len(cols) == 12:
            rectangles += 1
            assert 2 <= len(rows) <= 6 and 2 <= len(cols) <= 6
    assert rectangles >= 3


def test_patch_mask_dispatch_and_errors():
    assert _count(masking.patch_mask("random", 4, 4, 0.5, seed=0)) == 8
    assert _count(masking.patch_mask("block", 4, 4, 0.5, seed=0)) == 8
    with pytest.raises(ValueError, match="mode"):
        masking.patch_mask("grid", 4, 4, 0.5, seed=0)
    with pytest.raises(ValueError, match="block"):
        masking.patch_mask("random", 4, 4, 0.5, seed=0, min_aspect=0.5)
    with pytest.raises(ValueError, match="mask_ratio"):
        masking.random_patch_mask(4, 4, 1.5, seed=0)
    with pytest.raises(ValueError, match="grid_h"):
        masking.random_patch_mask(0, 4, 0.5, seed=0)
    with pytest.raises(ValueError, match="seed"):
        masking.random_patch_mask(4, 4, 0.5, seed=None)
    with pytest.raises(ValueError, match="seed"):
        masking.random_patch_mask(4, 4, 0.5, seed=[1, 2, 3])
    with pytest.raises(ValueError, match="min_aspect"):
        masking.block_patch_mask(4, 4, 0.5, seed=0, min_aspect=-1.0)
