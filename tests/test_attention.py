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


def test_inference_blocks_batches_whose_scores_exceed_a_block(monkeypatch):
    monkeypatch.setattr(attention, "blocks_attention_on_this_device",
                        lambda: True)
    block = attention.SCORE_BLOCK_BYTES
    # Eight 224-pixel images at B/14: 26 MB of scores, more than a block.
    assert attention.blocks_attention(8, 12, 258, 258)
    assert attention.blocks_attention(8, 12, 258, 258, training=None)
    assert not attention.blocks_attention(8, 12, 258, 258, training=True)
    # One image's scores fit in a block; an unknown batch is not guessed.
    assert 12 * 258 * 258 * 4 <= block
    assert not attention.blocks_attention(1, 12, 258, 258)
    assert not attention.blocks_attention(None, 12, 258, 258)
    length = attention.MIN_INFERENCE_BLOCKED_LENGTH
    scores = 2 * length * length * 4
    assert attention.blocks_attention(2, 1, length, length,
                                      score_block_bytes=scores - 1)
    assert not attention.blocks_attention(2, 1, length, length,
                                          score_block_bytes=scores)
    # Short sequences stay whole however large the batch.
    assert not attention.blocks_attention(256, 4, 65, 65)
    # Long sequences are blocked in training as well.
    length = attention.MIN_BLOCKED_LENGTH
    assert attention.blocks_attention(1, 1, length, length, training=True)
    monkeypatch.setattr(attention, "blocks_attention_on_this_device",
                        lambda: False)
    assert not attention.blocks_attention(8, 12, 258, 258)
    assert not attention.blocks_attention(1, 1, length, length)


@pytest.mark.parametrize("training", [False, True])
def test_default_blocking_follows_training_and_keeps_the_numbers(
        monkeypatch, training):
    decisions = []
    blocks_attention = attention.blocks_attention

    def recording(*args, **kwargs):
        decisions.append(blocks_attention(*args, **kwargs))
        return decisions[-1]

    monkeypatch.setattr(attention, "blocks_attention_on_this_device",
                        lambda: True)
    monkeypatch.setattr(attention, "blocks_attention", recording)
    monkeypatch.setattr(attention, "MIN_INFERENCE_BLOCKED_LENGTH", 37)
    query, key, value = _inputs()
    actual = attention.self_attention(
        query, key, value, training=training,
        score_block_bytes=2 * 5 * 37 * 4)
    assert decisions == [not training]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(actual),
        keras.ops.convert_to_numpy(
            keras.ops.dot_product_attention(query, key, value)),
        rtol=1e-5, atol=1e-6,
    )


def test_vision_encoder_passes_its_training_mode_to_attention(monkeypatch):
    from keras_tips import TIPSVisionEncoder

    modes = []
    blocks_attention = attention.blocks_attention

    def recording(batch, heads, length, keys, training=False,
                  score_block_bytes=None):
        modes.append(training)
        return blocks_attention(batch, heads, length, keys, training,
                                score_block_bytes)

    monkeypatch.setattr(attention, "blocks_attention", recording)
    encoder = TIPSVisionEncoder(
        hidden_dim=16, num_layers=2, num_heads=2, mlp_dim=32, patch_size=14,
        position_grid_size=2,
    )
    images = np.random.default_rng(0).uniform(size=(2, 28, 28, 3)).astype(
        "float32")
    encoder.predict_on_batch(images)
    assert modes == [False, False]
    modes.clear()
    encoder.encode(images, training=True)
    assert modes == [True, True]
