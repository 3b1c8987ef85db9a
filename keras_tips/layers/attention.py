"""Multi-head self-attention of the TIPS vision blocks, tuned for CPUs."""

import math

import keras
from keras import ops

from keras_tips.layers.jax_cpu import on_jax_cpu

# Sequences at least this long are blocked by default, in training too: at
# 1026 tokens (448 pixels at B/14) it is 1.4x faster end to end. At 258
# (224 pixels) a blocked ViT-S/14 training step was no faster (2-core AMD
# EPYC, JAX 0.10: 4.96 / 5.06 s per step against 5.20 / 5.06 s), so shorter
# sequences are blocked only in inference (see `blocks_attention`).
MIN_BLOCKED_LENGTH = 512
# In inference, sequences at least this long are also blocked when the
# whole batch's scores exceed one block (see `blocks_attention`). Shorter
# ones are not: the main job's model (65 tokens, 4 heads, width 96), 256
# images of 112 pixels per call, ran at 0.86-0.92x the whole-batch speed
# blocked one image at a time (2-core AMD EPYC, JAX 0.10, a fresh process
# per measurement, two rounds).
MIN_INFERENCE_BLOCKED_LENGTH = 256
# Bytes of attention scores (heads x query block x keys, float32) computed
# at once when attention is blocked: a few MB, so that the scores stay in
# the CPU caches between the two matmuls and the softmax.
SCORE_BLOCK_BYTES = 4 * 1024 * 1024


def blocks_attention_on_this_device():
    """Whether `self_attention` computes the scores in cache-sized blocks.

    True for JAX on the CPU. XLA:CPU has no fused attention kernel: it
    materializes the scores of the whole batch (`B x heads x T x T`, 400 MB
    for eight 448-pixel images at B/14) and every pass over them (matmul,
    softmax, matmul) runs at memory speed. One image and one block of
    queries at a time, the same operations run from cache: about 3x faster
    attention and 1.4x faster inference at 448 pixels (B/14). PyTorch has a
    fused (flash) CPU kernel behind `ops.dot_product_attention`,
    accelerators have their own, and TensorFlow's oneDNN kernels are not
    helped by blocking, so they keep the plain call.
    """
    return on_jax_cpu()


def blocks_attention(batch, heads, length, keys, training=False,
                     score_block_bytes=None):
    """Whether `self_attention` blocks attention of these sizes by default.

    Where `blocks_attention_on_this_device()`: sequences of
    `MIN_BLOCKED_LENGTH` keys or more, and in inference (`training` falsy)
    also sequences of `MIN_INFERENCE_BLOCKED_LENGTH` keys or more whose
    batch's float32 scores (`batch x heads x length x keys x 4` bytes)
    are more than one block of `score_block_bytes`. There the
    whole batch's scores, computed at once, miss the caches and are
    allocated afresh for every call (glibc maps buffers of tens of MB with
    `mmap`, and every page is faulted in and zeroed again): eight 224-pixel
    images at B/14 (26 MB of scores per block) ran 1.17x faster end to end
    one image at a time (3.34-3.38 -> 3.93-3.94 images/s, 2-core AMD EPYC,
    JAX 0.10); S/14 (6 heads, 13 MB) was no slower (6.36-6.75 -> 6.51-6.64
    images/s).

    Args:
        batch: int or None (unknown: not blocked on this criterion).
        heads: int.
        length: int, queries.
        keys: int.
        training: bool or None. Training mode (None: inference).
        score_block_bytes: int or None (`SCORE_BLOCK_BYTES`).

    Returns:
        bool.
    """
    if keys >= MIN_BLOCKED_LENGTH:
        return blocks_attention_on_this_device()
    if (training or not isinstance(batch, int)
            or keys < MIN_INFERENCE_BLOCKED_LENGTH):
        return False
    if score_block_bytes is None:
        score_block_bytes = SCORE_BLOCK_BYTES
    if batch * heads * length * keys * 4 <= score_block_bytes:
        return False
    return blocks_attention_on_this_device()


