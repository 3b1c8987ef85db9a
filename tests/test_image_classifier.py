"""`TIPSImageClassifier`: zero-shot start, fine-tuning, LoRA, int8, saving."""

import warnings

import keras
import keras_hub
import numpy as np
import pytest

import keras_tips
from keras_tips.tasks import TIPSImageClassifier
from keras_tips.tasks import TIPSZeroShotClassifier
from training.scenes.generator import SHAPES
from training.scenes.generator import SceneConfig
from training.scenes.generator import generate_scene
from training.scenes.generator import scene_rng

PRESET = "tips_tiny_scenes"
TEMPLATES = ("a photo of a {}.", "a {}.")


def _scenes(split, count, seed=7, image_size=112, object_scale=1.0):
    """Single-object scenes (the preset's 112 px by default): uint8 images
    and shape ids."""
    config = SceneConfig(image_size=image_size, min_objects=1, max_objects=1,
                         object_scale=object_scale)
    images, labels = [], []
    for index in range(count):
        scene = generate_scene(scene_rng(seed, split, index), config)
        images.append(scene.image)
        labels.append(SHAPES.index(scene.objects[0].shape))
    return np.stack(images), np.array(labels, "int32")


def _classifier(**kwargs):
    return TIPSImageClassifier.from_preset(
        PRESET, class_names=list(SHAPES), prompt_templates=TEMPLATES, **kwargs)


@pytest.mark.parametrize("pooling", [
    pytest.param("first", marks=pytest.mark.backend_independent),
    pytest.param("second", marks=pytest.mark.backend_independent),
    "both",
])
def test_head_starts_as_the_zero_shot_classifier(pooling):
    classifier = _classifier(pooling=pooling, include_patch_mean=True)
    assert isinstance(classifier, keras_hub.models.ImageClassifier)
    zero_shot = TIPSZeroShotClassifier.from_preset(
        PRESET, class_names=list(SHAPES), prompt_templates=TEMPLATES,
        cls_token=pooling)
    images, _ = _scenes("check", 4)
    np.testing.assert_allclose(
        classifier.predict_on_batch(images), zero_shot.predict_on_batch(images),
        rtol=1e-4, atol=1e-4)


def test_lora_fine_tuning_learns_the_training_scenes():
    # LoRA mechanics: only the adapters and the head train, the frozen
    # weights stay put, and the training scenes are learned. (A few LoRA
    # steps do not generalise on this preset, whose features barely encode
    # shape; the held-out test is the full fine-tuning one below.)
    classifier = _classifier(pooling="both")
    images, labels = _scenes("train", 64)
    classifier.compile()  # keras-hub's defaults
    assert isinstance(classifier.optimizer, keras.optimizers.Adam)
    start = classifier.evaluate(images, labels, verbose=0, return_dict=True)
    classifier.enable_lora(2)
    trainable = {v.path for v in classifier.trainable_weights}
    assert all("lora_kernel" in p or p.startswith("predictions/")
               for p in trainable), trainable
    assert len(trainable) == 2 * 4 * 2 + 2  # adapters of 4 blocks; head
    frozen = [keras.ops.convert_to_numpy(w)
              for w in classifier.backbone.vision_encoder.non_trainable_weights]
    classifier.compile(optimizer=keras.optimizers.Adam(1e-2))
    classifier.fit(images, labels, batch_size=16, epochs=5, verbose=0)
    after = classifier.evaluate(images, labels, verbose=0, return_dict=True)
    assert after["loss"] < start["loss"]
    assert (after["sparse_categorical_accuracy"]
            > start["sparse_categorical_accuracy"] + 0.1), (start, after)
    for before, weight in zip(
            frozen, classifier.backbone.vision_encoder.non_trainable_weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(weight))


