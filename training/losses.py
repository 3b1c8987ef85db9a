"""Loss terms of TIPS / TIPSv2 pretraining, written with `keras.ops` only.

TIPS trains an image-text model with three families of objectives:

* `contrastive_loss`: the CLIP-style symmetric image-text InfoNCE loss. TIPS
  applies it twice, once between the first CLS token and the noisy web
  caption and once between the second CLS token and the synthetic caption.
* `distillation_loss`: DINO self-distillation. The EMA teacher sees the
  global crop, its CLS logits are centered and sharpened into targets with
  `teacher_probabilities`, and the student's local-crop CLS logits are
  trained to match them.
* `masked_patch_loss`: iBOT masked image modeling. The student sees a masked
  global crop and predicts the teacher's patch distributions at the masked
  positions. With `visible_weight > 0` visible patches count too (iBOT++,
  TIPSv2).

Beyond TIPS, `phrase_grounding_loss` ties each noun phrase of a caption to
the patches of its own image (PACL-style pooling, a contrastive loss over
the images of the batch); `PretrainConfig.phrase_text_weight` turns it on.

`center_update` is the running mean of teacher logits used by
`teacher_probabilities`, and `temperature_from_log` turns the learnable log
temperature of the contrastive loss into a clamped temperature.

Every function casts its floating inputs to float32 first, so the math runs
in float32 also under a mixed-precision policy, and uses `log_softmax` for
numerical stability. Every loss returns a float32 scalar.
"""

import math

from keras import ops

from keras_tips.normalization import l2_normalize

# Logit given to excluded (invalid) pairs in `contrastive_loss`. Finite, so
# that `log_softmax` over a row whose entries are all excluded stays finite;
# far enough below any real logit that `exp` underflows to exactly zero.
_EXCLUDED_LOGIT = -1e9


def _to_float32(x):
    return ops.cast(ops.convert_to_tensor(x), "float32")


def _check_rank(x, ranks, arg_name):
    rank = len(x.shape)
    if rank not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise ValueError(
            f"`{arg_name}` must have rank {expected}. Received shape "
            f"{tuple(x.shape)} (rank {rank})."
        )


def _shapes_compatible(shape_a, shape_b):
    """Same rank and equal sizes wherever both are statically known."""
    if len(shape_a) != len(shape_b):
        return False
    return all(
        a is None or b is None or a == b for a, b in zip(shape_a, shape_b)
    )


def _check_static_dims_equal(a, b, a_name, b_name, axis_a, axis_b):
    dim_a, dim_b = a.shape[axis_a], b.shape[axis_b]
    if dim_a is not None and dim_b is not None and dim_a != dim_b:
        raise ValueError(
            f"`{a_name}` and `{b_name}` do not match: axis {axis_a} of "
            f"`{a_name}` (shape {tuple(a.shape)}) has size {dim_a} but axis "
            f"{axis_b} of `{b_name}` (shape {tuple(b.shape)}) has size "
            f"{dim_b}."
        )


def _check_embedding_pair(a, b, a_name, b_name, rank, axes):
    """Both of rank `rank`, with equal static sizes along `axes`."""
    _check_rank(a, (rank,), a_name)
    _check_rank(b, (rank,), b_name)
    for axis in axes:
        _check_static_dims_equal(a, b, a_name, b_name, axis, axis)


def _identity(n):
    """`(n, n)` float32 identity: the matching pairs of an `n` x `n` batch."""
    positions = ops.arange(n)
    return ops.cast(
        ops.expand_dims(positions, 1) == ops.expand_dims(positions, 0),
        "float32",
    )


