"""Encoder and backbone behaviour beyond parity: shapes, sizes, saving, errors."""

import keras
import numpy as np
import pytest

import keras_tips
from keras_tips import variants
from tests.gradients import gradient_reaches


def tiny_vision(**overrides):
    config = dict(hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=64,
                  position_grid_size=4)
    config.update(overrides)
    return keras_tips.TIPSVisionEncoder(**config)


def tiny_text():
    return keras_tips.TIPSTextEncoder(
        vocabulary_size=50, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=64
    )


def random_inputs(batch=2, height=56, width=42, length=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 50, size=(batch, length)).astype("int32")
    mask = np.ones((batch, length), "int32")
    mask[0, length // 2 :] = 0
    ids[mask == 0] = 0
    return {
        "images": rng.uniform(size=(batch, height, width, 3)).astype("float32"),
        "token_ids": ids,
        "padding_mask": mask,
    }


def test_any_multiple_of_14_without_rebuilding():
    encoder = tiny_vision()
    weights_before = len(encoder.weights)
    for height, width in [(56, 56), (28, 70), (84, 42), (14, 14)]:
        images = np.random.uniform(size=(1, height, width, 3)).astype("float32")
        out = encoder(images)
        assert tuple(out["cls_embeddings"].shape) == (1, 2, 32)
        assert tuple(out["patch_embeddings"].shape) == (1, height // 14, width // 14, 32)
        assert np.isfinite(keras.ops.convert_to_numpy(out["patch_embeddings"])).all()
    assert len(encoder.weights) == weights_before


def test_swiglu_hidden_width_follows_official_rounding():
    encoder = tiny_vision(ffn_layer="swiglu", mlp_dim=6144 // 48)
    encoder(np.zeros((1, 28, 28, 3), "float32"))
    inner = (int(128 * 2 / 3) + 7) // 8 * 8
    assert tuple(encoder.blocks[0].mlp.fc1.kernel.shape) == (32, 2 * inner)
    assert tuple(encoder.blocks[0].mlp.fc2.kernel.shape) == (inner, 32)


def test_mask_token_replaces_masked_patches():
    encoder = tiny_vision()
    images = np.random.uniform(size=(2, 56, 56, 3)).astype("float32")
    encoder.embedding.mask_token.assign(np.full((1, 1, 32), 3.0, "float32"))
    mask = np.zeros((2, 4, 4), bool)
    plain = encoder.embedding(images)
    masked = encoder.embedding(images, patch_mask=mask)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain), keras.ops.convert_to_numpy(masked)
    )
    mask[0, 1, 2] = True
    masked = keras.ops.convert_to_numpy(encoder.embedding(images, patch_mask=mask))
    plain = keras.ops.convert_to_numpy(plain)
    changed = np.abs(masked - plain).max(axis=-1) > 0
    assert changed.sum() == 1 and changed[0, 2 + 1 * 4 + 2]
    out = encoder.encode(images, patch_mask=mask)
    assert tuple(out["patch_embeddings"].shape) == (2, 4, 4, 32)


def test_value_attention_differs_only_in_last_block():
    encoder = tiny_vision(num_layers=1)
    images = np.random.uniform(size=(1, 28, 28, 3)).astype("float32")
    plain = keras.ops.convert_to_numpy(encoder(images)["patch_embeddings"])
    value = keras.ops.convert_to_numpy(encoder.value_attention_patches(images))
    assert value.shape == plain.shape
    assert np.abs(value - plain).max() > 1e-6


@pytest.mark.parametrize("num_layers", [2, 0])
def test_encode_gives_both_read_outs_from_one_pass(num_layers):
    encoder = tiny_vision(num_layers=num_layers)
    images = np.random.uniform(size=(2, 28, 28, 3)).astype("float32")
    both = encoder.encode(images, with_value_attention=True)
    plain = encoder.encode(images)
    assert set(both) == {*plain, "value_attention_patches"}
    for key in plain:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(both[key]),
            keras.ops.convert_to_numpy(plain[key]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(both["value_attention_patches"]),
        keras.ops.convert_to_numpy(encoder.value_attention_patches(images)),
        rtol=1e-5, atol=1e-5)
    empty = encoder.encode(images[:0], with_value_attention=True)
    assert tuple(empty["value_attention_patches"].shape) == (0, 2, 2, 32)


@pytest.mark.parametrize("gradient_from_block", [None, 0, 1, 2])
def test_encode_stops_the_gradient_before_a_block(gradient_from_block):
    """Same outputs; the gradient reaches the blocks from
    `gradient_from_block` on, not the embedding and the blocks before."""
    encoder = tiny_vision(num_layers=3)
    images = np.random.default_rng(0).uniform(size=(2, 28, 28, 3)).astype("float32")
    plain = encoder.encode(images, with_value_attention=True)
    outputs = encoder.encode(images, with_value_attention=True,
                             gradient_from_block=gradient_from_block)
    for key in plain:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(outputs[key]),
                                      keras.ops.convert_to_numpy(plain[key]))
    def loss():
        out = encoder.encode(images, with_value_attention=True,
                             gradient_from_block=gradient_from_block)
        return sum(keras.ops.sum(keras.ops.square(out[key]))
                   for key in ("cls_embeddings", "patch_embeddings",
                               "value_attention_patches"))

    reached = gradient_reaches(loss, [encoder.embedding, *encoder.blocks])
    first = 0 if gradient_from_block is None else gradient_from_block + 1
    # The embedding is part 0, block i part i + 1.
    assert reached == [index >= first for index in range(len(reached))]


