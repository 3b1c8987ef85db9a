"""Tests of `training.pretrainer.TIPSPretrainer` and its per-backend steps.

A tiny model (width 32, 2 layers, 2 heads, 56 px global crops, 2 local
crops of 28 px, heads with 128 prototypes) on random batches. Runs on the
backend of KERAS_BACKEND; `test_backends_give_the_same_losses` compares the
three backends in subprocesses.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.gradients import gradient_reaches
from training import train as train_lib
from training.callbacks import NonFiniteLossError
from training.config import PretrainConfig
from training.models import build_backbone
from training.optimizers import build_optimizer
from training.pretrainer import LOG_KEYS
from training.pretrainer import LOSS_TERMS
from training.pretrainer import TIPSPretrainer

REPO_ROOT = Path(__file__).resolve().parents[1]
VOCABULARY_SIZE = 64
BATCH = 8


def tiny_config(recipe="tips", **overrides):
    values = {
        "head_hidden_dim": 64,
        "head_bottleneck_dim": 32,
        "cls_num_prototypes": 128,
        "patch_num_prototypes": 128,
        "batch_size": BATCH,
        "total_steps": 30,
        "warmup_steps": 3,
        "learning_rate": 3e-3,
    }
    values.update(overrides)
    return PretrainConfig.tiny(recipe, **values)


def make_pretrainer(config, seed=0, compile=True):
    train_lib.seed_weight_initialization(seed)
    backbone = build_backbone(config, VOCABULARY_SIZE)
    pretrainer = TIPSPretrainer(backbone, config)
    if compile:
        pretrainer.compile(optimizer=build_optimizer(config, pretrainer))
    return pretrainer


def random_batch(rng, config, batch_size=BATCH):
    grid = config.global_crop_size // config.patch_size
    g, loc = config.global_crop_size, config.local_crop_size
    length = config.text_max_length
    mask = np.zeros((batch_size, grid * grid), bool)
    for row in mask:
        row[rng.permutation(grid * grid)[: int(round(0.75 * grid * grid))]] = True
    noisy_mask = (np.arange(length) < rng.integers(3, length, (batch_size, 1)))
    synthetic_mask = np.arange(length) < rng.integers(3, length, (batch_size, 1))
    return {
        "global_images": rng.uniform(size=(batch_size, g, g, 3)).astype("float32"),
        "local_images": rng.uniform(
            size=(batch_size, config.num_local_crops, loc, loc, 3)
        ).astype("float32"),
        "patch_mask": mask.reshape(batch_size, grid, grid),
        "noisy_token_ids": (
            rng.integers(1, VOCABULARY_SIZE, (batch_size, length)) * noisy_mask
        ).astype("int32"),
        "noisy_padding_mask": noisy_mask.astype("int32"),
        "synthetic_token_ids": (
            rng.integers(1, VOCABULARY_SIZE, (batch_size, length)) * synthetic_mask
        ).astype("int32"),
        "synthetic_padding_mask": synthetic_mask.astype("int32"),
        "has_noisy_caption": np.ones((batch_size,), "float32"),
        "has_synthetic_caption": np.ones((batch_size,), "float32"),
    }


def dataset_of(batches, repeat=True):
    stacked = {key: np.stack([b[key] for b in batches]) for key in batches[0]}
    dataset = tf.data.Dataset.from_tensor_slices(stacked)
    return dataset.repeat() if repeat else dataset


def as_float(value):
    return float(keras.ops.convert_to_numpy(value))


def values_of(variables):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


class StepLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append({k: float(np.asarray(v)) for k, v in logs.items()})


# ---------------------------------------------------------------------------
# Structure and forward pass.


@pytest.mark.parametrize("recipe", ["tips", "tips_v2"])
def test_compute_losses_returns_every_term(recipe):
    config = tiny_config(recipe)
    pretrainer = make_pretrainer(config, compile=False)
    batch = random_batch(np.random.default_rng(0), config)
    terms = pretrainer.compute_losses(batch)
    assert set(terms) == {"loss", *LOSS_TERMS}
    values = {k: as_float(v) for k, v in terms.items()}
    assert all(np.isfinite(v) for v in values.values()), values
    expected_total = (
        0.5 * values["contrastive_noisy"]
        + 0.5 * values["contrastive_synthetic"]
        + 1.0 * values["distillation"]
        + 2.0 * values["masked"]
    )
    np.testing.assert_allclose(values["loss"], expected_total, rtol=1e-5)
    # Fresh model, B = 8: the contrastive terms are near log(8).
    assert 1.0 < values["contrastive_noisy"] < 4.0


def _np_unit(x):
    x = np.asarray(x, "float64")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_log_softmax(rows):
    rows = rows - rows.max(axis=-1, keepdims=True)
    return rows - np.log(np.exp(rows).sum(axis=-1, keepdims=True))


def _np_contrastive(image, text, temperature, keep):
    logits = _np_unit(image[keep]) @ _np_unit(text[keep]).T / temperature
    return 0.5 * (
        -np.mean(np.diag(_np_log_softmax(logits)))
        - np.mean(np.diag(_np_log_softmax(logits.T)))
    )


def _np_sinkhorn(logits, temperature, iterations, weights=None):
    """Sinkhorn-Knopp targets as DINOv2 computes them (rows = samples)."""
    logits = np.asarray(logits, "float64")
    weights = np.ones(len(logits)) if weights is None else np.asarray(weights, "float64")
    q = np.exp((logits - 1.0) / temperature) * weights[:, None]
    q /= q.sum()
    rows, prototypes = weights.sum(), logits.shape[1]
    for _ in range(iterations):
        q /= q.sum(axis=0, keepdims=True)
        q /= prototypes
        q /= np.maximum(q.sum(axis=1, keepdims=True), 1e-300)
        q /= rows
    return q * rows


def _np(x):
    return keras.ops.convert_to_numpy(x).astype("float64")


@pytest.mark.parametrize("recipe", ["tips", "tips_v2"])
def test_loss_terms_match_numpy_references(recipe):
    """Every term rebuilt in NumPy from the encoder and head outputs."""
    config = tiny_config(recipe)
    pretrainer = make_pretrainer(config, compile=False)
    batch = random_batch(np.random.default_rng(1), config)
    batch["has_noisy_caption"][2] = 0.0
    terms = {k: as_float(v) for k, v in pretrainer.compute_losses(batch).items()}

    backbone = pretrainer.backbone
    vision = backbone.vision_encoder
    temperature = as_float(pretrainer.contrastive_temperature())
    # Contrastive: the UNMASKED student pass, first CLS with the noisy
    # caption, second CLS with the synthetic one.
    cls = _np(vision.encode(batch["global_images"])["cls_embeddings"])
    texts = {
        name: _np(backbone.text_encoder({
            "token_ids": batch[f"{name}_token_ids"],
            "padding_mask": batch[f"{name}_padding_mask"],
        }))
        for name in ("noisy", "synthetic")
    }
    expected = {
        "contrastive_noisy": _np_contrastive(
            cls[:, 0], texts["noisy"], temperature, batch["has_noisy_caption"] > 0),
        "contrastive_synthetic": _np_contrastive(
            cls[:, 1], texts["synthetic"], temperature,
            batch["has_synthetic_caption"] > 0),
    }
    # Teacher: its own encoder ("tips") or the student's unmasked pass
    # ("tips_v2", head-only EMA), then Sinkhorn-Knopp at the step-0 teacher
    # temperature.
    teacher_encoder = pretrainer.teacher_vision_encoder or vision
    assert (pretrainer.teacher_vision_encoder is None) == (recipe == "tips_v2")
    teacher = teacher_encoder.encode(batch["global_images"])
    tau = config.teacher_temperature_start
    cls_targets = _np_sinkhorn(
        _np(pretrainer.teacher_cls_head(teacher["cls_embeddings"][:, 0])), tau,
        config.sinkhorn_iterations)
    patches = keras.ops.reshape(teacher["patch_embeddings"], (BATCH, -1, 32))
    patch_logits = _np(pretrainer.teacher_patch_head(patches))
    mask = batch["patch_mask"].reshape(BATCH, -1).astype("float64")
    visible = config.patch_visible_weight
    patch_targets = _np_sinkhorn(
        patch_logits.reshape(-1, patch_logits.shape[-1]), tau,
        config.sinkhorn_iterations,
        weights=None if visible > 0 else mask.reshape(-1),
    ).reshape(patch_logits.shape)
    # DINO: every local crop against its image's global target.
    local = batch["local_images"]
    local_cls = vision.encode(local.reshape((-1,) + local.shape[2:]))[
        "cls_embeddings"][:, 0]
    local_logits = _np(pretrainer.student_cls_head(local_cls)).reshape(
        BATCH, config.num_local_crops, -1)
    student_tau = config.student_temperature
    expected["distillation"] = np.mean(
        -(cls_targets[:, None] * _np_log_softmax(local_logits / student_tau)).sum(-1))
    # iBOT (++): the masked student pass against the patch targets.
    student_patches = vision.encode(
        batch["global_images"], patch_mask=batch["patch_mask"])["patch_embeddings"]
    student_logits = _np(pretrainer.student_patch_head(
        keras.ops.reshape(student_patches, (BATCH, -1, 32))))
    cross_entropy = -(patch_targets * _np_log_softmax(student_logits / student_tau)).sum(-1)
    weights = mask + visible * (1 - mask)
    expected["masked"] = np.mean((cross_entropy * weights).sum(1) / weights.sum(1))
    for name, value in expected.items():
        np.testing.assert_allclose(terms[name], value, rtol=2e-4, err_msg=name)


@pytest.mark.parametrize("recipe", ["tips", "tips_v2"])
def test_student_encoder_passes(recipe):
    """Masked and unmasked global passes and one local pass; under
    head-only EMA the unmasked pass also serves the teacher (no extra)."""
    config = tiny_config(recipe)
    pretrainer = make_pretrainer(config, compile=False)
    batch = random_batch(np.random.default_rng(2), config)
    vision = pretrainer.backbone.vision_encoder
    calls = []
    original = vision.encode

    def counting_encode(images, patch_mask=None, training=None, **kwargs):
        # The unmasked pass names both options (the gradient reaches every
        # block by default); the other passes name none.
        assert kwargs in (
            {}, {"with_value_attention": False, "gradient_from_block": None})
        calls.append((tuple(images.shape), patch_mask is not None))
        return original(images, patch_mask=patch_mask, training=training,
                        **kwargs)

    vision.encode = counting_encode
    pretrainer.compute_losses(batch)
    g, loc, views = 56, 28, config.num_local_crops
    assert calls == [
        ((BATCH, g, g, 3), True),
        ((BATCH, g, g, 3), False),
        ((BATCH * views, loc, loc, 3), False),
    ]


def recipe_total(config, terms, **extra_weights):
    """The weighted total of the recipe's terms plus `extra_weights`."""
    total = (
        0.5 * terms["contrastive_noisy"] + 0.5 * terms["contrastive_synthetic"]
        + config.distillation_weight * terms["distillation"]
        + config.masked_weight * terms["masked"]
    )
    return total + sum(w * terms[name] for name, w in extra_weights.items())


