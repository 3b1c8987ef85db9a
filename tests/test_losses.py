"""Tests of training/losses.py against independent NumPy references."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from training import losses

# ----------------------------------------------------------------------------
# Independent NumPy references (float64, written with loops where it helps
# independence from the vectorized implementation).


def np_log_softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def np_softmax(x, axis=-1):
    return np.exp(np_log_softmax(x, axis))


def np_clip_loss(image, text, temperature):
    """Plain CLIP loss: mean of image->text and text->image cross-entropy."""
    image = np.asarray(image, np.float64)
    text = np.asarray(text, np.float64)
    n = image.shape[0]
    if n == 0:
        return 0.0
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = image @ text.T / temperature
    i2t = 0.0
    t2i = 0.0
    for i in range(n):
        i2t += -np_log_softmax(logits[i, :])[i]
        t2i += -np_log_softmax(logits[:, i])[i]
    return 0.5 * (i2t / n + t2i / n)


def np_contrastive_with_valid(image, text, temperature, valid):
    """Reference for `valid`: run the plain loss on the valid subset only."""
    keep = np.asarray(valid).astype(bool)
    return np_clip_loss(image[keep], text[keep], temperature)


def np_distillation(student, teacher_probs, tau):
    student = np.asarray(student, np.float64)
    if student.ndim == 2:
        student = student[None]
    total, count = 0.0, 0
    for v in range(student.shape[0]):
        for b in range(student.shape[1]):
            target = (
                teacher_probs[v, b]
                if teacher_probs.ndim == 3
                else teacher_probs[b]
            )
            total += -np.sum(target * np_log_softmax(student[v, b] / tau))
            count += 1
    return total / count


def np_patch_ce(student, teacher, tau, b, n):
    return -np.sum(
        teacher[b, n]
        * np_log_softmax(np.asarray(student[b, n], np.float64) / tau)
    )


def np_ibot(student, teacher, mask, tau):
    """DINOv2 iBOT: per-image mean over masked patches, then over images."""
    batch, num_patches = mask.shape
    per_image = []
    for b in range(batch):
        masked = [n for n in range(num_patches) if mask[b, n]]
        if not masked:
            per_image.append(0.0)
            continue
        per_image.append(
            np.mean([np_patch_ce(student, teacher, tau, b, n) for n in masked])
        )
    return float(np.mean(per_image))


def np_ibot_plus_plus(student, teacher, mask, tau, visible_weight):
    batch, num_patches = mask.shape
    per_image = []
    for b in range(batch):
        numerator, denominator = 0.0, 0.0
        for n in range(num_patches):
            w = 1.0 if mask[b, n] else visible_weight
            numerator += w * np_patch_ce(student, teacher, tau, b, n)
            denominator += w
        per_image.append(numerator / denominator if denominator > 0 else 0.0)
    return float(np.mean(per_image))


def numeric_grad(fn, x, eps=1e-5):
    """Central finite differences of a float64 NumPy function."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        grad[index] = (fn(plus) - fn(minus)) / (2 * eps)
    return grad


# ----------------------------------------------------------------------------
# Backend gradient helper.


def backend_grads(fn, *arrays):
    """Gradients of scalar `fn(*tensors)` w.r.t. each input, as NumPy arrays."""
    arrays = [np.asarray(a, np.float32) for a in arrays]
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        grads = jax.grad(fn, argnums=tuple(range(len(arrays))))(
            *[jnp.asarray(a) for a in arrays]
        )
        return [np.asarray(g) for g in grads]
    if backend == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(a) for a in arrays]
        with tf.GradientTape() as tape:
            out = fn(*variables)
        grads = tape.gradient(out, variables)
        return [
            np.zeros_like(a) if g is None else np.asarray(g)
            for g, a in zip(grads, arrays)
        ]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        out = fn(*tensors)
        out.backward()
        return [
            np.zeros_like(a)
            if t.grad is None
            else t.grad.detach().cpu().numpy()
            for t, a in zip(tensors, arrays)
        ]
    pytest.skip(f"No gradient helper for backend {backend}.")