def test_encode_rejects_a_gradient_block_outside_the_encoder():
    encoder = tiny_vision(num_layers=2)
    images = np.zeros((1, 28, 28, 3), "float32")
    for bad in (-1, 2, 1.0, True, "1"):
        with pytest.raises(ValueError, match=r"gradient_from_block.*\[0, 1\]"):
            encoder.encode(images, gradient_from_block=bad)


def test_empty_text_gives_finite_embedding():
    encoder = tiny_text()
    out = encoder({
        "token_ids": np.zeros((2, 6), "int32"),
        "padding_mask": np.array([[0] * 6, [1, 1, 0, 0, 0, 0]], "int32"),
    })
    out = keras.ops.convert_to_numpy(out)
    assert np.isfinite(out).all()


def test_text_padding_positions_do_not_change_embedding():
    encoder = tiny_text()
    ids = np.array([[5, 6, 7, 0, 0, 0]], "int32")
    mask = np.array([[1, 1, 1, 0, 0, 0]], "int32")
    a = encoder({"token_ids": ids, "padding_mask": mask})
    ids2 = ids.copy()
    ids2[0, 3:] = [9, 9, 9]
    b = encoder({"token_ids": ids2, "padding_mask": mask})
    c = encoder({"token_ids": ids[:, :3], "padding_mask": mask[:, :3]})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(c), atol=1e-5)


def test_backbone_save_load_round_trip_is_bit_identical(tmp_path):
    backbone = keras_tips.TIPSBackbone(tiny_vision(), tiny_text(), temperature=0.05)
    inputs = random_inputs()
    before = backbone(inputs)
    backbone.save_to_preset(str(tmp_path / "preset"))
    restored = keras_tips.TIPSBackbone.from_preset(str(tmp_path / "preset"))
    after = restored(inputs)
    for key in ("cls_embeddings", "patch_embeddings", "text_embeddings", "temperature"):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(before[key]),
            keras.ops.convert_to_numpy(after[key]),
            err_msg=key,
        )
    assert float(restored.temperature) == pytest.approx(0.05, rel=1e-6)
    generic = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(backbone)
    )
    assert isinstance(generic, keras_tips.TIPSBackbone)


def test_released_variant_table():
    expected = {
        "S": (384, 12, 6, 1536, "mlp", 12),
        "B": (768, 12, 12, 3072, "mlp", 12),
        "L": (1024, 24, 16, 4096, "mlp", 12),
        "So400m": (1152, 27, 16, 4304, "mlp", 27),
        "g": (1536, 40, 24, 6144, "swiglu", 12),
    }
    for size, (width, depth, heads, mlp, ffn, text_depth) in expected.items():
        vision = variants.vision_config(size)
        text = variants.text_config(size)
        assert (vision["hidden_dim"], vision["num_layers"], vision["num_heads"],
                vision["mlp_dim"], vision["ffn_layer"]) == (width, depth, heads, mlp, ffn)
        assert (text["hidden_dim"], text["num_layers"], text["num_heads"],
                text["mlp_dim"], text["vocabulary_size"]) == (width, text_depth, heads, mlp, 32000)


def test_small_variant_parameter_count():
    encoder = keras_tips.TIPSVisionEncoder(**variants.vision_config("S"))
    # ViT-S/14 with a 16x16 grid: 22.06M parameters, as DINOv2 ViT-S/14
    # plus one register token (PyTorch state_dict of the official model).
    count = sum(int(np.prod(w.shape)) for w in encoder.weights)
    patch = 384 * 3 * 14 * 14 + 384
    tokens = 3 * 384 + 257 * 384
    block = (2 * 384 * 2 + 384 * 1152 + 1152 + 384 * 384 + 384 + 2 * 384
             + 384 * 1536 + 1536 + 1536 * 384 + 384)
    assert count == patch + tokens + 12 * block + 2 * 384