@pytest.mark.parametrize("recipe", ["tips", "tips_v2"])
def test_patch_text_term_matches_numpy_reference(recipe):
    """The image-mean value-attention patch embedding of the unmasked
    pass against the synthetic caption, weighted into the total."""
    config = tiny_config(recipe, patch_text_weight=0.3)
    pretrainer = make_pretrainer(config, compile=False)
    batch = random_batch(np.random.default_rng(4), config)
    batch["has_synthetic_caption"][5] = 0.0
    terms = {k: as_float(v) for k, v in pretrainer.compute_losses(batch).items()}

    backbone = pretrainer.backbone
    patches = _np(backbone.vision_encoder.value_attention_patches(
        batch["global_images"]))
    synthetic = _np(backbone.text_encoder({
        "token_ids": batch["synthetic_token_ids"],
        "padding_mask": batch["synthetic_padding_mask"],
    }))
    temperature = as_float(pretrainer.contrastive_temperature())
    expected = _np_contrastive(
        patches.mean(axis=(1, 2)), synthetic, temperature,
        batch["has_synthetic_caption"] > 0)
    np.testing.assert_allclose(terms["contrastive_patches"], expected, rtol=2e-4)
    # Not the second CLS token's term: the patches are another embedding.
    assert abs(terms["contrastive_patches"] - terms["contrastive_synthetic"]) > 1e-3
    np.testing.assert_allclose(
        terms["loss"], recipe_total(config, terms, contrastive_patches=0.3), rtol=1e-5)