def to_float(x):
    return float(ops.convert_to_numpy(x))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ----------------------------------------------------------------------------
# contrastive_loss


def test_contrastive_matches_numpy(rng):
    image = rng.normal(size=(6, 5)).astype("float32")
    text = rng.normal(size=(6, 5)).astype("float32")
    for temperature in (0.07, 0.5, 1.0):
        got = to_float(losses.contrastive_loss(image, text, temperature))
        want = np_clip_loss(image, text, temperature)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_contrastive_identity_embeddings_known_value():
    n, temperature = 4, 0.25
    eye = np.eye(n, dtype="float32")
    got = to_float(losses.contrastive_loss(eye, eye, temperature))
    # Each row: logit 1/t on the diagonal, 0 elsewhere.
    want = math.log(1.0 + (n - 1) * math.exp(-1.0 / temperature))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_contrastive_orthogonal_uniform_value():
    # All logits equal -> uniform softmax -> loss log(N).
    n = 5
    image = np.ones((n, 3), "float32")
    text = np.ones((n, 3), "float32")
    got = to_float(losses.contrastive_loss(image, text, 0.3))
    np.testing.assert_allclose(got, math.log(n), rtol=1e-6)


def test_contrastive_is_symmetric_and_scale_invariant(rng):
    image = rng.normal(size=(7, 4)).astype("float32")
    text = rng.normal(size=(7, 4)).astype("float32")
    a = to_float(losses.contrastive_loss(image, text, 0.2))
    b = to_float(losses.contrastive_loss(text, image, 0.2))
    c = to_float(losses.contrastive_loss(3.0 * image, 0.25 * text, 0.2))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(a, c, rtol=1e-5)


def test_contrastive_asymmetric_pairs_differ_by_direction(rng):
    # The two directions differ in general, so the mean must use both.
    image = rng.normal(size=(5, 3))
    text = rng.normal(size=(5, 3))
    image_n = image / np.linalg.norm(image, axis=1, keepdims=True)
    text_n = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = image_n @ text_n.T / 0.1
    i2t = -np.mean(np.diag(np_log_softmax(logits, axis=1)))
    t2i = -np.mean(np.diag(np_log_softmax(logits, axis=0)))
    assert abs(i2t - t2i) > 1e-3
    got = to_float(losses.contrastive_loss(image, text, 0.1))
    np.testing.assert_allclose(got, 0.5 * (i2t + t2i), rtol=1e-5)


def test_contrastive_valid_excludes_rows_and_columns(rng):
    image = rng.normal(size=(8, 6)).astype("float32")
    text = rng.normal(size=(8, 6)).astype("float32")
    valid = np.array([1, 0, 1, 1, 0, 1, 1, 0], "float32")
    got = to_float(losses.contrastive_loss(image, text, 0.1, valid=valid))
    want = np_contrastive_with_valid(image, text, 0.1, valid)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    # Invalid rows' content is irrelevant (even zero vectors).
    text2 = text.copy()
    text2[valid == 0] = 0.0
    image2 = image.copy()
    image2[valid == 0] = 1e3 * rng.normal(size=(3, 6))
    got2 = to_float(losses.contrastive_loss(image2, text2, 0.1, valid=valid))
    np.testing.assert_allclose(got2, want, rtol=1e-5, atol=1e-6)

    # Bool mask works the same.
    got3 = to_float(losses.contrastive_loss(image, text, 0.1, valid=valid > 0))
    np.testing.assert_allclose(got3, want, rtol=1e-5, atol=1e-6)


def test_contrastive_valid_all_ones_and_all_zeros(rng):
    image = rng.normal(size=(5, 4)).astype("float32")
    text = rng.normal(size=(5, 4)).astype("float32")
    full = to_float(losses.contrastive_loss(image, text, 0.1))
    ones = to_float(losses.contrastive_loss(image, text, 0.1, valid=np.ones(5)))
    np.testing.assert_allclose(ones, full, rtol=1e-6)
    zeros = to_float(
        losses.contrastive_loss(image, text, 0.1, valid=np.zeros(5))
    )
    assert zeros == 0.0