@pytest.mark.slow
@pytest.mark.backend_independent  # CI time: ~1.5 min on jax, longer elsewhere
def test_full_fine_tuning_beats_the_zero_shot_start_on_held_out_scenes():
    # The embedded preset's features barely encode shape, so a head-only or
    # LoRA fine-tune stays at its zero-shot start (~0.2, chance 1/6) on
    # held-out scenes. Fine-tuning the whole vision encoder learns shape:
    # 1280 steps on 2048 single-object scenes, at 56 px (4x4 patches, for
    # speed) with objects at twice the default size so that each spans
    # several patches. Model-ready floats, so no preprocessor.
    keras.utils.set_random_seed(0)
    backbone = keras_tips.TIPSBackbone.from_preset(PRESET)
    tokenizer = keras_tips.TIPSTokenizer.from_preset(PRESET)
    classifier = TIPSImageClassifier(backbone, num_classes=len(SHAPES),
                                     pooling="both", include_patch_mean=True)
    classifier.initialize_from_class_names(list(SHAPES), tokenizer, TEMPLATES)
    images, labels = _scenes("train", 2048, image_size=56, object_scale=2.0)
    held_images, held_labels = _scenes("heldout", 384, image_size=56,
                                       object_scale=2.0)
    images, held_images = images / 255.0, held_images / 255.0
    classifier.compile()
    start = classifier.evaluate(held_images, held_labels, verbose=0,
                                return_dict=True)
    assert len(classifier.trainable_weights) == len(
        backbone.vision_encoder.trainable_weights) + 2  # encoder; head
    classifier.compile(
        optimizer=keras.optimizers.AdamW(3e-4, weight_decay=0.05))
    classifier.fit(images, labels, batch_size=32, epochs=20, verbose=0)
    after = classifier.evaluate(held_images, held_labels, verbose=0,
                                return_dict=True)
    print(f"held-out accuracy {start['sparse_categorical_accuracy']:.3f} -> "
          f"{after['sparse_categorical_accuracy']:.3f}, loss "
          f"{start['loss']:.3f} -> {after['loss']:.3f}")
    accuracy = "sparse_categorical_accuracy"
    assert after[accuracy] >= start[accuracy] + 0.05, (start, after)
    # Well above chance too (1/6; one standard error on 384 scenes is 0.02).
    assert after[accuracy] >= 1 / 6 + 0.08, (start, after)
    assert after["loss"] < start["loss"] - 0.1, (start, after)


def _small_backbone():
    return keras_tips.TIPSBackbone(
        keras_tips.TIPSVisionEncoder(hidden_dim=16, num_layers=1, num_heads=2,
                                     mlp_dim=32, position_grid_size=2),
        keras_tips.TIPSTextEncoder(vocabulary_size=50, hidden_dim=16,
                                   num_layers=1, num_heads=2, mlp_dim=32))


def test_saving_and_config_round_trip(tmp_path):
    classifier = TIPSImageClassifier(_small_backbone(), num_classes=3,
                                     pooling="second", include_patch_mean=True,
                                     dropout=0.1)
    images = np.random.default_rng(0).uniform(size=(2, 28, 28, 3))
    expected = keras.ops.convert_to_numpy(classifier(images))
    assert expected.shape == (2, 3)
    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, TIPSImageClassifier)
    assert restored.pooler.num_parts == 2
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(images)),
                               expected, rtol=1e-5, atol=1e-6)


def test_int8_quantization_of_a_classifier_and_its_preset(tmp_path):
    # The preprocessor's layers (tokenizer, resizing) are never built and
    # have nothing to quantize: Keras' own `quantize` failed on them.
    classifier = _classifier(pooling="both")
    assert classifier.preprocessor is not None
    images, _ = _scenes("check", 4)
    reference = classifier.predict_on_batch(images)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classifier.quantize("int8")
    messages = [str(w.message) for w in caught
                if not issubclass(w.category, DeprecationWarning)]
    assert messages == []
    vision = classifier.backbone.vision_encoder
    assert vision.blocks[0].qkv.quantization_mode == "int8"
    assert classifier.backbone.text_encoder.blocks[0].qkv.quantization_mode \
        == "int8"
    assert vision.final_norm.quantization_mode is None
    assert classifier.output_dense.quantization_mode is None  # the head
    for layer in classifier.preprocessor._flatten_layers():
        assert layer.quantization_mode is None, layer.name
    logits = classifier.predict_on_batch(images)
    error = np.abs(logits - reference).max() / np.abs(reference).max()
    assert error < 0.02, error
    # The quantized classifier round-trips through a preset exactly.
    classifier.save_to_preset(str(tmp_path / "int8"))
    restored = TIPSImageClassifier.from_preset(str(tmp_path / "int8"))
    assert restored.backbone.vision_encoder.blocks[0].qkv.quantization_mode \
        == "int8"
    np.testing.assert_array_equal(restored.predict_on_batch(images), logits)


@pytest.mark.backend_independent
def test_bad_arguments_are_named():
    backbone = _small_backbone()
    with pytest.raises(ValueError, match="pooling='mean'"):
        TIPSImageClassifier(backbone, num_classes=2, pooling="mean")
    with pytest.raises(ValueError, match="num_classes=None"):
        TIPSImageClassifier(backbone)
    with pytest.raises(ValueError, match=r"`num_classes` \(3\) differs"):
        TIPSImageClassifier(backbone, num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="tokenizer is needed"):
        TIPSImageClassifier(backbone, class_names=["a", "b"])
    # One head row per class: synonyms are for the zero-shot tasks.
    with pytest.raises(TypeError, match=r"entries \[0\] are lists"):
        TIPSImageClassifier(backbone, class_names=[["a", "c"], "b"])