@pytest.mark.parametrize("field, term", [
    ("patch_text_weight", "contrastive_patches"),
    ("phrase_text_weight", "contrastive_phrases"),
])
def test_extra_term_is_off_by_default_and_needs_the_unmasked_pass(field, term):
    config = tiny_config()
    assert getattr(config, field) == 0.0
    pretrainer = make_pretrainer(config, compile=False)
    batch = random_batch(np.random.default_rng(5), config)
    assert as_float(pretrainer.compute_losses(batch)[term]) == 0.0
    backbone = build_backbone(config, VOCABULARY_SIZE)
    with pytest.raises(ValueError, match=field):
        TIPSPretrainer(backbone, tiny_config(**{field: 0.1}),
                       contrastive_on_masked_view=True)
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: -1.0})


def with_phrases(rng, batch, num_phrases=3, length=6):
    batch_size = len(batch["global_images"])
    has_phrase = (rng.uniform(size=(batch_size, num_phrases)) < 0.7)
    has_phrase[0] = True
    has_phrase[1] = False  # No phrase: a negative only.
    mask = (np.arange(length) < rng.integers(1, length + 1,
                                              (batch_size, num_phrases, 1)))
    mask = mask & has_phrase[..., None]
    ids = rng.integers(1, VOCABULARY_SIZE, (batch_size, num_phrases, length))
    return dict(batch, phrase_token_ids=(ids * mask).astype("int32"),
                phrase_padding_mask=mask.astype("int32"),
                has_phrase=has_phrase.astype("float32"))