def uses_matmul_attention(dtype):
    """Whether `self_attention` spells attention out as two matmuls.

    True for float32 on JAX's CPU backend. There `ops.dot_product_attention`
    (`jax.nn.dot_product_attention`) contracts `(B, T, heads, head_dim)`
    tensors directly, scales the `T x T` scores rather than the queries and
    normalizes the probabilities in a pass of their own, and XLA:CPU adds
    a copy of the scores and transposes around each product. Heads first,
    queries pre-scaled, `matmul`, `softmax`, `matmul` is 1.25x faster for the
    whole B/14 encoder at 224 pixels (measured side by side in one process).
    PyTorch keeps its fused CPU kernel, accelerators theirs, and
    float16/bfloat16 keep the fused call, which computes the scores in
    float32.
    """
    return str(dtype) == "float32" and on_jax_cpu()


def matmul_attention(query, key, value):
    """Softmax attention as two batched matmuls over heads-first tensors.

    Args:
        query: tensor `(B, T, heads, head_dim)`.
        key: tensor `(B, S, heads, head_dim)`.
        value: tensor `(B, S, heads, head_dim)`.

    Returns:
        Tensor `(B, T, heads, head_dim)`, equal to
        `keras.ops.dot_product_attention(query, key, value)` up to float
        rounding.
    """
    scale = 1.0 / math.sqrt(query.shape[-1])
    query = ops.transpose(ops.multiply(query, scale), (0, 2, 1, 3))
    scores = ops.matmul(query, ops.transpose(key, (0, 2, 3, 1)))
    probabilities = ops.softmax(scores, axis=-1)
    mixed = ops.matmul(probabilities, ops.transpose(value, (0, 2, 1, 3)))
    return ops.transpose(mixed, (0, 2, 1, 3))


def self_attention(query, key, value, blocked=None,
                   score_block_bytes=SCORE_BLOCK_BYTES, matmul=None,
                   training=False):
    """Softmax attention of `(B, T, heads, head_dim)` query, key and value.

    The same numbers as `keras.ops.dot_product_attention(query, key,
    value)` (to float rounding); where `blocked` (default:
    `blocks_attention(...)` of these sizes and `training`), computed one
    image at a time and one block of queries at a time, each block small
    enough for its scores to stay in cache; where `matmul` (default:
    `uses_matmul_attention(query.dtype)`), with `matmul_attention` instead
    of the fused call.

    Args:
        query: tensor `(B, T, heads, head_dim)`.
        key: tensor `(B, S, heads, head_dim)`.
        value: tensor `(B, S, heads, head_dim)`.
        blocked: bool or None. Whether to block the computation.
        score_block_bytes: int. With `blocked`, the float32 bytes of scores
            of one block of queries (heads x block x keys x 4).
        matmul: bool or None. Whether to use `matmul_attention`.
        training: bool or None. Training mode (None: inference); only
            the default of `blocked` depends on it.

    Returns:
        Tensor `(B, T, heads, head_dim)`.

    Example:
    ```python
    x = np.random.normal(size=(2, 258, 12, 64)).astype("float32")
    out = self_attention(x, x, x)  # (2, 258, 12, 64)
    ```
    """
    if matmul is None:
        matmul = uses_matmul_attention(keras.backend.standardize_dtype(
            query.dtype))
    attend = matmul_attention if matmul else ops.dot_product_attention
    length, heads = query.shape[1], query.shape[2]
    keys = key.shape[1]
    if not all(isinstance(dim, int) for dim in (length, heads, keys)):
        # Unknown or symbolic (shape-polymorphic export) lengths.
        return attend(query, key, value)
    if blocked is None:
        blocked = blocks_attention(
            query.shape[0], heads, length, keys, training, score_block_bytes
        )
    if not blocked:
        return attend(query, key, value)
    block = max(1, score_block_bytes // (4 * heads * keys))

    def one_image(inputs):
        q, k, v = (ops.expand_dims(x, 0) for x in inputs)
        outputs = [
            attend(q[:, start : start + block], k, v)
            for start in range(0, length, block)
        ]
        return ops.concatenate(outputs, axis=1)[0]

    return ops.map(one_image, (query, key, value))