@pytest.mark.parametrize(
    "images,message",
    [
        (np.zeros((56, 56, 3), "float32"), "batch"),
        (np.zeros((1, 56, 56, 4), "float32"), "3 (RGB) channels"),
        (np.zeros((1, 50, 56, 3), "float32"), "multiple of the patch size"),
        (np.zeros((1, 56, 56, 3), "uint8"), "float images"),
        (np.full((1, 56, 56, 3), np.nan, "float32"), "NaN"),
        (np.full((1, 56, 56, 3), 255.0, "float32"), "[0, 1]"),
    ],
)
def test_bad_images_are_named(images, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        tiny_vision()(images)


def test_bad_text_inputs_are_named():
    encoder = tiny_text()
    with pytest.raises(TypeError, match="dict"):
        encoder(np.zeros((1, 4), "int32"))
    with pytest.raises(ValueError, match="padding_mask"):
        encoder({"token_ids": np.zeros((1, 4), "int32")})
    with pytest.raises(TypeError, match="integers"):
        encoder({"token_ids": np.zeros((1, 4), "float32"),
                 "padding_mask": np.ones((1, 4), "int32")})


def test_mismatched_encoder_widths_rejected():
    with pytest.raises(ValueError, match="same width"):
        keras_tips.TIPSBackbone(tiny_vision(hidden_dim=16, num_heads=2), tiny_text())


def test_layer_configs_round_trip():
    encoder = tiny_vision()
    for layer in [encoder.embedding, encoder.blocks[0], encoder.split_outputs,
                  encoder.embedding.position_embedding]:
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_position_table_is_used_as_it_is_on_its_own_grid(monkeypatch):
    from keras_tips.layers import position_embedding
    from keras_tips.layers.position_embedding import resample_position_grid

    layer = tiny_vision().embedding.position_embedding  # a 4 x 4 table
    calls = []

    def counted(grid, height, width):
        calls.append((height, width))
        return resample_position_grid(grid, height, width)

    monkeypatch.setattr(position_embedding, "resample_position_grid", counted)
    table = keras.ops.convert_to_numpy(layer.embeddings)
    grid = table[1:].reshape(4, 4, -1)
    for height, width in [(4, 4), (4, 3), (6, 4), (2, 2)]:
        cls_position, patch_positions = layer(
            np.zeros((1, height, width, 32), "float32"))
        patch_positions = keras.ops.convert_to_numpy(patch_positions)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(cls_position), table[:1])
        resampled = keras.ops.convert_to_numpy(
            resample_position_grid(grid, height, width)).reshape(-1, 32)
        # The official code returns its table unresampled on its own grid;
        # the resampling there is the identity up to float rounding.
        np.testing.assert_allclose(patch_positions, resampled, atol=1e-6)
        if (height, width) == (4, 4):
            np.testing.assert_array_equal(patch_positions, table[1:])
    # No resampling ops on the table's own grid (an identity product that
    # a TF32 matmul on a GPU would round).
    assert calls == [(4, 3), (6, 4), (2, 2)]


@pytest.mark.parametrize("policy", ["bfloat16", "mixed_bfloat16"])
def test_bfloat16_runs_branches_in_bfloat16_on_a_float32_residual(policy):
    from keras_tips.layers.text_block import TIPSTextBlock
    from keras_tips.layers.vision_block import TIPSVisionBlock

    inputs = random_inputs(height=56, width=56)
    reference = tiny_vision(num_layers=6, layer_scale_init=1.0)
    low = tiny_vision(num_layers=6, layer_scale_init=1.0, dtype=policy)
    low.set_weights(reference.get_weights())
    expected = keras.ops.convert_to_numpy(reference(inputs["images"])["patch_embeddings"])
    outputs = low(inputs["images"])
    assert keras.backend.standardize_dtype(outputs["patch_embeddings"].dtype) == "bfloat16"
    actual = keras.ops.convert_to_numpy(
        keras.ops.cast(outputs["patch_embeddings"], "float32")
    )
    error = np.linalg.norm(actual - expected) / np.linalg.norm(expected)
    assert 0 < error < 2e-2

    tokens = np.random.default_rng(1).normal(size=(2, 8, 32)).astype("float32")
    vision_block = TIPSVisionBlock(32, 4, 64, dtype=policy)
    text_block = TIPSTextBlock(32, 4, 64, dtype=policy)
    for output in (
        vision_block(keras.ops.cast(tokens, "bfloat16")),
        text_block(tokens, np.ones((2, 8), "int32")),
    ):
        assert keras.backend.standardize_dtype(output.dtype) == "float32"
    # Symbolic building agrees with the eager dtype.
    symbolic = vision_block.compute_output_spec(keras.KerasTensor((2, 8, 32)))
    assert symbolic.dtype == "float32"