@pytest.mark.parametrize("recipe", ["tips", "tips_v2"])
def test_phrase_term_matches_numpy_reference(recipe):
    """Each phrase's text embedding against the value-attention patches
    of the unmasked pass of every image, softmax-pooled, weighted into
    the total."""
    config = tiny_config(recipe, phrase_text_weight=0.4,
                         phrase_pool_temperature=0.1)
    pretrainer = make_pretrainer(config, compile=False)
    rng = np.random.default_rng(7)
    batch = with_phrases(rng, random_batch(rng, config))
    terms = {k: as_float(v) for k, v in pretrainer.compute_losses(batch).items()}

    backbone = pretrainer.backbone
    patches = _np(backbone.vision_encoder.value_attention_patches(
        batch["global_images"]))
    patches = patches.reshape(BATCH, -1, patches.shape[-1])
    num_phrases, length = batch["phrase_token_ids"].shape[1:]
    phrases = _np(backbone.text_encoder({
        "token_ids": batch["phrase_token_ids"].reshape(-1, length),
        "padding_mask": batch["phrase_padding_mask"].reshape(-1, length),
    })).reshape(BATCH, num_phrases, -1)
    temperature = as_float(pretrainer.contrastive_temperature())
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    cosines = np.einsum("bjd,cnd->bjcn", unit(phrases), unit(patches))
    weights = np.exp(cosines / 0.1)
    weights /= weights.sum(-1, keepdims=True)
    log_probs = _np_log_softmax((weights * cosines).sum(-1) / temperature)
    own = log_probs[np.arange(BATCH), :, np.arange(BATCH)]  # (B, P)
    valid = batch["has_phrase"] > 0
    expected = -own[valid].mean()
    np.testing.assert_allclose(terms["contrastive_phrases"], expected,
                               rtol=2e-4)
    np.testing.assert_allclose(
        terms["loss"], recipe_total(config, terms, contrastive_phrases=0.4), rtol=1e-5)


def test_phrase_term_names_the_batch_keys_and_fields_it_needs():
    config = tiny_config()
    assert config.data.max_phrases == 0
    assert tiny_config(phrase_text_weight=0.1, max_phrases=5).data.max_phrases == 5
    batch = random_batch(np.random.default_rng(8), config)
    backbone = build_backbone(config, VOCABULARY_SIZE)
    with_weight = TIPSPretrainer(backbone, tiny_config(phrase_text_weight=0.1))
    with pytest.raises(ValueError, match="phrase_token_ids.*max_phrases"):
        with_weight.compute_losses(batch)
    for field, value in (("max_phrases", 0), ("phrase_length", 0),
                         ("phrase_pool_temperature", 0.0)):
        with pytest.raises(ValueError, match=field):
            tiny_config(**{field: value})