def temperature_from_log(
    log_temperature, min_temperature=0.01, max_temperature=1.0
):
    """Clamped temperature `exp(clip(log_temperature, log(min), log(max)))`.

    The contrastive temperature is learned as a log (so that it stays
    positive and its updates are relative). As in CLIP, it is clamped; outside
    the range the gradient is zero.

    Args:
        log_temperature: scalar tensor or float, the learnable log temperature.
        min_temperature: float > 0. Smallest temperature (CLIP: 0.01, i.e. a
            logit scale of at most 100).
        max_temperature: float >= `min_temperature`. Largest temperature.

    Returns:
        float32 scalar tensor.

    Example:
    ```python
    log_t = keras.Variable(math.log(0.07))
    t = temperature_from_log(log_t)  # 0.07
    ```
    """
    if not 0 < min_temperature <= max_temperature:
        raise ValueError(
            "Expected 0 < `min_temperature` <= `max_temperature`. Received "
            f"min_temperature={min_temperature}, "
            f"max_temperature={max_temperature}."
        )
    log_temperature = _to_float32(log_temperature)
    return ops.exp(
        ops.clip(
            log_temperature,
            math.log(min_temperature),
            math.log(max_temperature),
        )
    )


def contrastive_loss(
    image_embeddings, text_embeddings, temperature, valid=None
):
    """Symmetric image-text contrastive (InfoNCE / CLIP) loss.

    Both embeddings are L2-normalized, `logits = image @ text.T / temperature`
    and the matching pairs are on the diagonal. The loss is the mean of the
    image-to-text cross-entropy (each image row against all texts) and the
    text-to-image cross-entropy (each text column against all images).

    With `valid`, a pair `i` whose caption is missing (`valid[i] == 0`) is
    removed from the problem: its row and column are excluded both as queries
    (they add no loss term) and as negatives (they are left out of every
    softmax). Each direction is then the mean over the valid queries, and the
    loss is 0 when no pair is valid. With `valid` all ones, the result equals
    the unmasked loss.

    Pass GLOBAL batches: in data-parallel training, gather the embeddings
    (and `valid`) of all replicas first, so that every replica contrasts
    against the whole batch.

    Args:
        image_embeddings: `(N, D)` tensor.
        text_embeddings: `(N, D)` tensor, `text_embeddings[i]` pairs with
            `image_embeddings[i]`.
        temperature: scalar (float or tensor) > 0, e.g. the output of
            `temperature_from_log`. Gradients flow into it.
        valid: optional `(N,)` bool or 0/1 tensor, 1 where the pair is real.

    Returns:
        float32 scalar tensor.

    Example:
    ```python
    loss = contrastive_loss(image_cls, text_emb, temperature=0.07)
    ```
    """
    image = _to_float32(image_embeddings)
    text = _to_float32(text_embeddings)
    _check_embedding_pair(
        image, text, "image_embeddings", "text_embeddings", 2, (0, 1)
    )
    temperature = _to_float32(temperature)

    image = l2_normalize(image)
    text = l2_normalize(text)
    logits = ops.matmul(image, ops.transpose(text)) / temperature

    diagonal = _identity(ops.shape(logits)[0])

    if valid is None:
        row_log_probs = ops.log_softmax(logits, axis=1)
        column_log_probs = ops.log_softmax(logits, axis=0)
        image_to_text = -ops.mean(ops.sum(row_log_probs * diagonal, axis=1))
        text_to_image = -ops.mean(ops.sum(column_log_probs * diagonal, axis=0))
        return 0.5 * (image_to_text + text_to_image)

    valid = _to_float32(valid)
    _check_rank(valid, (1,), "valid")
    _check_static_dims_equal(valid, image, "valid", "image_embeddings", 0, 0)
    pair_kept = ops.expand_dims(valid, 1) * ops.expand_dims(valid, 0)
    logits = ops.where(pair_kept > 0, logits, _EXCLUDED_LOGIT)
    row_log_probs = ops.log_softmax(logits, axis=1)
    column_log_probs = ops.log_softmax(logits, axis=0)
    row_losses = -ops.sum(row_log_probs * diagonal, axis=1)
    column_losses = -ops.sum(column_log_probs * diagonal, axis=0)
    num_valid = ops.maximum(ops.sum(valid), 1.0)
    image_to_text = ops.sum(row_losses * valid) / num_valid
    text_to_image = ops.sum(column_losses * valid) / num_valid
    return 0.5 * (image_to_text + text_to_image)


