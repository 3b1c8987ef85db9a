"""keras-hub conventions: registered presets, LoRA, int8, keras-hub's checks."""

import warnings

import keras
import keras_hub
import numpy as np
import pytest

import keras_tips
from keras_tips import variants

# keras-hub's TestCase imports grain (in the `dev` extra).
pytest.importorskip("grain")
from keras_hub.src.tests.test_case import TestCase  # noqa: E402


def _vision_kwargs():
    return dict(hidden_dim=16, num_layers=2, num_heads=2, mlp_dim=32,
                position_grid_size=2)


def _text_kwargs():
    return dict(vocabulary_size=50, hidden_dim=16, num_layers=2, num_heads=2,
                mlp_dim=32)


def _text_inputs():
    token_ids = np.array([[5, 9, 17, 3, 0], [7, 11, 0, 0, 0]], "int32")
    return {"token_ids": token_ids,
            "padding_mask": (token_ids != 0).astype("int32")}


def _images(height=28, width=28, seed=0):
    return np.random.default_rng(seed).uniform(
        size=(2, height, width, 3)).astype("float32")


def _backbone_kwargs():
    return {"vision_encoder": keras_tips.TIPSVisionEncoder(**_vision_kwargs()),
            "text_encoder": keras_tips.TIPSTextEncoder(**_text_kwargs())}


def _backbone_inputs():
    return {"images": _images(), **_text_inputs()}


class KerasHubChecksTest(TestCase):
    """keras-hub's `run_backbone_test` (serialization, variable lengths,
    compiled predict, tf.data, mixed precision, int8/float8 policies) and
    `run_model_saving_test` (on the backbone, which saves both encoders)."""

    def test_vision_encoder(self):
        self.run_backbone_test(
            cls=keras_tips.TIPSVisionEncoder,
            init_kwargs=_vision_kwargs(),
            input_data=_images(28, 42),
            expected_output_shape={"cls_embeddings": (2, 2, 16),
                                   "patch_embeddings": (2, 2, 3, 16)},
        )

    def test_text_encoder(self):
        self.run_backbone_test(
            cls=keras_tips.TIPSTextEncoder,
            init_kwargs=_text_kwargs(),
            input_data=_text_inputs(),
            expected_output_shape=(2, 16),
        )

    def test_backbone(self):
        self.run_backbone_test(
            cls=keras_tips.TIPSBackbone,
            init_kwargs=_backbone_kwargs(),
            input_data=_backbone_inputs(),
            expected_output_shape={"cls_embeddings": (2, 2, 16),
                                   "patch_embeddings": (2, 2, 2, 16),
                                   "text_embeddings": (2, 16),
                                   "temperature": (2,)},
            # keras-hub's check keys a DTypePolicyMap by layer path, and the
            # two towers, built as separate models, share paths such as
            # "block_1/proj"; each encoder passes it above, and
            # `test_int8_quantization` covers the backbone.
            run_quantization_check=False,
        )
        self.run_model_saving_test(
            cls=keras_tips.TIPSBackbone, init_kwargs=_backbone_kwargs(),
            input_data=_backbone_inputs())


def test_presets_are_registered_with_metadata():
    listed = keras_tips.TIPSBackbone.presets
    assert set(listed) == set(keras_tips.list_presets())
    for name, entry in listed.items():
        metadata = entry["metadata"]
        assert metadata["description"] and metadata["source"], name
        assert metadata["params"] > 0, name
    assert "tips_v2_b14" in keras_hub.models.Backbone.presets
    assert "tips_v2_b14" in keras_tips.TIPSTokenizer.presets


@pytest.mark.backend_independent
def test_parameter_count_matches_built_models():
    for ffn_layer in ("mlp", "swiglu"):
        vision = dict(_vision_kwargs(), ffn_layer=ffn_layer, mlp_dim=40)
        backbone = keras_tips.TIPSBackbone(
            keras_tips.TIPSVisionEncoder(**vision),
            keras_tips.TIPSTextEncoder(**_text_kwargs()))
        assert backbone.count_params() == variants.parameter_count(
            vision, _text_kwargs())
    tiny = keras_tips.TIPSBackbone.presets["tips_tiny_scenes"]
    built = keras_tips.TIPSBackbone.from_preset("tips_tiny_scenes")
    assert tiny["metadata"]["params"] == built.count_params()