def test_image_text_terms_can_train_only_the_last_blocks():
    """With `image_text_last_blocks=1` the losses are the same numbers,
    the contrastive terms' gradient reaches the last vision block (and
    the text encoder) but not the embedding or the earlier blocks, and
    the self-distillation terms still train every block."""
    batch = random_batch(np.random.default_rng(6), tiny_config("tips_v2"))
    results = {}
    for last_blocks in (0, 1):
        config = tiny_config("tips_v2", image_text_last_blocks=last_blocks,
                             patch_text_weight=0.3)
        pretrainer = make_pretrainer(config, compile=False)
        vision = pretrainer.backbone.vision_encoder
        assert len(vision.blocks) >= 2
        parts = [vision.embedding, *vision.blocks,
                 pretrainer.backbone.text_encoder]

        def reach(*terms):
            def loss():
                losses = pretrainer.compute_losses(batch)
                return sum(losses[term] for term in terms)

            return gradient_reaches(loss, parts)

        terms = {k: as_float(v)
                 for k, v in pretrainer.compute_losses(batch).items()}
        image_text = reach("contrastive_noisy", "contrastive_synthetic",
                           "contrastive_patches")
        results[last_blocks] = terms, image_text, reach("masked")
    (terms_all, text_all, masked_all), (terms_last, text_last, masked_last) = (
        results[0], results[1])
    for key in terms_all:
        np.testing.assert_allclose(terms_last[key], terms_all[key], rtol=1e-6)
    num_blocks = len(text_all) - 2
    assert all(text_all)
    # embedding, blocks 0 .. n-2: no; last block, text encoder: yes.
    assert text_last == [False] * num_blocks + [True, True]
    assert masked_all[:-1] == masked_last[:-1] == [True] * (num_blocks + 1)


def test_image_text_last_blocks_errors_name_the_field():
    backbone = build_backbone(tiny_config(), VOCABULARY_SIZE)
    num_blocks = len(backbone.vision_encoder.blocks)
    with pytest.raises(ValueError, match="image_text_last_blocks"):
        TIPSPretrainer(backbone,
                       tiny_config(image_text_last_blocks=num_blocks + 1))
    with pytest.raises(ValueError, match="image_text_last_blocks"):
        TIPSPretrainer(backbone, tiny_config(image_text_last_blocks=1),
                       contrastive_on_masked_view=True)
    with pytest.raises(ValueError, match="image_text_last_blocks"):
        tiny_config(image_text_last_blocks=-1)
    assert tiny_config().image_text_last_blocks == 0


def test_contrastive_terms_do_not_see_the_patch_mask():
    config = tiny_config()
    batch = random_batch(np.random.default_rng(3), config)
    other = dict(batch, patch_mask=np.ascontiguousarray(batch["patch_mask"][:, ::-1]))
    assert not np.array_equal(other["patch_mask"], batch["patch_mask"])
    for on_masked_view in (False, True):
        train_lib.seed_weight_initialization(0)
        pretrainer = TIPSPretrainer(
            build_backbone(config, VOCABULARY_SIZE), config,
            contrastive_on_masked_view=on_masked_view,
        )
        first = {k: as_float(v) for k, v in pretrainer.compute_losses(batch).items()}
        second = {k: as_float(v) for k, v in pretrainer.compute_losses(other).items()}
        assert first["masked"] != second["masked"]
        for term in ("contrastive_noisy", "contrastive_synthetic"):
            if on_masked_view:  # the documented trade-off: it does see it
                assert first[term] != second[term]
            else:
                np.testing.assert_allclose(first[term], second[term], rtol=1e-6)


@pytest.mark.parametrize("recipe", ["tips", "tips_v2"])
def test_teacher_is_a_frozen_exact_copy(recipe):
    config = tiny_config(recipe)
    pretrainer = make_pretrainer(config, compile=False)
    teacher = pretrainer.teacher_variables
    student = pretrainer.ema_student_variables
    assert len(teacher) == len(student) > 0
    if recipe == "tips_v2":
        # Head-only EMA: no teacher encoder.
        assert pretrainer.teacher_vision_encoder is None
        assert len(teacher) == len(pretrainer.teacher_cls_head.weights) + len(
            pretrainer.teacher_patch_head.weights
        )
    else:
        assert len(teacher) > len(pretrainer.backbone.vision_encoder.weights)
    trainable_ids = {id(v) for v in pretrainer.trainable_variables}
    for t, s in zip(teacher, student):
        assert not t.trainable
        assert id(t) not in trainable_ids
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(t), keras.ops.convert_to_numpy(s)
        )
    # The optimizer tracks the student only: no slot of a teacher variable.
    pretrainer.compile(optimizer=build_optimizer(config, pretrainer))
    pretrainer.optimizer.build(pretrainer.trainable_variables)
    # Adam: iteration count (and learning rate) + 2 slots per variable.
    extra = len(pretrainer.optimizer.variables) - 2 * len(
        pretrainer.trainable_variables
    )
    assert extra in (1, 2)