def phrase_grounding_loss(
    phrase_embeddings, patch_embeddings, temperature, pool_temperature,
    valid=None,
):
    """Contrastive loss of caption phrases against their images' patches.

    Each phrase `j` of image `b` is scored against every image `c` of the
    batch by the cosines of its embedding with `c`'s patches, pooled by
    their own softmax (`pool_temperature`; small: close to the best
    patch): `s(b, j, c) = sum_n softmax_n(cos_n / pool_temperature) *
    cos_n`, as PACL pools patches for a text. The loss is the
    cross-entropy of `s(b, j, :) / temperature` against image `b`, the
    mean over the valid phrases. A phrase is matched by the patches that
    show it, not by the image as a whole: "a red circle" pulls its image's
    red patches towards the phrase, and "a gray background" its background
    patches, while the other images' best patches are the negatives.

    Pass GLOBAL batches (see `contrastive_loss`).

    Args:
        phrase_embeddings: `(B, P, D)` text embeddings of each image's
            phrases.
        patch_embeddings: `(B, N, D)` patch embeddings.
        temperature: scalar > 0, the contrastive temperature.
        pool_temperature: float > 0, the temperature of the softmax that
            pools each image's patch cosines.
        valid: optional `(B, P)` 0/1 (or bool), 1 where the phrase is real
            (padding phrases add no loss term). The loss is 0 when none is.

    Returns:
        float32 scalar tensor.

    Example:
    ```python
    loss = phrase_grounding_loss(phrases, patches, 0.07, 0.05, has_phrase)
    ```
    """
    if not pool_temperature > 0:
        raise ValueError(
            f"`pool_temperature` must be > 0. Received: {pool_temperature!r}."
        )
    phrases = _to_float32(phrase_embeddings)
    patches = _to_float32(patch_embeddings)
    _check_embedding_pair(
        phrases, patches, "phrase_embeddings", "patch_embeddings", 3, (0, 2)
    )
    temperature = _to_float32(temperature)
    phrases = l2_normalize(phrases)
    patches = l2_normalize(patches)
    # cosines[b, j, c, n]: phrase j of image b against patch n of image c.
    cosines = ops.einsum("bjd,cnd->bjcn", phrases, patches)
    weights = ops.softmax(cosines / pool_temperature, axis=-1)
    logits = ops.sum(weights * cosines, axis=-1) / temperature
    log_probs = ops.log_softmax(logits, axis=-1)
    own_image = _identity(ops.shape(logits)[0])
    losses = -ops.sum(log_probs * ops.expand_dims(own_image, 1), axis=-1)
    if valid is None:
        return ops.mean(losses)
    valid = _to_float32(valid)
    _check_rank(valid, (2,), "valid")
    _check_static_dims_equal(valid, phrases, "valid", "phrase_embeddings", 0, 0)
    _check_static_dims_equal(valid, phrases, "valid", "phrase_embeddings", 1, 1)
    return ops.sum(losses * valid) / ops.maximum(ops.sum(valid), 1.0)


def teacher_probabilities(teacher_logits, center, temperature):
    """Centered, sharpened teacher targets `softmax((t - c) / temperature)`.

    The softmax is over the last (prototype) axis. The result is wrapped in
    `stop_gradient`: targets never receive gradients.

    Args:
        teacher_logits: `(..., K)` tensor of teacher head outputs.
        center: `(K,)` (or broadcastable) running center, see `center_update`.
        temperature: scalar > 0, the teacher temperature (0.04 -> 0.07
            warm-up in DINOv2, see `schedules.teacher_temperature_schedule`).

    Returns:
        float32 tensor with the shape of `teacher_logits`.

    Example:
    ```python
    probs = teacher_probabilities(teacher_cls_logits, center, 0.04)
    ```
    """
    teacher_logits = _to_float32(teacher_logits)
    center = _to_float32(center)
    temperature = _to_float32(temperature)
    probs = ops.softmax((teacher_logits - center) / temperature, axis=-1)
    return ops.stop_gradient(probs)