def test_contrastive_float16_inputs_and_small_temperature(rng):
    image = rng.normal(size=(6, 8)).astype("float16")
    text = rng.normal(size=(6, 8)).astype("float16")
    out = losses.contrastive_loss(image, text, 0.01)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    want = np_clip_loss(image.astype("float32"), text.astype("float32"), 0.01)
    np.testing.assert_allclose(to_float(out), want, rtol=1e-4, atol=1e-4)


def test_contrastive_shape_errors():
    with pytest.raises(ValueError, match="image_embeddings"):
        losses.contrastive_loss(np.zeros((3, 4)), np.zeros((4, 4)), 0.1)
    with pytest.raises(ValueError, match="text_embeddings"):
        losses.contrastive_loss(np.zeros((3, 4)), np.zeros((3,)), 0.1)
    with pytest.raises(ValueError, match="valid"):
        losses.contrastive_loss(
            np.ones((3, 4)), np.ones((3, 4)), 0.1, valid=np.ones(4)
        )


def test_contrastive_gradients_match_finite_differences(rng):
    image = rng.normal(size=(4, 3))
    text = rng.normal(size=(4, 3))
    valid = np.array([1.0, 1.0, 0.0, 1.0])
    log_t = np.array(math.log(0.2))

    def fn(i, t, lt):
        return losses.contrastive_loss(i, t, ops.exp(lt), valid=valid)

    g_image, g_text, g_log_t = backend_grads(fn, image, text, log_t)
    for g in (g_image, g_text, g_log_t):
        assert np.all(np.isfinite(g))
    want_image = numeric_grad(
        lambda x: np_contrastive_with_valid(x, text, 0.2, valid), image
    )
    want_text = numeric_grad(
        lambda x: np_contrastive_with_valid(image, x, 0.2, valid), text
    )
    want_log_t = numeric_grad(
        lambda x: np_contrastive_with_valid(
            image, text, math.exp(float(x)), valid
        ),
        log_t,
    )
    np.testing.assert_allclose(g_image, want_image, atol=2e-4)
    np.testing.assert_allclose(g_text, want_text, atol=2e-4)
    np.testing.assert_allclose(g_log_t, want_log_t, atol=2e-4)
    # Invalid pair gets no gradient.
    np.testing.assert_array_equal(g_image[2], 0.0)
    np.testing.assert_array_equal(g_text[2], 0.0)


def test_contrastive_gradients_finite_with_zero_embeddings():
    image = np.zeros((3, 4), "float32")
    image[0, 0] = 1.0
    text = np.zeros((3, 4), "float32")
    text[0, 1] = 1.0
    (g_image, g_text) = backend_grads(
        lambda i, t: losses.contrastive_loss(
            i, t, 0.05, valid=np.array([1, 0, 1])
        ),
        image,
        text,
    )
    assert np.all(np.isfinite(g_image)) and np.all(np.isfinite(g_text))


# ----------------------------------------------------------------------------
# temperature_from_log


def test_temperature_from_log_clamps():
    got = to_float(losses.temperature_from_log(math.log(0.07)))
    np.testing.assert_allclose(got, 0.07, rtol=1e-6)
    assert (
        abs(to_float(losses.temperature_from_log(math.log(1e-5))) - 0.01) < 1e-7
    )
    assert (
        abs(to_float(losses.temperature_from_log(3.0, 0.01, 2.0)) - 2.0) < 1e-6
    )
    with pytest.raises(ValueError, match="min_temperature"):
        losses.temperature_from_log(0.0, 0.5, 0.1)


# ----------------------------------------------------------------------------
# phrase_grounding_loss