def test_bad_batches_are_rejected_with_the_key_named():
    config = tiny_config()
    pretrainer = make_pretrainer(config, compile=False)
    batch = random_batch(np.random.default_rng(0), config)
    missing = dict(batch)
    del missing["patch_mask"]
    with pytest.raises(ValueError, match="patch_mask"):
        pretrainer.compute_losses(missing)
    wrong_rank = dict(batch, local_images=batch["local_images"][:, 0])
    with pytest.raises(ValueError, match="local_images"):
        pretrainer.compute_losses(wrong_rank)
    wrong_grid = dict(batch, patch_mask=np.zeros((BATCH, 3, 3), bool))
    with pytest.raises(ValueError, match="patch_mask"):
        pretrainer.compute_losses(wrong_grid)
    with pytest.raises(TypeError, match="dict"):
        pretrainer.compute_losses([batch])


def test_get_config_round_trip():
    config = tiny_config("tips_v2")
    pretrainer = make_pretrainer(config, compile=False)
    restored = TIPSPretrainer.from_config(pretrainer.get_config())
    assert restored.config == config
    assert len(restored.weights) == len(pretrainer.weights)


# ---------------------------------------------------------------------------
# Training: one model per recipe is compiled once and trained step by step;
# the tests below read its snapshots.

# Two random batches, trained on repeatedly: the step mechanics (EMA,
# centers, prototype freezing, schedules, logs) are checked exactly here;
# that the self-distillation terms LEARN is shown on real scenes with the
# default recipe in `tests/test_learning.py`.
TRAINING_OVERRIDES = {
    "teacher_temperature_warmup_steps": 0,
    "teacher_temperature_start": 0.04,
    "teacher_temperature_end": 0.04,
    "center_momentum": 0.99,
    "ema_momentum_start": 0.9,
    "freeze_prototypes_steps": 1,
    "weight_decay_start": 0.0,
    "weight_decay_end": 0.0,
    "warmup_steps": 0,
    "total_steps": 32,
}


def _snapshot(pretrainer):
    return {
        "teacher": values_of(pretrainer.teacher_variables),
        "student": values_of(pretrainer.ema_student_variables),
        "prototypes": values_of(pretrainer.prototype_variables),
        "cls_center": values_of([pretrainer.cls_center])[0],
        "patch_center": values_of([pretrainer.patch_center])[0],
        "step": int(keras.ops.convert_to_numpy(pretrainer.step_counter)),
        "iterations": int(
            keras.ops.convert_to_numpy(pretrainer.optimizer.iterations)
        ),
    }


def _teacher_logits(pretrainer, batch):
    encoder = pretrainer.teacher_vision_encoder or pretrainer.backbone.vision_encoder
    outputs = encoder.encode(batch["global_images"])
    cls_logits = pretrainer.teacher_cls_head(outputs["cls_embeddings"][:, 0])
    patches = keras.ops.reshape(outputs["patch_embeddings"], (BATCH, -1, 32))
    patch_logits = pretrainer.teacher_patch_head(patches)
    return (
        keras.ops.convert_to_numpy(cls_logits),
        keras.ops.convert_to_numpy(patch_logits),
    )


@pytest.fixture(scope="module", params=["tips", "tips_v2"])
def training_run(request):
    """A pretrainer trained 1 + 1 + 30 steps, with snapshots in between."""
    config = tiny_config(request.param, **TRAINING_OVERRIDES)
    pretrainer = make_pretrainer(config)
    rng = np.random.default_rng(5)
    batches = [random_batch(rng, config) for _ in range(2)]
    logs = StepLogs()
    run = {"config": config, "batches": batches, "logs": logs}
    run["before"] = _snapshot(pretrainer)
    run["logits_before"] = _teacher_logits(pretrainer, batches[0])
    pretrainer.fit(
        dataset_of(batches[:1]), epochs=1, steps_per_epoch=1, verbose=0,
        callbacks=[logs],
    )
    run["after_1"] = _snapshot(pretrainer)
    pretrainer.fit(
        dataset_of(batches[1:]), epochs=1, steps_per_epoch=1, verbose=0,
        callbacks=[logs],
    )
    run["after_2"] = _snapshot(pretrainer)
    pretrainer.fit(
        dataset_of(batches), epochs=1, steps_per_epoch=30, verbose=0,
        callbacks=[logs],
    )
    run["pretrainer"] = pretrainer
    return run