def sinkhorn_knopp_probabilities(
    teacher_logits,
    temperature,
    num_iterations=3,
    row_weights=None,
    global_sum=None,
):
    """Sinkhorn-Knopp teacher targets (SwAV; DINOv2's teacher "centering").

    Instead of centering and a softmax per row, the targets are the
    `exp(t / temperature)` matrix scaled alternately so that every prototype
    receives the same total mass over the batch and every row sums to one
    (`num_iterations` rounds, 3 in DINOv2). Rows therefore cannot all pick
    the same prototypes, even when the teacher's outputs are nearly equal
    (as at initialisation): the targets are sharp and diverse from the
    first step, where softmax-centering gives near-uniform targets.

    The logits must be bounded by 1 (the cosine logits of
    `training.heads.ProjectionHead`): the exponent is shifted by
    `1 / temperature`, a constant that the normalisation cancels.

    Args:
        teacher_logits: `(M, K)` teacher head outputs (the rows of the
            whole batch: images for the CLS head, patches for the patch
            head).
        temperature: scalar > 0, the teacher temperature.
        num_iterations: int >= 1, Sinkhorn-Knopp rounds.
        row_weights: optional `(M,)` 0/1 tensor; rows with weight 0 take no
            part (and get all-zero targets), e.g. the visible patches in
            iBOT, which DINOv2 leaves out of the patch targets' batch.
        global_sum: optional function summing a tensor over data-parallel
            replicas (`training.distribution.global_sum`), so that the
            prototype marginals are those of the global batch.

    Returns:
        float32 `(M, K)` targets without gradient; kept rows sum to 1.

    Example:
    ```python
    targets = sinkhorn_knopp_probabilities(teacher_cls_logits, 0.07)
    loss = distillation_loss(local_cls_logits, targets, 0.1)
    ```
    """
    if isinstance(num_iterations, bool) or int(num_iterations) != num_iterations \
            or num_iterations < 1:
        raise ValueError(
            f"`num_iterations` must be a positive int. Received: {num_iterations!r}."
        )
    if global_sum is None:
        global_sum = lambda x: x  # noqa: E731
    logits = ops.stop_gradient(_to_float32(teacher_logits))
    _check_rank(logits, (2,), "teacher_logits")
    temperature = _to_float32(temperature)
    num_prototypes = logits.shape[-1]
    if row_weights is None:
        row_weights = ops.ones(ops.shape(logits)[:1], "float32")
    row_weights = ops.stop_gradient(_to_float32(row_weights))
    _check_rank(row_weights, (1,), "row_weights")
    tiny = 1e-30
    # The targets are `diag(r) Q diag(c)` for `Q = exp((t - 1) / T)`: each
    # round rescales the columns so that every prototype gets mass 1 / K,
    # then the rows so that each gets 1 / M (DINOv2's algorithm; `r` starts
    # at `1 / sum(Q)`, DINOv2's first normalisation). A round is thus two
    # matrix-vector products that read `Q`, instead of four passes that
    # rewrite the `(M, K)` matrix: on backends that do not fuse elementwise
    # ops (torch, TensorFlow graphs) those passes were most of the targets'
    # cost at 32,768-65,536 prototypes. Rows with weight 0, and rows whose
    # every entry underflowed to 0, get `r = 0` and zero targets.
    q = ops.exp((logits - 1.0) / temperature)
    num_rows = ops.maximum(global_sum(ops.sum(row_weights)), 1.0)
    # DINOv2 first divides `Q` by its sum; here that is the rows' scale.
    # (1, M) @ (M, K): each prototype's mass over the kept rows.
    weighted_mass = global_sum(ops.matmul(row_weights[None, :], q))[0]
    total = ops.maximum(ops.sum(weighted_mass), tiny)
    row_scale = row_weights / total
    column_scale = ops.ones((num_prototypes,), "float32")
    for index in range(int(num_iterations)):
        # Each prototype's mass in the current targets.
        if index == 0:
            prototype_mass = weighted_mass / total
        else:
            prototype_mass = column_scale * global_sum(
                ops.matmul(row_scale[None, :], q)
            )[0]
        column_scale = ops.where(
            prototype_mass > 0,
            column_scale
            / (ops.maximum(prototype_mass, tiny) * num_prototypes),
            0.0,
        )
        # (M, K) @ (K, 1): each row's mass with the new column scales.
        row_mass = row_scale * ops.matmul(q, column_scale[:, None])[:, 0]
        row_scale = ops.where(
            row_mass > 0,
            row_scale / (ops.maximum(row_mass, tiny) * num_rows),
            0.0,
        )
    return ops.stop_gradient(
        q * (row_scale * num_rows)[:, None] * column_scale[None, :]
    )


