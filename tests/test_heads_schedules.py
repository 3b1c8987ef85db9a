"""Tests of training/heads.py, schedules.py, ema.py and config.py."""

import dataclasses
import json
import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_tips.normalization import l2_normalize
from training import config as config_lib
from training import ema, heads, schedules
from tests.gradients import numpy_gradients

# ----------------------------------------------------------------------------
# ProjectionHead


def np_gelu_exact(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def np_unit_bottleneck(head, x):
    """NumPy float64 MLP of the head, L2-normalized: `(..., bottleneck)`."""
    h = np.asarray(x, np.float64)
    for index, layer in enumerate(head.mlp_layers):
        kernel = ops.convert_to_numpy(layer.kernel).astype(np.float64)
        h = h @ kernel
        if layer.use_bias:
            h = h + ops.convert_to_numpy(layer.bias).astype(np.float64)
        if index < len(head.mlp_layers) - 1:
            h = np_gelu_exact(h)
    return h / np.maximum(np.linalg.norm(h, axis=-1, keepdims=True), 1e-6)


def np_projection_head(head, x):
    """Independent NumPy forward pass from the head's weights."""
    h = np_unit_bottleneck(head, x)
    prototypes = ops.convert_to_numpy(head.prototypes).astype(np.float64)
    prototypes = prototypes / np.linalg.norm(prototypes, axis=0, keepdims=True)
    return h @ prototypes


def small_head(**kwargs):
    args = dict(num_prototypes=32, hidden_dim=24, bottleneck_dim=8)
    args.update(kwargs)
    return heads.ProjectionHead(**args)


def test_head_shapes_for_cls_and_patch_inputs():
    head = small_head()
    x2 = np.random.default_rng(0).normal(size=(5, 12)).astype("float32")
    x3 = np.random.default_rng(1).normal(size=(2, 7, 12)).astype("float32")
    assert tuple(head(x2).shape) == (5, 32)
    assert tuple(head(x3).shape) == (2, 7, 32)
    assert head.compute_output_shape((2, 7, 12)) == (2, 7, 32)
    # A patch tensor gives the same logits as its rows one by one.
    flat = ops.convert_to_numpy(head(x3.reshape(14, 12))).reshape(2, 7, 32)
    np.testing.assert_allclose(
        ops.convert_to_numpy(head(x3)), flat, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_head_matches_numpy_reference(num_layers):
    head = small_head(num_layers=num_layers)
    x = np.random.default_rng(2).normal(size=(4, 3, 12)).astype("float32")
    head.build(x.shape)
    # Unit-scale weights, so that the GELU's nonlinearity matters.
    weight_rng = np.random.default_rng(20)
    head.set_weights(
        [
            weight_rng.normal(size=w.shape).astype("float32")
            for w in head.get_weights()
        ]
    )
    got = ops.convert_to_numpy(head(x))
    want = np_projection_head(head, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    widths = [layer.units for layer in head.mlp_layers]
    assert widths == [24] * (num_layers - 1) + [8]
    # Dense kernels + biases + prototypes.
    assert len(head.trainable_weights) == 2 * num_layers + 1
    assert tuple(head.prototypes.shape) == (8, 32)


def test_head_weight_normalization_and_cosine_range():
    head = small_head()
    x = 10.0 * np.random.default_rng(3).normal(size=(6, 12)).astype("float32")
    out = ops.convert_to_numpy(head(x))
    assert np.all(np.abs(out) <= 1.0 + 1e-5)
    norms = np.linalg.norm(
        ops.convert_to_numpy(head.normalized_prototypes()), axis=0
    )
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    # Rescaling each prototype (the weight-norm direction) changes nothing.
    raw = ops.convert_to_numpy(head.prototypes)
    scales = np.linspace(0.1, 7.0, 32).astype("float32")
    head.prototypes.assign(raw * scales)
    np.testing.assert_allclose(
        ops.convert_to_numpy(head(x)), out, rtol=1e-4, atol=1e-5
    )


def test_head_get_config_round_trip():
    head = heads.ProjectionHead(
        num_prototypes=16,
        hidden_dim=20,
        bottleneck_dim=6,
        num_layers=2,
        use_bias=False,
        epsilon=1e-5,
        name="patch_head",
    )
    x = np.random.default_rng(4).normal(size=(3, 9)).astype("float32")
    out = ops.convert_to_numpy(head(x))
    config = head.get_config()
    for key in (
        "num_prototypes",
        "hidden_dim",
        "bottleneck_dim",
        "num_layers",
        "use_bias",
        "epsilon",
        "kernel_initializer",
    ):
        assert key in config
    clone = heads.ProjectionHead.from_config(config)
    assert clone.get_config() == config
    clone.build((None, 9))
    clone.set_weights(head.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(clone(x)), out, rtol=1e-6)
    # Generic Keras (de)serialization finds the registered class.
    restored = keras.layers.deserialize(keras.layers.serialize(head))
    assert isinstance(restored, heads.ProjectionHead)
    assert restored.get_config() == config


def test_head_saves_in_keras_file(tmp_path):
    inputs = keras.Input((5, 9))
    outputs = small_head(name="head")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(5).normal(size=(2, 5, 9)).astype("float32")
    want = ops.convert_to_numpy(model(x))
    path = str(tmp_path / "head.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), want, rtol=1e-6)


def test_head_gradients_reach_all_weights():
    head = small_head()
    x = np.random.default_rng(6).normal(size=(4, 12)).astype("float32")
    head.build(x.shape)
    grads = numpy_gradients(
        lambda: ops.sum(ops.square(head(x)[:, :5])), head.trainable_variables
    )
    assert len(grads) == len(head.trainable_variables)
    for g in grads:
        assert np.all(np.isfinite(g)) and np.any(g != 0)


def _plain_head(head, x):
    """The head's forward pass, autodiff through `x @ (P / ||P||)`."""
    for index, layer in enumerate(head.mlp_layers):
        x = layer(x)
        if index < head.num_layers - 1:
            x = ops.gelu(x, approximate=False)
    x = l2_normalize(x, epsilon=head.epsilon)
    return ops.matmul(x, head.normalized_prototypes())


def test_head_gradients_match_autodiff_of_normalized_prototypes():
    # The head writes its prototype gradient out (training.heads
    # `_cosine_logits`); it must equal autodiff of the plain formula, and
    # the weight-norm gradient `(I - p p^T) G_k / ||P_k||` in float64.
    head = small_head()
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 5, 12)).astype("float32")
    head.build(x.shape)
    prototypes = ops.convert_to_numpy(head.prototypes).copy()
    prototypes[:, 3] *= 1e-6  # norm below epsilon: a constant 1/epsilon
    prototypes[:, 4] *= 50.0
    head.prototypes.assign(prototypes)
    weights = ops.convert_to_tensor(
        rng.normal(size=(3, 5, 32)).astype("float32"))
    variables = head.trainable_variables

    got = numpy_gradients(lambda: ops.sum(head(x) * weights), variables)
    want = numpy_gradients(lambda: ops.sum(_plain_head(head, x) * weights), variables)
    for variable, g, w in zip(variables, got, want):
        scale = np.abs(w).max()
        np.testing.assert_allclose(
            g, w, rtol=1e-4, atol=1e-5 * scale, err_msg=variable.path)

    # float64: G = h^T w with h the unit bottleneck vectors.
    h = np_unit_bottleneck(head, x)
    G = h.reshape(-1, 8).T @ np.asarray(weights, np.float64).reshape(-1, 32)
    p = prototypes.astype(np.float64)
    norms = np.linalg.norm(p, axis=0)
    unit = p / norms
    expected = (G - unit * np.sum(unit * G, axis=0)) / norms
    expected[:, 3] = G[:, 3] / head.epsilon
    prototype_gradient = got[variables.index(head.prototypes)]
    assert prototype_gradient.dtype == np.float32
    np.testing.assert_allclose(
        prototype_gradient, expected, rtol=1e-4,
        atol=1e-5 * np.abs(expected).max())


def test_head_mixed_precision_policy():
    head = small_head(dtype="mixed_bfloat16")
    x = np.random.default_rng(7).normal(size=(3, 12)).astype("float32")
    out = head(x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(head.prototypes.dtype) == "float32"
    out32 = ops.convert_to_numpy(ops.cast(out, "float32"))
    np.testing.assert_allclose(out32, np_projection_head(head, x), atol=3e-2)


def test_head_argument_errors():
    with pytest.raises(ValueError, match="num_prototypes"):
        heads.ProjectionHead(num_prototypes=0)
    with pytest.raises(ValueError, match="num_layers"):
        heads.ProjectionHead(num_prototypes=8, num_layers=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        heads.ProjectionHead(num_prototypes=8, epsilon=0.0)


# ----------------------------------------------------------------------------
# Schedules


def test_cosine_schedule_endpoints_and_midpoint():
    kw = dict(total_steps=110, base_value=1.0, final_value=0.1, warmup_steps=10)
    assert schedules.cosine_schedule(0, **kw) == 0.0
    np.testing.assert_allclose(schedules.cosine_schedule(5, **kw), 0.5)
    np.testing.assert_allclose(schedules.cosine_schedule(10, **kw), 1.0)
    np.testing.assert_allclose(schedules.cosine_schedule(60, **kw), 0.55)
    np.testing.assert_allclose(schedules.cosine_schedule(110, **kw), 0.1)
    np.testing.assert_allclose(schedules.cosine_schedule(500, **kw), 0.1)
    # Quarter point of the cosine: final + (base-final) * (1 + cos(pi/4)) / 2.
    want = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))
    np.testing.assert_allclose(schedules.cosine_schedule(35, **kw), want)
    # Without warm-up: starts at base; warm-up start value honoured.
    assert schedules.cosine_schedule(0, 100, 2.0, 0.0) == 2.0
    np.testing.assert_allclose(
        schedules.cosine_schedule(0, 100, 2.0, 0.0, 10, warmup_start_value=0.5),
        0.5,
    )


def test_cosine_schedule_numpy_and_tensor_agree():
    steps = np.arange(0, 130)
    kw = dict(
        total_steps=120, base_value=3e-3, final_value=1e-5, warmup_steps=20
    )
    host = schedules.cosine_schedule(steps, **kw)
    assert isinstance(host, np.ndarray) and host.shape == (130,)
    device = schedules.cosine_schedule(
        ops.convert_to_tensor(steps, "int32"), **kw
    )
    assert keras.backend.standardize_dtype(device.dtype) == "float32"
    np.testing.assert_allclose(
        ops.convert_to_numpy(device), host, rtol=1e-5, atol=1e-9
    )
    scalar = schedules.cosine_schedule(np.int64(30), **kw)
    assert isinstance(scalar, float)
    # Warm-up increases, decay decreases, constant after the end.
    assert np.all(np.diff(host[:21]) > 0)
    assert np.all(np.diff(host[20:121]) < 0)
    assert np.all(host[120:] == host[120])


def test_ema_momentum_and_weight_decay_schedules_increase():
    steps = np.arange(0, 1001)
    momentum = schedules.ema_momentum_schedule(steps, 1000)
    np.testing.assert_allclose(momentum[0], 0.994)
    np.testing.assert_allclose(momentum[-1], 1.0)
    assert np.all(np.diff(momentum) >= 0) and np.all(momentum <= 1.0)
    decay = schedules.weight_decay_schedule(steps, 1000)
    np.testing.assert_allclose(
        [decay[0], decay[500], decay[-1]], [0.04, 0.12, 0.2]
    )
    assert np.all(np.diff(decay) > 0)
    variable = keras.Variable(500, dtype="int64", trainable=False)
    np.testing.assert_allclose(
        ops.convert_to_numpy(schedules.weight_decay_schedule(variable, 1000)),
        0.12,
        rtol=1e-6,
    )


def test_teacher_temperature_schedule():
    f = schedules.teacher_temperature_schedule
    np.testing.assert_allclose(f(0, 100), 0.04)
    np.testing.assert_allclose(f(50, 100), 0.055)
    np.testing.assert_allclose(f(100, 100), 0.07)
    np.testing.assert_allclose(f(1000, 100), 0.07)
    np.testing.assert_allclose(f(0, 0), 0.07)
    values = f(np.arange(0, 120), 100)
    assert np.all(np.diff(values[:101]) > 0) and np.all(
        values[100:] == values[100]
    )
    tensor = f(ops.convert_to_tensor(np.arange(0, 120)), 100)
    np.testing.assert_allclose(ops.convert_to_numpy(tensor), values, rtol=1e-6)
    np.testing.assert_allclose(
        ops.convert_to_numpy(f(ops.convert_to_tensor(3), 0)), 0.07, rtol=1e-6
    )


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match="warmup_steps"):
        schedules.cosine_schedule(0, 10, 1.0, 0.0, warmup_steps=11)
    with pytest.raises(ValueError, match="total_steps"):
        schedules.cosine_schedule(0, 0, 1.0, 0.0)
    with pytest.raises(TypeError, match="total_steps"):
        schedules.cosine_schedule(0, 10.5, 1.0, 0.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        schedules.teacher_temperature_schedule(0, -1)
    with pytest.raises(ValueError, match="warmup_steps"):
        schedules.WarmupCosineDecay(1e-3, total_steps=5, warmup_steps=6)


def test_warmup_cosine_decay_values_and_serialization():
    schedule = schedules.WarmupCosineDecay(
        2e-3,
        total_steps=100,
        final_learning_rate=1e-5,
        warmup_steps=10,
        warmup_start_learning_rate=1e-4,
        name="lr",
    )
    for step in (0, 5, 10, 55, 100, 150):
        want = schedules.cosine_schedule(step, 100, 2e-3, 1e-5, 10, 1e-4)
        np.testing.assert_allclose(
            ops.convert_to_numpy(schedule(step)), want, rtol=1e-5
        )
    serialized = keras.optimizers.schedules.serialize(schedule)
    json.dumps(serialized)
    restored = keras.optimizers.schedules.deserialize(serialized)
    assert isinstance(restored, schedules.WarmupCosineDecay)
    assert restored.get_config() == schedule.get_config()

    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=0.04
    )
    clone = keras.optimizers.AdamW.from_config(optimizer.get_config())
    assert isinstance(clone._learning_rate, schedules.WarmupCosineDecay)
    assert clone._learning_rate.get_config() == schedule.get_config()
    # The optimizer evaluates it on its iteration counter.
    variable = keras.Variable(np.ones((3,), "float32"))
    optimizer.apply_gradients([(ops.ones((3,)), variable)])
    np.testing.assert_allclose(
        ops.convert_to_numpy(optimizer.learning_rate),
        schedules.cosine_schedule(1, 100, 2e-3, 1e-5, 10, 1e-4),
        rtol=1e-5,
    )


# ----------------------------------------------------------------------------
# EMA


def _variables(rng, shapes, dtype="float32"):
    return [keras.Variable(rng.normal(size=s).astype(dtype)) for s in shapes]


def test_ema_update_matches_numpy():
    rng = np.random.default_rng(10)
    shapes = [(3, 4), (4,), ()]
    teacher = _variables(rng, shapes)
    student = _variables(rng, shapes)
    t0 = [ops.convert_to_numpy(v).astype(np.float64) for v in teacher]
    s0 = [ops.convert_to_numpy(v).copy() for v in student]
    ema.ema_update(teacher, student, 0.9)
    for t, a, b in zip(teacher, t0, s0):
        np.testing.assert_allclose(
            ops.convert_to_numpy(t), 0.9 * a + 0.1 * b, rtol=1e-6
        )
    for s, b in zip(student, s0):
        np.testing.assert_array_equal(ops.convert_to_numpy(s), b)
    # Momentum as a tensor, applied twice.
    t1 = [ops.convert_to_numpy(v).astype(np.float64) for v in teacher]
    ema.ema_update(teacher, student, ops.convert_to_tensor(0.5))
    for t, a, b in zip(teacher, t1, s0):
        np.testing.assert_allclose(
            ops.convert_to_numpy(t), 0.5 * a + 0.5 * b, rtol=1e-6
        )


def test_ema_update_momentum_extremes_and_layers():
    rng = np.random.default_rng(11)
    teacher = keras.layers.Dense(3)
    student = keras.layers.Dense(3)
    teacher.build((None, 2))
    student.build((None, 2))
    student.set_weights([w + 1.0 for w in student.get_weights()])
    before = teacher.get_weights()
    ema.ema_update(teacher, student, 1.0)
    for a, b in zip(teacher.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    ema.ema_update(teacher, student, 0.0)
    for a, b in zip(teacher.get_weights(), student.get_weights()):
        np.testing.assert_array_equal(a, b)
    del rng


def test_ema_update_values_is_pure():
    rng = np.random.default_rng(12)
    teacher = _variables(rng, [(2, 2)])
    student = _variables(rng, [(2, 2)])
    t0 = ops.convert_to_numpy(teacher[0]).copy()
    (new,) = ema.ema_update_values([teacher[0].value], [student[0].value], 0.75)
    np.testing.assert_allclose(
        ops.convert_to_numpy(new),
        0.75 * t0 + 0.25 * ops.convert_to_numpy(student[0]),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(teacher[0]), t0)


def test_ema_update_errors():
    rng = np.random.default_rng(13)
    a = _variables(rng, [(2, 3), (3,)])
    with pytest.raises(ValueError, match="same number of variables"):
        ema.ema_update(a, a[:1], 0.9)
    with pytest.raises(ValueError, match=r"Shape mismatch at variable 1"):
        ema.ema_update(a, _variables(rng, [(2, 3), (4,)]), 0.9)
    with pytest.raises(TypeError, match="Dtype mismatch"):
        ema.ema_update(a, _variables(rng, [(2, 3), (3,)], "float16"), 0.9)
    ints = [keras.Variable(np.zeros((2,), "int32"), trainable=False)]
    with pytest.raises(TypeError, match="floating-point"):
        ema.ema_update(ints, ints, 0.9)
    with pytest.raises(ValueError, match="momentum"):
        ema.ema_update(a, a, 1.2)
    with pytest.raises(TypeError, match="teacher_variables"):
        ema.ema_update(3, a, 0.9)


def test_copy_weights():
    rng = np.random.default_rng(14)
    teacher = _variables(rng, [(2, 3), (3,)])
    student = _variables(rng, [(2, 3), (3,)])
    ema.copy_weights(teacher, student)
    for t, s in zip(teacher, student):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(t), ops.convert_to_numpy(s)
        )
    # Teacher is a copy, not an alias.
    student[0].assign(np.zeros((2, 3), "float32"))
    assert np.any(ops.convert_to_numpy(teacher[0]) != 0)
    with pytest.raises(ValueError, match="Shape mismatch"):
        ema.copy_weights(teacher, _variables(rng, [(3, 2), (3,)]))


# ----------------------------------------------------------------------------
# PretrainConfig

PretrainConfig = config_lib.PretrainConfig


def test_config_defaults_follow_the_papers():
    config = PretrainConfig.for_recipe("tips")
    assert config.global_crop_size == 224 and config.high_res_crop_size == 448
    assert config.local_crop_size == 98 and config.num_local_crops == 6
    assert config.global_crop_scale == (0.32, 1.0)
    assert config.local_crop_scale == (0.05, 0.32)
    assert config.mask_ratio == 0.75
    assert (config.head_hidden_dim, config.head_bottleneck_dim) == (2048, 256)
    assert config.cls_num_prototypes == 65536
    assert config.patch_num_prototypes == 32768
    assert config.student_temperature == 0.1
    assert (
        config.teacher_temperature_start,
        config.teacher_temperature_end,
    ) == (
        0.04,
        0.07,
    )
    assert config.center_momentum == 0.9
    assert (config.ema_momentum_start, config.ema_momentum_end) == (0.994, 1.0)
    assert config.contrastive_noisy_weight == 0.5
    assert config.contrastive_synthetic_weight == 0.5
    assert config.distillation_weight == 1.0 and config.masked_weight == 2.0
    assert (config.weight_decay_start, config.weight_decay_end) == (0.04, 0.2)
    assert config.gradient_clip_norm == 3.0
    assert (config.adam_beta1, config.adam_beta2) == (0.9, 0.999)
    assert config.patch_visible_weight == 0.0 and not config.head_only_ema


def test_config_recipes_and_overrides():
    v2 = PretrainConfig.for_recipe("tips_v2")
    assert v2.recipe == "tips_v2"
    assert v2.patch_visible_weight == 1.0
    assert v2.head_only_ema and v2.multi_granularity_captions
    custom = PretrainConfig.for_recipe(
        "tips_v2", patch_visible_weight=0.5, seed=3
    )
    assert custom.patch_visible_weight == 0.5 and custom.seed == 3
    with pytest.raises(ValueError, match="Unknown recipe"):
        PretrainConfig.for_recipe("clip")
    with pytest.raises(ValueError, match="not_a_field"):
        PretrainConfig.for_recipe("tips", not_a_field=1)
    with pytest.raises(ValueError, match="contradicts"):
        PretrainConfig.for_recipe("tips", recipe="tips_v2")


def test_config_replace_and_immutability():
    config = PretrainConfig.for_recipe("tips")
    changed = config.replace(mask_ratio=0.5, mask_mode="block")
    assert changed.mask_ratio == 0.5 and changed.mask_mode == "block"
    assert config.mask_ratio == 0.75
    with pytest.raises(ValueError, match="mask_ratoi"):
        config.replace(mask_ratoi=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mask_ratio = 0.1


def test_config_json_round_trip():
    for config in (
        PretrainConfig.for_recipe(
            "tips_v2", learning_rate=3, total_steps=7, warmup_steps=2
        ),
        PretrainConfig.tiny(),
    ):
        data = json.loads(json.dumps(config.to_dict()))
        assert data["global_crop_scale"] == list(config.global_crop_scale)
        restored = PretrainConfig.from_dict(data)
        assert restored == config
        assert isinstance(restored.global_crop_scale, tuple)
        assert PretrainConfig.from_json(config.to_json()) == config
    assert isinstance(
        PretrainConfig.for_recipe("tips", learning_rate=3).learning_rate, float
    )


def test_config_from_dict_errors_and_recipe_defaults():
    data = PretrainConfig.for_recipe("tips").to_dict()
    data["bogus_key"] = 1
    with pytest.raises(ValueError, match="bogus_key"):
        PretrainConfig.from_dict(data)
    with pytest.raises(TypeError, match="dict"):
        PretrainConfig.from_dict([1, 2])
    partial = PretrainConfig.from_dict({"recipe": "tips_v2", "seed": 5})
    assert partial.head_only_ema and partial.seed == 5


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"mask_mode": "grid"}, "mask_mode"),
        ({"recipe": "clip"}, "recipe"),
        ({"global_crop_size": 100}, "global_crop_size"),
        ({"local_crop_size": 97}, "local_crop_size"),
        ({"global_crop_scale": (0.5, 0.3)}, "global_crop_scale"),
        ({"local_crop_scale": (0.0, 0.3)}, "local_crop_scale"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"student_temperature": 0.0}, "student_temperature"),
        ({"ema_momentum_start": 1.5}, "ema_momentum_start"),
        ({"contrastive_temperature_init": 5.0}, "contrastive_temperature_init"),
        ({"warmup_steps": 10**9}, "warmup_steps"),
        ({"num_local_crops": -1}, "num_local_crops"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"mixed_precision": "yes"}, "mixed_precision"),
        ({"separate_patch_head": False}, "patch_num_prototypes"),
        ({"masked_weight": -1.0}, "masked_weight"),
    ],
)
def test_config_validation_names_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        PretrainConfig.for_recipe("tips").replace(**changes)


def test_tiny_config_is_small_and_consistent():
    for recipe in ("tips", "tips_v2"):
        config = PretrainConfig.tiny(recipe)
        assert config.recipe == recipe
        assert config.global_crop_size % config.patch_size == 0
        assert config.local_crop_size % config.patch_size == 0
        assert config.global_crop_size <= 112 and config.local_crop_size <= 42
        assert config.num_local_crops == 2
        assert (
            config.cls_num_prototypes <= 1024 and config.head_hidden_dim <= 256
        )
        assert config.total_steps <= 100 and config.batch_size <= 16
    assert PretrainConfig.tiny(total_steps=5, warmup_steps=1).total_steps == 5
    assert PretrainConfig.tiny("tips_v2").patch_visible_weight == 1.0