def np_phrase_grounding(phrases, patches, temperature, pool_temperature, valid):
    """Loops over phrases and images, float64."""
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    phrases = unit(np.asarray(phrases, np.float64))
    patches = unit(np.asarray(patches, np.float64))
    batch, num_phrases = phrases.shape[:2]
    total, count = 0.0, 0
    for b in range(batch):
        for j in range(num_phrases):
            if not valid[b, j]:
                continue
            scores = []
            for c in range(batch):
                cosines = patches[c] @ phrases[b, j]
                weights = np_softmax(cosines / pool_temperature)
                scores.append(np.sum(weights * cosines) / temperature)
            total -= np_log_softmax(np.array(scores))[b]
            count += 1
    return total / max(count, 1)


def test_phrase_grounding_matches_numpy(rng):
    phrases = rng.normal(size=(5, 3, 4)).astype("float32")
    patches = rng.normal(size=(5, 7, 4)).astype("float32")
    valid = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 1]])
    for temperature, pool in ((0.07, 0.05), (0.5, 1.0)):
        got = to_float(losses.phrase_grounding_loss(
            phrases, patches, temperature, pool, valid=valid))
        want = np_phrase_grounding(phrases, patches, temperature, pool, valid)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    got = to_float(losses.phrase_grounding_loss(phrases, patches, 0.1, 0.2))
    want = np_phrase_grounding(phrases, patches, 0.1, 0.2, np.ones((5, 3)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # No valid phrase: 0.
    assert to_float(losses.phrase_grounding_loss(
        phrases, patches, 0.1, 0.2, valid=np.zeros((5, 3)))) == 0.0


def test_phrase_grounding_scores_the_patch_that_shows_the_phrase():
    """Each image holds one patch equal to its phrase among four patches
    orthogonal to every phrase: a sharp pool scores the phrase's own
    image 1 (the best patch), a flat one 1/5 (the patches' mean cosine),
    the other images 0 either way."""
    dim = 8
    eye = np.eye(dim, dtype="float32")
    phrases = eye[:3][:, None, :]  # image b's phrase: axis b.
    patches = np.stack([
        np.stack([eye[b]] + [eye[4 + k] for k in range(4)]) for b in range(3)
    ])
    for pool, own_score in ((1e-3, 1.0), (1e5, 0.2)):
        got = to_float(losses.phrase_grounding_loss(phrases, patches, 0.1, pool))
        want = math.log(1 + 2 * math.exp(-own_score / 0.1))
        np.testing.assert_allclose(got, want, rtol=1e-3)


def test_phrase_grounding_errors():
    phrases = np.ones((2, 3, 4), "float32")
    with pytest.raises(ValueError, match="pool_temperature"):
        losses.phrase_grounding_loss(phrases, np.ones((2, 5, 4)), 0.1, 0.0)
    with pytest.raises(ValueError, match="phrase_embeddings"):
        losses.phrase_grounding_loss(np.ones((2, 4)), np.ones((2, 5, 4)), 0.1, 0.1)
    with pytest.raises(ValueError, match="do not match"):
        losses.phrase_grounding_loss(phrases, np.ones((3, 5, 4)), 0.1, 0.1)
    with pytest.raises(ValueError, match="do not match"):
        losses.phrase_grounding_loss(phrases, np.ones((2, 5, 6)), 0.1, 0.1)
    with pytest.raises(ValueError, match="valid"):
        losses.phrase_grounding_loss(phrases, np.ones((2, 5, 4)), 0.1, 0.1,
                                     valid=np.ones((2,)))


# ----------------------------------------------------------------------------
# teacher_probabilities and center_update


def test_teacher_probabilities_matches_numpy(rng):
    teacher = (5 * rng.normal(size=(3, 4, 10))).astype("float32")
    center = rng.normal(size=(10,)).astype("float32")
    got = ops.convert_to_numpy(
        losses.teacher_probabilities(teacher, center, 0.04)
    )
    want = np_softmax((teacher.astype(np.float64) - center) / 0.04, axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)


def test_teacher_probabilities_stop_gradient(rng):
    teacher = rng.normal(size=(2, 5))
    student = rng.normal(size=(2, 5))

    def fn(t, s):
        probs = losses.teacher_probabilities(t, np.zeros(5), 0.07)
        return losses.distillation_loss(s, probs, 0.1)

    g_teacher, g_student = backend_grads(fn, teacher, student)
    np.testing.assert_array_equal(g_teacher, 0.0)
    assert np.any(g_student != 0.0)


def test_center_update_matches_numpy(rng):
    center = rng.normal(size=(7,)).astype("float32")
    teacher_logits = rng.normal(size=(16, 7)).astype("float32")
    batch_mean = teacher_logits.mean(0)
    got = ops.convert_to_numpy(losses.center_update(center, batch_mean, 0.9))
    want = 0.9 * center.astype(np.float64) + 0.1 * batch_mean
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # Momentum as a tensor; momentum 1 keeps, 0 replaces.
    kept = losses.center_update(center, batch_mean, ops.convert_to_tensor(1.0))
    np.testing.assert_allclose(ops.convert_to_numpy(kept), center, rtol=1e-7)
    replaced = losses.center_update(center, batch_mean, 0.0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(replaced), batch_mean, rtol=1e-7
    )


def test_center_update_data_parallel_equivalence(rng):
    # The mean of equal-size per-replica means equals the global mean, so a
    # replica-reduced mean gives the single-device center.
    center = np.zeros(5, "float32")
    logits = rng.normal(size=(12, 5)).astype("float32")
    replica_means = [logits[i * 4 : (i + 1) * 4].mean(0) for i in range(3)]
    reduced = np.mean(replica_means, axis=0)
    a = ops.convert_to_numpy(losses.center_update(center, reduced, 0.9))
    b = ops.convert_to_numpy(losses.center_update(center, logits.mean(0), 0.9))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_center_update_errors():
    with pytest.raises(ValueError, match="shape"):
        losses.center_update(np.zeros(4), np.zeros(5), 0.9)
    with pytest.raises(ValueError, match="momentum"):
        losses.center_update(np.zeros(4), np.zeros(4), 1.5)


# ----------------------------------------------------------------------------
# distillation_loss


def test_distillation_matches_numpy(rng):
    student = rng.normal(size=(3, 4, 12)).astype("float32")
    teacher_probs = np_softmax(rng.normal(size=(4, 12)) / 0.07)
    got = to_float(losses.distillation_loss(student, teacher_probs, 0.1))
    want = np_distillation(student, teacher_probs, 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_distillation_rank2_and_per_view_targets(rng):
    student = rng.normal(size=(4, 9)).astype("float32")
    teacher_probs = np_softmax(rng.normal(size=(4, 9)))
    got = to_float(losses.distillation_loss(student, teacher_probs, 0.2))
    np.testing.assert_allclose(
        got, np_distillation(student, teacher_probs, 0.2), rtol=1e-5
    )
    student3 = rng.normal(size=(2, 4, 9)).astype("float32")
    per_view = np_softmax(rng.normal(size=(2, 4, 9)))
    got3 = to_float(losses.distillation_loss(student3, per_view, 0.1))
    np.testing.assert_allclose(
        got3, np_distillation(student3, per_view, 0.1), rtol=1e-5
    )


def test_distillation_known_value_and_stability():
    # Uniform teacher and constant student logits: loss = log K.
    k = 16
    student = np.zeros((2, 3, k), "float32")
    teacher = np.full((3, k), 1.0 / k)
    np.testing.assert_allclose(
        to_float(losses.distillation_loss(student, teacher, 0.1)),
        math.log(k),
        rtol=1e-6,
    )
    # Huge logits stay finite (log_softmax, not log(softmax)).
    student = np.zeros((1, 1, 4), "float32")
    student[0, 0, 0] = 1e4
    teacher = np.array([[0.0, 1.0, 0.0, 0.0]])
    got = to_float(losses.distillation_loss(student, teacher, 0.1))
    np.testing.assert_allclose(got, 1e5, rtol=1e-5)


def test_distillation_shape_errors():
    with pytest.raises(ValueError, match="student_logits"):
        losses.distillation_loss(np.zeros((2, 3, 4, 5)), np.zeros((3, 5)), 0.1)
    with pytest.raises(ValueError, match="teacher_probs"):
        losses.distillation_loss(np.zeros((2, 3, 5)), np.zeros((4, 5)), 0.1)
    with pytest.raises(ValueError, match="teacher_probs"):
        losses.distillation_loss(np.zeros((2, 3, 5)), np.zeros((3, 6)), 0.1)


def test_distillation_gradient_matches_finite_differences(rng):
    student = rng.normal(size=(2, 3, 5))
    teacher_probs = np_softmax(rng.normal(size=(3, 5)))
    (g,) = backend_grads(
        lambda s: losses.distillation_loss(s, teacher_probs, 0.1), student
    )
    want = numeric_grad(
        lambda s: np_distillation(s, teacher_probs, 0.1), student
    )
    np.testing.assert_allclose(g, want, atol=1e-4)


# ----------------------------------------------------------------------------
# masked_patch_loss


def _patch_inputs(rng, batch=3, patches=6, k=8):
    student = (2 * rng.normal(size=(batch, patches, k))).astype("float32")
    teacher = np_softmax(rng.normal(size=(batch, patches, k)) / 0.5)
    return student, teacher


def test_masked_patch_loss_matches_ibot_reference(rng):
    student, teacher = _patch_inputs(rng)
    mask = np.array(
        [
            [1, 0, 1, 0, 0, 1],
            [0, 0, 0, 0, 0, 0],  # no masked patch: contributes 0
            [1, 1, 1, 1, 1, 1],
        ],
        bool,
    )
    got = to_float(losses.masked_patch_loss(student, teacher, mask, 0.1))
    want = np_ibot(student, teacher, mask, 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Same with a 0/1 float mask.
    got_f = to_float(
        losses.masked_patch_loss(student, teacher, mask.astype("float32"), 0.1)
    )
    np.testing.assert_allclose(got_f, want, rtol=1e-5)


def test_masked_patch_loss_no_masked_patches_is_zero(rng):
    student, teacher = _patch_inputs(rng)
    mask = np.zeros((3, 6), bool)
    got = to_float(losses.masked_patch_loss(student, teacher, mask, 0.1))
    assert got == 0.0
    assert np.isfinite(got)


def test_masked_patch_loss_ibot_plus_plus(rng):
    student, teacher = _patch_inputs(rng)
    mask = rng.random((3, 6)) < 0.5
    mask[1] = False
    for visible_weight in (0.0, 0.3, 1.0, 2.0):
        got = to_float(
            losses.masked_patch_loss(
                student, teacher, mask, 0.1, visible_weight=visible_weight
            )
        )
        want = np_ibot_plus_plus(student, teacher, mask, 0.1, visible_weight)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    # visible_weight = 1: plain mean over every patch of every image.
    all_patches = np.mean(
        [
            np_patch_ce(student, teacher, 0.1, b, n)
            for b in range(3)
            for n in range(6)
        ]
    )
    got = to_float(
        losses.masked_patch_loss(
            student, teacher, mask, 0.1, visible_weight=1.0
        )
    )
    np.testing.assert_allclose(got, all_patches, rtol=1e-5)
    # visible_weight = 0 is exactly iBOT.
    got0 = to_float(losses.masked_patch_loss(student, teacher, mask, 0.1, 0.0))
    np.testing.assert_allclose(
        got0, np_ibot(student, teacher, mask, 0.1), rtol=1e-5
    )


def test_masked_patch_loss_gradients(rng):
    student, teacher = _patch_inputs(rng, batch=2, patches=3, k=4)
    mask = np.array([[1, 0, 1], [0, 0, 0]], "float32")
    (g,) = backend_grads(
        lambda s: losses.masked_patch_loss(s, teacher, mask, 0.1), student
    )
    assert np.all(np.isfinite(g))
    # Visible patches and the image without masked patches get no gradient.
    np.testing.assert_array_equal(g[0, 1], 0.0)
    np.testing.assert_array_equal(g[1], 0.0)
    want = numeric_grad(
        lambda s: np_ibot(s, teacher, mask.astype(bool), 0.1), student
    )
    np.testing.assert_allclose(g, want, atol=1e-4)
    # iBOT++: visible patches get gradient too.
    (g_pp,) = backend_grads(
        lambda s: losses.masked_patch_loss(s, teacher, mask, 0.1, 0.5), student
    )
    want_pp = numeric_grad(
        lambda s: np_ibot_plus_plus(s, teacher, mask.astype(bool), 0.1, 0.5),
        student,
    )
    np.testing.assert_allclose(g_pp, want_pp, atol=1e-4)
    assert np.any(g_pp[1] != 0.0)


def test_masked_patch_loss_errors(rng):
    student, teacher = _patch_inputs(rng)
    with pytest.raises(ValueError, match="mask"):
        losses.masked_patch_loss(student, teacher, np.zeros((3, 5)), 0.1)
    with pytest.raises(ValueError, match="teacher_patch_probs"):
        losses.masked_patch_loss(
            student, teacher[:, :, :4], np.zeros((3, 6)), 0.1
        )
    with pytest.raises(ValueError, match="student_patch_logits"):
        losses.masked_patch_loss(student[0], teacher, np.zeros((3, 6)), 0.1)
    with pytest.raises(ValueError, match="visible_weight"):
        losses.masked_patch_loss(student, teacher, np.zeros((3, 6)), 0.1, -1.0)


def test_losses_return_float32_scalars_for_half_inputs(rng):
    student, teacher = _patch_inputs(rng)
    mask = rng.random((3, 6)) < 0.5
    out = losses.masked_patch_loss(
        student.astype("float16"), teacher.astype("float16"), mask, 0.1
    )
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert tuple(out.shape) == ()
    out = losses.distillation_loss(student.astype("float16"), teacher[0], 0.1)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_losses_trace_in_compiled_functions(rng):
    """The losses work under jax.jit / tf.function with unknown batch size."""
    image = rng.normal(size=(5, 4)).astype("float32")
    text = rng.normal(size=(5, 4)).astype("float32")
    valid = np.array([1, 1, 0, 1, 1], "float32")
    student, teacher = _patch_inputs(rng)
    mask = (rng.random((3, 6)) < 0.5).astype("float32")

    def all_losses(i, t, v, s, p, m):
        return (
            losses.contrastive_loss(i, t, 0.1, valid=v)
            + losses.masked_patch_loss(s, p, m, 0.1, visible_weight=0.5)
            + losses.distillation_loss(s[:, 0], p[:, 0], 0.1)
        )

    eager = to_float(all_losses(image, text, valid, student, teacher, mask))
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        compiled = jax.jit(all_losses)
    elif backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(
            all_losses,
            input_signature=[
                tf.TensorSpec((None, 4), "float32"),
                tf.TensorSpec((None, 4), "float32"),
                tf.TensorSpec((None,), "float32"),
                tf.TensorSpec((None, None, 8), "float32"),
                tf.TensorSpec((None, None, 8), "float64"),
                tf.TensorSpec((None, None), "float32"),
            ],
        )
    else:
        pytest.skip("No graph compilation tested on the torch backend.")
    got = to_float(compiled(image, text, valid, student, teacher, mask))
    np.testing.assert_allclose(got, eager, rtol=1e-5)


# ---------------------------------------------------------------------------
# Sinkhorn-Knopp teacher targets (DINOv2).


def _sinkhorn_reference(logits, temperature, iterations):
    """DINOv2's `sinkhorn_knopp_teacher`, written on the (K, B) transpose."""
    q = np.exp(np.asarray(logits, "float64") / temperature).T
    rows, prototypes = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= prototypes
        q /= q.sum(axis=0, keepdims=True)
        q /= rows
    return (q * rows).T


def test_sinkhorn_knopp_matches_the_dinov2_algorithm(rng):
    logits = np.tanh(rng.normal(size=(12, 40))).astype("float32")
    for iterations in (1, 3):
        got = ops.convert_to_numpy(
            losses.sinkhorn_knopp_probabilities(logits, 0.07, iterations))
        np.testing.assert_allclose(
            got, _sinkhorn_reference(logits, 0.07, iterations), rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_sinkhorn_knopp_balances_prototypes_where_softmax_does_not(rng):
    # Every row prefers prototype 0: softmax gives it nearly all the mass,
    # Sinkhorn-Knopp spreads the batch over the prototypes.
    logits = (0.2 * np.tanh(rng.normal(size=(64, 16)))).astype("float32")
    logits[:, 0] += 0.5
    softmax = ops.convert_to_numpy(
        losses.teacher_probabilities(logits, np.zeros(16, "float32"), 0.04))
    balanced = ops.convert_to_numpy(
        losses.sinkhorn_knopp_probabilities(logits, 0.04, 10))
    assert softmax.mean(axis=0)[0] > 0.9
    np.testing.assert_allclose(balanced.mean(axis=0), 1 / 16, rtol=0.05)
    # Still sharp per row: far below the uniform entropy ln 16.
    entropy = -(balanced * np.log(np.maximum(balanced, 1e-30))).sum(1).mean()
    assert entropy < 0.6 * math.log(16)


def test_sinkhorn_knopp_row_weights_and_global_sum(rng):
    logits = np.tanh(rng.normal(size=(10, 8))).astype("float32")
    weights = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], "float32")
    got = ops.convert_to_numpy(losses.sinkhorn_knopp_probabilities(
        logits, 0.1, 3, row_weights=weights))
    np.testing.assert_array_equal(got[weights == 0], 0.0)
    kept = weights > 0
    np.testing.assert_allclose(
        got[kept], _sinkhorn_reference(logits[kept], 0.1, 3), rtol=1e-4, atol=1e-9)
    # Data parallel: two replicas holding the same rows. With the sums
    # all-reduced (here: twice the local sum), each replica's targets are
    # its rows of the targets of the whole (duplicated) batch.
    replica = ops.convert_to_numpy(losses.sinkhorn_knopp_probabilities(
        logits, 0.1, 3, global_sum=lambda x: 2 * x))
    whole = ops.convert_to_numpy(losses.sinkhorn_knopp_probabilities(
        np.concatenate([logits, logits]), 0.1, 3))
    np.testing.assert_allclose(replica, whole[:10], rtol=1e-5, atol=1e-9)


def test_sinkhorn_knopp_with_far_more_prototypes_than_rows():
    # The CLS head's case at small batches (4 images, 65,536 prototypes):
    # at temperature 0.02 some prototypes' columns hold only entries below
    # 1e-30 of the total. DINOv2's algorithm still gives each of them mass
    # 1 / K after a round or two; so must the scaled form.
    rng = np.random.default_rng(0)
    logits = np.tanh(0.3 * rng.normal(size=(4, 65536))).astype("float32")
    weights = np.array([1, 0, 1, 1], "float32")
    kept = weights > 0
    expected = _sinkhorn_reference((logits - 1.0)[kept], 0.02, 3)
    column_mass = np.exp((logits[kept] - 1.0).astype("float64") / 0.02).sum(0)
    assert (column_mass / column_mass.sum() < 1e-30).any()
    got = ops.convert_to_numpy(losses.sinkhorn_knopp_probabilities(
        logits, 0.02, 3, row_weights=weights))
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[~kept], 0.0)
    np.testing.assert_allclose(got[kept], expected, rtol=1e-3, atol=1e-9)
    # Row masses are float32 matrix-vector products over 65,536 columns.
    np.testing.assert_allclose(got[kept].sum(axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(
        got[kept].sum(axis=0), expected.sum(axis=0), rtol=1e-3, atol=1e-9)


def test_sinkhorn_knopp_rejects_bad_arguments(rng):
    logits = ops.convert_to_tensor(np.tanh(rng.normal(size=(4, 6))).astype("float32"))
    with pytest.raises(ValueError, match="num_iterations"):
        losses.sinkhorn_knopp_probabilities(logits, 0.1, 0)
    with pytest.raises(ValueError, match="teacher_logits"):
        losses.sinkhorn_knopp_probabilities(ops.zeros((2, 3, 4)), 0.1)