def test_teacher_moves_by_exact_ema_of_the_updated_student(training_run):
    momentum = 0.9  # ema_momentum_schedule at step 0
    before, after = training_run["before"], training_run["after_1"]
    moved = 0
    for old_teacher, new_teacher, old_student, new_student in zip(
        before["teacher"], after["teacher"], before["student"], after["student"]
    ):
        expected = momentum * old_teacher.astype("float64") + (
            1 - momentum
        ) * new_student.astype("float64")
        # Exactly the EMA: a gradient step on the teacher would break this.
        np.testing.assert_allclose(new_teacher, expected, rtol=1e-6, atol=1e-8)
        moved += int(not np.array_equal(new_student, old_student))
    assert moved > len(after["student"]) // 2  # the student did move
    assert after["step"] == 1 and after["iterations"] == 1
    assert training_run["after_2"]["step"] == 2


def test_centers_are_the_ema_of_teacher_logit_means(training_run):
    cls_logits, patch_logits = training_run["logits_before"]
    after = training_run["after_1"]
    np.testing.assert_allclose(
        after["cls_center"], 0.01 * cls_logits.mean(axis=0), rtol=1e-4, atol=1e-7
    )
    np.testing.assert_allclose(
        after["patch_center"],
        0.01 * patch_logits.mean(axis=(0, 1)),
        rtol=1e-4,
        atol=1e-7,
    )


def test_prototypes_are_frozen_for_the_first_steps(training_run):
    before = training_run["before"]["prototypes"]
    after_1 = training_run["after_1"]["prototypes"]
    after_2 = training_run["after_2"]["prototypes"]
    for a, b, c in zip(before, after_1, after_2):
        np.testing.assert_array_equal(a, b)  # step 1: frozen
        assert not np.array_equal(b, c)  # step 2: trained


def test_a_few_dozen_steps_fit_the_batches_and_log_every_key(training_run):
    steps = training_run["logs"].steps
    assert len(steps) == 32
    assert set(LOG_KEYS) <= set(steps[0])
    assert all(np.isfinite(s[key]) for s in steps for key in LOG_KEYS)
    # Two batches seen 16 times each: the image-text pairs are being fitted.
    for term in ("loss", "contrastive_noisy", "contrastive_synthetic"):
        first = np.mean([s[term] for s in steps[:4]])
        last = np.mean([s[term] for s in steps[-4:]])
        assert last < 0.95 * first, (term, first, last)
    ln_k = np.log(training_run["config"].cls_num_prototypes)
    for step in steps:
        for head in ("cls", "patch"):
            assert 0 <= step[f"{head}_teacher_entropy"] <= ln_k + 1e-4
            assert step[f"{head}_teacher_entropy"] <= (
                step[f"{head}_teacher_batch_entropy"] + 1e-4)
            assert 1 <= step[f"{head}_teacher_prototypes_used"] <= 128
    # The schedules are logged step by step.
    lr = [s["learning_rate"] for s in steps]
    assert abs(lr[0] - 3e-3) < 1e-7 and lr[-1] < 1e-4
    momentum = [s["ema_momentum"] for s in steps]
    assert abs(momentum[0] - 0.9) < 1e-6 and np.all(np.diff(momentum) >= 0)
    assert all(abs(s["teacher_temperature"] - 0.04) < 1e-7 for s in steps)
    assert all(0.01 <= s["temperature"] <= 1.0 for s in steps)
    assert all(s["gradient_norm"] > 0 for s in steps)


def test_nan_loss_stops_the_run_naming_step_and_term(tmp_path):
    config = tiny_config(total_steps=6)
    rng = np.random.default_rng(6)
    batches = [random_batch(rng, config) for _ in range(6)]
    batches[2]["local_images"][:] = np.nan  # step 3: the local crops only

    def dataset_fn(config, start_step, global_crop_size):
        return dataset_of(batches, repeat=False).skip(start_step)

    with pytest.raises(NonFiniteLossError) as caught:
        train_lib.run_training(
            config,
            output_dir=str(tmp_path),
            vocabulary_size=VOCABULARY_SIZE,
            dataset_fn=dataset_fn,
            checkpoint_every=2,
            verbose=0,
            save_preset=False,
        )
    error = caught.value
    assert error.step == 3
    assert error.term == "distillation"
    assert "step 3" in str(error) and "'distillation'" in str(error)
    checkpoints = sorted(os.listdir(tmp_path / "checkpoints"))
    assert checkpoints == ["ckpt-000000002"]
    assert error.last_checkpoint.endswith("ckpt-000000002")