def test_keras_hub_base_class_dispatches_to_tips():
    backbone = keras_hub.models.Backbone.from_preset("tips_tiny_scenes")
    assert isinstance(backbone, keras_tips.TIPSBackbone)
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset("tips_tiny_scenes")
    assert isinstance(tokenizer, keras_tips.TIPSTokenizer)


def test_official_preset_dispatches_from_a_cold_cache(tmp_path, monkeypatch,
                                                      official_mirror):
    # Nothing converted yet: keras-hub's own entry point downloads (from the
    # `file://` mirror) and converts, as `TIPSBackbone.from_preset` does.
    vision, _ = official_mirror("tips_v2_b14")
    converted = tmp_path / "cache" / "presets" / "tips_v2_b14"
    assert not converted.exists()
    listed = keras_hub.models.Backbone.presets["tips_v2_b14"]  # lists only
    assert listed["metadata"]["params"] > 0 and not converted.exists()
    backbone = keras_hub.models.Backbone.from_preset("tips_v2_b14")
    assert isinstance(backbone, keras_tips.TIPSBackbone)
    assert (converted / "config.json").exists()
    images = np.random.default_rng(0).uniform(size=(1, 28, 28, 3))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(
            backbone.vision_encoder(images)["cls_embeddings"]),
        keras.ops.convert_to_numpy(vision(images)["cls_embeddings"]))
    # Later calls, for any keras-hub class, are served from the cache.
    monkeypatch.setenv("KERAS_TIPS_BASE_URL", "file:///nonexistent")
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset("tips_v2_b14")
    assert isinstance(tokenizer, keras_tips.TIPSTokenizer)
    again = keras_hub.models.Backbone.from_preset("tips_v2_b14")
    assert again.hidden_dim == 384
    # A failed download is an error naming the file, not "Unknown preset".
    with pytest.raises(OSError, match="tips_oss_g14_lowres"):
        keras_hub.models.Backbone.from_preset("tips_v1_g14_lowres")
    assert not (tmp_path / "cache" / "presets" / "tips_v1_g14_lowres").exists()


def _lora_variables(model):
    return sorted(v.path for v in model.trainable_weights)


def test_enable_lora_defaults_to_attention_projections(tmp_path):
    backbone = keras_tips.TIPSBackbone(**_backbone_kwargs())
    backbone.enable_lora(4)
    trainable = _lora_variables(backbone)
    # qkv and output projection of 2 vision and 2 text blocks, A and B each.
    assert len(trainable) == 16
    assert all("lora_kernel" in path for path in trainable)
    assert not any("/fc" in path or "mlp" in path for path in trainable)
    assert backbone.default_lora_layer_names() == ["out_proj", "proj", "qkv"]
    encoder = keras_tips.TIPSTextEncoder(**_text_kwargs())
    encoder.enable_lora(2)
    assert len(encoder.trainable_weights) == 8
    assert encoder.default_lora_layer_names() == ["out_proj", "qkv"]


def test_lora_weights_round_trip(tmp_path):
    backbone = keras_tips.TIPSBackbone(**_backbone_kwargs())
    config = backbone.get_config()
    base_weights = backbone.get_weights()
    backbone.enable_lora(4)
    rng = np.random.default_rng(0)
    for variable in backbone.trainable_weights:
        variable.assign(rng.normal(0, 0.1, variable.shape))
    inputs = _backbone_inputs()
    expected = {k: keras.ops.convert_to_numpy(v)
                for k, v in backbone(inputs).items()}
    path = str(tmp_path / "adapter.lora.h5")
    backbone.save_lora_weights(path)

    fresh = keras_tips.TIPSBackbone.from_config(config)
    fresh.set_weights(base_weights)
    fresh.enable_lora(4)
    fresh.load_lora_weights(path)
    actual = fresh(inputs)
    for key in ("cls_embeddings", "text_embeddings"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(actual[key]),
                                   expected[key], rtol=1e-5, atol=1e-6)
        # The adapter changes the outputs: the round trip is not vacuous.
        plain = keras_tips.TIPSBackbone.from_config(config)
        plain.set_weights(base_weights)
        assert not np.allclose(
            keras.ops.convert_to_numpy(plain(inputs)[key]), expected[key])


