"""`keras_tips.layers.attention`: blocked attention equals the plain call."""

import keras
import numpy as np
import pytest

from keras_tips.layers import attention
from keras_tips.layers import jax_cpu


def _inputs(batch=3, length=37, heads=2, head_dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.normal(size=(batch, length, heads, head_dim)).astype("float32")
        for _ in range(3)
    ]


@pytest.mark.parametrize("block_queries", [1, 5, 37, 100])
def test_blocked_attention_matches_plain(block_queries):
    query, key, value = _inputs()
    expected = keras.ops.convert_to_numpy(
        keras.ops.dot_product_attention(query, key, value)
    )
    # heads x block x keys x 4 bytes -> `block_queries` queries per block,
    # the last block shorter where 37 is not a multiple.
    actual = attention.self_attention(
        query, key, value, blocked=True,
        score_block_bytes=2 * block_queries * 37 * 4,
    )
    actual = keras.ops.convert_to_numpy(actual)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_short_sequences_are_not_blocked(monkeypatch):
    calls = []
    monkeypatch.setattr(
        attention, "blocks_attention_on_this_device",
        lambda: calls.append(1) or True,
    )
    query, key, value = _inputs(length=20)
    attention.self_attention(query, key, value)
    assert calls == []  # 20 < MIN_BLOCKED_LENGTH: decided without asking
    long_inputs = _inputs(batch=1, length=attention.MIN_BLOCKED_LENGTH,
                          heads=1, head_dim=4)
    blocked = attention.self_attention(*long_inputs)
    assert calls == [1]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(blocked),
        keras.ops.convert_to_numpy(
            keras.ops.dot_product_attention(*long_inputs)
        ),
        rtol=1e-5, atol=1e-6,
    )


@pytest.mark.parametrize("blocked", [False, True])
def test_matmul_attention_matches_fused(blocked):
    query, key, value = _inputs()
    expected = keras.ops.convert_to_numpy(
        keras.ops.dot_product_attention(query, key, value)
    )
    actual = attention.self_attention(
        query, key, value, blocked=blocked, matmul=True,
        score_block_bytes=2 * 5 * 37 * 4,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(actual), expected, rtol=1e-5, atol=1e-6
    )


def test_matmul_attention_only_for_float32_on_jax_cpu():
    on_jax_cpu = jax_cpu.on_jax_cpu()
    assert attention.uses_matmul_attention("float32") == on_jax_cpu
    assert not attention.uses_matmul_attention("bfloat16")