def _cross_entropy(teacher_probs, student_logits, student_temperature):
    """`-sum_k p_k log softmax(s / tau)_k` over the last axis."""
    log_probs = ops.log_softmax(student_logits / student_temperature, axis=-1)
    return -ops.sum(teacher_probs * log_probs, axis=-1)


def distillation_loss(student_logits, teacher_probs, student_temperature):
    """DINO self-distillation loss between student views and teacher targets.

    `loss = mean_{v, b} [ -sum_k p_t[b, k] * log_softmax(s[v, b] / tau_s)_k ]`

    Args:
        student_logits: `(V, B, K)` head outputs of the student for V views
            (the local crops) of the B images; `(B, K)` is read as V = 1.
        teacher_probs: `(B, K)` targets from the teacher's global crop (output
            of `teacher_probabilities`), shared by all V views; or `(V, B, K)`
            for one target per view.
        student_temperature: scalar > 0 (0.1 in DINO / DINOv2).

    Returns:
        float32 scalar tensor.

    Example:
    ```python
    targets = teacher_probabilities(teacher_cls_logits, center, 0.07)
    loss = distillation_loss(local_cls_logits, targets, 0.1)
    ```
    """
    student_logits = _to_float32(student_logits)
    teacher_probs = ops.stop_gradient(_to_float32(teacher_probs))
    _check_rank(student_logits, (2, 3), "student_logits")
    _check_rank(teacher_probs, (2, 3), "teacher_probs")
    if len(student_logits.shape) == 2:
        student_logits = ops.expand_dims(student_logits, 0)
    if len(teacher_probs.shape) == 3:
        _check_static_dims_equal(
            student_logits,
            teacher_probs,
            "student_logits",
            "teacher_probs",
            0,
            0,
        )
    _check_static_dims_equal(
        student_logits, teacher_probs, "student_logits", "teacher_probs", -2, -2
    )
    _check_static_dims_equal(
        student_logits, teacher_probs, "student_logits", "teacher_probs", -1, -1
    )
    student_temperature = _to_float32(student_temperature)
    return ops.mean(
        _cross_entropy(teacher_probs, student_logits, student_temperature)
    )