def test_lora_target_matching_no_layer_is_an_error():
    backbone = keras_tips.TIPSBackbone(**_backbone_kwargs())
    with pytest.raises(ValueError, match=r"\['query', 'value'\] match no layer"):
        backbone.enable_lora(4, target_layer_names=["qkv", "query", "value"])
    assert len(backbone.trainable_weights) > 16  # nothing frozen
    with pytest.raises(ValueError, match="rank=0"):
        backbone.enable_lora(0)
    backbone.enable_lora(4, target_layer_names=["qkv"])
    assert len(backbone.trainable_weights) == 8


def test_lora_fine_tuning_trains_only_the_adapters():
    backbone = keras_tips.TIPSBackbone(**_backbone_kwargs())
    backbone.enable_lora(2)
    frozen = [keras.ops.convert_to_numpy(w) for w in backbone.non_trainable_weights]
    encoder = backbone.vision_encoder
    images = keras.Input((28, 28, 3))
    model = keras.Model(images, encoder(images)["cls_embeddings"][:, 0])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    # Not a constant target: a LayerNorm output is equally far from all ones.
    targets = np.random.default_rng(1).normal(size=(2, 16)).astype("float32")
    history = model.fit(_images(), targets, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for before, after in zip(frozen, backbone.non_trainable_weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))


def test_int8_quantization(recwarn):
    backbone = keras_tips.TIPSBackbone.from_preset("tips_tiny_scenes")
    inputs = {"images": _images(56, 56), **_text_inputs()}
    # Compiled calls: much faster than eager ones on jax.
    reference = backbone.predict_on_batch(inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone.quantize("int8")
    messages = [str(w.message) for w in caught
                if not issubclass(w.category, DeprecationWarning)]
    assert messages == []
    quantized = [layer for layer in backbone._flatten_layers()
                 if layer.quantization_mode == "int8"]
    # Four dense layers per block and the token embedding; nothing else.
    assert len(quantized) == 4 * (4 + 2) + 1  # 4 vision, 2 text blocks
    outputs = backbone.predict_on_batch(inputs)
    for key in ("cls_embeddings", "patch_embeddings", "text_embeddings"):
        actual = np.asarray(outputs[key])
        error = np.abs(actual - reference[key]).max() / np.abs(
            reference[key]).max()
        assert error < 0.02, (key, error)


def test_int8_backbone_round_trips_through_a_preset(tmp_path):
    # keras-hub's Backbone config keys quantized layers by path, where the
    # two encoders' coincide (`block_0/proj`); saving used to fail.
    backbone = keras_tips.TIPSBackbone.from_preset("tips_tiny_scenes")
    backbone.quantize("int8")
    inputs = {"images": _images(56, 56), **_text_inputs()}
    expected = backbone.predict_on_batch(inputs)
    backbone.save_to_preset(str(tmp_path / "int8"))
    restored = keras_tips.TIPSBackbone.from_preset(str(tmp_path / "int8"))
    for encoder in (restored.vision_encoder, restored.text_encoder):
        assert encoder.blocks[0].qkv.quantization_mode == "int8"
    outputs = restored.predict_on_batch(inputs)
    for key in ("cls_embeddings", "patch_embeddings", "text_embeddings"):
        np.testing.assert_array_equal(np.asarray(outputs[key]), expected[key])


@pytest.mark.backend_independent
def test_quantize_leaves_garbage_collection_as_it_found_it():
    import gc
    import weakref

    from keras_tips.quantization import existing_objects_frozen

    class Node:
        pass

    # The test session froze the imports (conftest); start unfrozen here.
    gc.unfreeze()
    try:
        with existing_objects_frozen():
            assert gc.get_freeze_count() > 0
            node = Node()
            node.itself = node  # garbage only a collection frees
            collectable = weakref.ref(node)
            del node
        assert gc.get_freeze_count() == 0
        assert collectable() is None  # freed by the collection at the end
        # A caller's own freeze is left alone: garbage it froze survives the
        # block (with the freeze undone, the block's last collection would
        # free it). Counting frozen objects would not do: any thread may drop
        # a frozen object by reference count meanwhile.
        gc.disable()  # no automatic collection before the freeze
        node = Node()
        node.itself = node
        frozen_garbage = weakref.ref(node)
        del node
        gc.freeze()
        with existing_objects_frozen():
            pass
        assert gc.get_freeze_count() > 0
        assert frozen_garbage() is not None
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