# ---------------------------------------------------------------------------
# The three backends agree.

def _parity_losses(mode, path):
    """The tiny `tips` pretrainer's loss terms on the weights and batch at
    `path`; `mode="write"` first saves this process's initial weights and a
    random batch there."""
    config = tiny_config("tips")
    pretrainer = make_pretrainer(config, compile=False)
    named = pretrainer.named_weights()
    if mode == "write":
        batch = random_batch(np.random.default_rng(7), config)
        arrays = {"w/" + k: keras.ops.convert_to_numpy(v) for k, v in named.items()}
        arrays.update({f"batch/{k}": v for k, v in batch.items()})
        np.savez(path, **arrays)
    data = np.load(path)
    for name, variable in named.items():
        value = data["w/" + name]
        assert tuple(variable.shape) == value.shape, (name, variable.path, value.shape)
        variable.assign(value)
    batch = {k[len("batch/"):]: data[k] for k in data.files if k.startswith("batch/")}
    terms = pretrainer.compute_losses(batch)
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in terms.items()}


_PARITY_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from tests.test_pretrainer import _parity_losses
print("RESULT " + json.dumps(_parity_losses(sys.argv[2], sys.argv[3])))
"""


def _run_backend(backend, *args, timeout=300):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO_ROOT))
    completed = subprocess.run(
        [sys.executable, "-c", _PARITY_SCRIPT, str(REPO_ROOT), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO_ROOT),
        timeout=timeout,
    )
    lines = [l for l in completed.stdout.splitlines() if l.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
@pytest.mark.backend_independent
def test_backends_give_the_same_losses(tmp_path):
    # This process's backend writes the weights and the batch and is the
    # reference; the two others each read them in a process of their own.
    path = str(tmp_path / "weights_and_batch.npz")
    here = keras.backend.backend()
    results = {here: _parity_losses("write", path)}
    for backend in sorted({"jax", "tensorflow", "torch"} - {here}):
        results[backend] = _run_backend(backend, "read", path)
    assert len(results) == 3
    reference = results[here]
    for backend, terms in results.items():
        for term in ("loss", *LOSS_TERMS):
            assert abs(terms[term] - reference[term]) <= 1e-4 * max(
                1.0, abs(reference[term])
            ), (backend, term, terms[term], reference[term])


def test_distribution_diagnostics_match_numpy():
    from training.pretrainer import _distribution_diagnostics

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 5)) * 3
    teacher = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    # Rows 0 and 1 pick prototype 2, row 4 prototype 0; rows 3 and 5 are
    # weighted out, so their prototypes (1 and 4) must not count.
    teacher[[0, 1], 2] += 10
    teacher[4, 0] += 10
    teacher[3, 1] += 10
    teacher[5, 4] += 10
    teacher[2, 3] += 10
    teacher /= teacher.sum(-1, keepdims=True)
    weights = np.array([1, 1, 1, 0, 1, 0], "float32")
    student = rng.normal(size=(6, 5))
    got = _distribution_diagnostics(
        teacher.astype("float32"), student.astype("float32"), 0.5, weights)
    got = {k: float(keras.ops.convert_to_numpy(v)) for k, v in got.items()}

    def entropy(p):
        return -(p * np.log(p)).sum(-1)

    kept = weights > 0
    probs = np.exp(student / 0.5) / np.exp(student / 0.5).sum(-1, keepdims=True)
    assert got["teacher_prototypes_used"] == 3  # prototypes 0, 2 and 3
    np.testing.assert_allclose(
        got["teacher_entropy"], entropy(teacher[kept]).mean(), rtol=1e-5)
    np.testing.assert_allclose(
        got["teacher_batch_entropy"], entropy(teacher[kept].mean(0)), rtol=1e-5)
    np.testing.assert_allclose(
        got["student_entropy"], entropy(probs[kept]).mean(), rtol=1e-5)