def masked_patch_loss(
    student_patch_logits,
    teacher_patch_probs,
    mask,
    student_temperature,
    visible_weight=0.0,
):
    """iBOT masked-patch loss, and iBOT++ with `visible_weight > 0`.

    Per patch, `ce[b, n] = -sum_k p_t[b, n, k] log_softmax(s[b, n] / tau)_k`.
    Each patch gets the weight `w[b, n] = 1` if it is masked and
    `visible_weight` if it is visible. Per image the loss is the weighted mean

        L_b = sum_n w[b, n] ce[b, n] / sum_n w[b, n]

    (taken as 0 when `sum_n w[b, n] == 0`), and the result is `mean_b L_b`.

    * `visible_weight = 0` is iBOT (as in DINOv2): the mean cross-entropy over
      the masked patches of each image, then the mean over the B images. An
      image with no masked patch contributes 0 (and still counts in B).
    * `visible_weight = 1` is iBOT++ (TIPSv2) at full strength: every patch,
      masked or visible, counts equally, so `L_b` is the mean over all N
      patches of the image.
    * Values in between (or above 1) trade the two off; the loss remains a
      weighted mean, so its scale stays that of one cross-entropy.

    Args:
        student_patch_logits: `(B, N, K)` student head outputs on the
            student's (masked) view.
        teacher_patch_probs: `(B, N, K)` teacher targets on the unmasked view
            (output of `teacher_probabilities`).
        mask: `(B, N)` bool or 0/1, 1 where the student's patch was masked.
        student_temperature: scalar > 0 (0.1).
        visible_weight: float >= 0, weight of visible patches (0: iBOT).

    Returns:
        float32 scalar tensor.

    Example:
    ```python
    targets = teacher_probabilities(teacher_patch_logits, patch_center, 0.07)
    loss = masked_patch_loss(student_patch_logits, targets, mask, 0.1)
    loss_pp = masked_patch_loss(
        student_patch_logits, targets, mask, 0.1, visible_weight=1.0
    )
    ```
    """
    if isinstance(visible_weight, (int, float)) and visible_weight < 0:
        raise ValueError(
            f"`visible_weight` must be >= 0. Received: {visible_weight}."
        )
    student_patch_logits = _to_float32(student_patch_logits)
    teacher_patch_probs = ops.stop_gradient(_to_float32(teacher_patch_probs))
    mask = _to_float32(mask)
    _check_rank(student_patch_logits, (3,), "student_patch_logits")
    _check_rank(teacher_patch_probs, (3,), "teacher_patch_probs")
    _check_rank(mask, (2,), "mask")
    for axis in (0, 1, 2):
        _check_static_dims_equal(
            student_patch_logits,
            teacher_patch_probs,
            "student_patch_logits",
            "teacher_patch_probs",
            axis,
            axis,
        )
    for axis in (0, 1):
        _check_static_dims_equal(
            student_patch_logits,
            mask,
            "student_patch_logits",
            "mask",
            axis,
            axis,
        )
    student_temperature = _to_float32(student_temperature)
    visible_weight = _to_float32(visible_weight)

    patch_ce = _cross_entropy(
        teacher_patch_probs, student_patch_logits, student_temperature
    )
    weights = mask + visible_weight * (1.0 - mask)
    weight_sums = ops.sum(weights, axis=1)
    safe_sums = ops.where(weight_sums > 0, weight_sums, 1.0)
    per_image = ops.sum(weights * patch_ce, axis=1) / safe_sums
    return ops.mean(per_image)


def center_update(center, teacher_logits_batch_mean, momentum):
    """New center `momentum * center + (1 - momentum) * batch_mean`.

    DINO centering keeps a running mean of the teacher logits and subtracts
    it before the teacher softmax (see `teacher_probabilities`), which stops
    one prototype from dominating. This returns the new value; the caller
    assigns it to its (non-trainable, float32) center variable.

    Data parallelism: pass the mean over the GLOBAL batch, i.e. the
    per-replica means averaged across replicas (an all-reduce mean; with
    equal per-replica batch sizes this is exactly the mean over all images).
    Then every replica computes the same new center from the same inputs, so
    the replicas' centers never drift apart, and the center equals the one
    single-device training on the whole batch would give.

    Args:
        center: `(K,)` (or `(1, K)`) current center.
        teacher_logits_batch_mean: same shape, the mean of the teacher logits
            over the global batch (and views / patches) for each prototype.
        momentum: scalar in [0, 1] (0.9 in DINO).

    Returns:
        float32 tensor with the shape of `center`.

    Example:
    ```python
    batch_mean = ops.mean(teacher_cls_logits, axis=0)  # then all-reduce
    center.assign(center_update(center, batch_mean, 0.9))
    ```
    """
    if isinstance(momentum, (int, float)) and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"`momentum` must be in [0, 1]. Received: {momentum}.")
    center = _to_float32(center)
    batch_mean = ops.stop_gradient(_to_float32(teacher_logits_batch_mean))
    if not _shapes_compatible(center.shape, batch_mean.shape):
        raise ValueError(
            "`center` and `teacher_logits_batch_mean` must have the same "
            f"shape. Received {tuple(center.shape)} and "
            f"{tuple(batch_mean.shape)}."
        )
    momentum = _to_float32(momentum)
    return momentum * center + (1.0 - momentum) * batch_mean
