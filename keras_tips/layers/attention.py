"""Multi-head self-attention of the TIPS vision blocks, cache-blocked on CPU."""

import keras
from keras import ops

# Sequences at least this long are blocked by default: at 258 tokens (224
# pixels at B/14) blocking is no faster in inference and slower in training;
# at 1026 (448 pixels) it is 1.4x faster end to end.
MIN_BLOCKED_LENGTH = 512
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
    if keras.config.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def self_attention(query, key, value, blocked=None,
                   score_block_bytes=SCORE_BLOCK_BYTES):
    """Softmax attention of `(B, T, heads, head_dim)` query, key and value.

    The same numbers as `keras.ops.dot_product_attention(query, key,
    value)` (to float rounding); where `blocked` (default: sequences of
    `MIN_BLOCKED_LENGTH` or more, where `blocks_attention_on_this_device()`),
    computed one image at a time and one block of queries at a time, each
    block small enough for its scores to stay in cache.

    Args:
        query: tensor `(B, T, heads, head_dim)`.
        key: tensor `(B, S, heads, head_dim)`.
        value: tensor `(B, S, heads, head_dim)`.
        blocked: bool or None. Whether to block the computation.
        score_block_bytes: int. With `blocked`, the float32 bytes of scores
            of one block of queries (heads x block x keys x 4).

    Returns:
        Tensor `(B, T, heads, head_dim)`.

    Example:
    ```python
    x = np.random.normal(size=(2, 258, 12, 64)).astype("float32")
    out = self_attention(x, x, x)  # (2, 258, 12, 64)
    ```
    """
    length, heads = query.shape[1], query.shape[2]
    keys = key.shape[1]
    if not all(isinstance(dim, int) for dim in (length, heads, keys)):
        # Unknown or symbolic (shape-polymorphic export) lengths.
        return ops.dot_product_attention(query, key, value)
    if blocked is None:
        blocked = (
            keys >= MIN_BLOCKED_LENGTH and blocks_attention_on_this_device()
        )
    if not blocked:
        return ops.dot_product_attention(query, key, value)
    block = max(1, score_block_bytes // (4 * heads * keys))

    def one_image(inputs):
        q, k, v = (ops.expand_dims(x, 0) for x in inputs)
        outputs = [
            ops.dot_product_attention(q[:, start : start + block], k, v)
            for start in range(0, length, block)
        ]
        return ops.concatenate(outputs, axis=1)[0]

    return ops.map(one_image, (query, key, value))
