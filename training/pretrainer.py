"""`TIPSPretrainer`: TIPS / TIPSv2 pretraining as a `keras.Model` for `fit`.

The pretrainer holds a student `TIPSBackbone`, an EMA teacher, the DINO (CLS)
and iBOT (patch) projection heads of both, the DINO centers and a step
counter. All of the math of one training step lives here, written once with
`keras.ops`:

* `forward(batch, training)`: every loss term plus the statistics the update
  after the optimizer step needs (teacher-logit means, schedules);
* `prepare_gradients(gradients, step)`: prototype freezing and global-norm
  clipping;
* `post_step_updates(statistics)`: `(variable, new value)` pairs of the EMA
  teacher, the centers and the step counter.

What Keras demands per backend (JAX: a stateless step that returns the new
state; TensorFlow: `GradientTape` and `tf.distribute` replica contexts;
PyTorch: `backward()` and `no_grad` updates) is in one small module per
backend under `training/backend_steps/`; `train_step` and `test_step`
dispatch to it.

Losses (TIPS paper; TIPSv2 changes with `recipe="tips_v2"`):

* contrastive: the first CLS embedding against the noisy caption and the
  second CLS embedding against the synthetic caption, symmetric InfoNCE with
  the learned temperature, negatives over the GLOBAL batch (embeddings are
  all-gathered across `tf.distribute` replicas; under `keras.distribution`
  the batch already is global). The CLS embeddings come from an UNMASKED
  student pass over the global crop, as in both official method diagrams
  (the masked view feeds only the patch loss; at inference the CLS tokens
  never see mask tokens). `contrastive_on_masked_view=True` takes them from
  the masked pass instead (one pass fewer, a train/test mismatch);
* distillation (DINO): the student's local-crop first-CLS head outputs
  against the teacher's sharpened global-crop targets (Sinkhorn-Knopp
  balanced over the batch by default, or DINO centering);
* masked (iBOT / iBOT++): the student sees the global crop with the masked
  patches replaced by the mask token; its patch-head outputs predict the
  teacher's patch distributions on the unmasked crop (masked patches; with
  iBOT++ visible ones too, weight `patch_visible_weight`);
* contrastive_patches (not in TIPS / TIPSv2; weight `patch_text_weight`,
  0 by default, then not computed and logged as 0): the value-attention
  patch embeddings of the unmasked pass (the zero-shot segmenter's
  read-out), averaged over the image, against the synthetic caption, with
  the same temperature and global-batch negatives. It asks the patches
  themselves to carry what the caption names, in the text's space.
* contrastive_phrases (not in TIPS / TIPSv2; weight `phrase_text_weight`,
  0 by default, then not computed and logged as 0): each noun phrase of the
  first synthetic caption against the same patch read-out of every image
  of the global batch, pooled per image by a softmax over its patches
  (`losses.phrase_grounding_loss`): a phrase is matched by the patches that
  show it, so "a red circle" names the red patches and "a gray background"
  the background ones.

With `image_text_last_blocks = k > 0` (in neither recipe) the unmasked pass
lets the image-text terms' gradient into the last `k` vision blocks only:
the patch embedding and the earlier blocks learn from self-distillation
and masked image modeling alone.

Teacher: with a full EMA teacher (`"tips"`) the teacher vision encoder runs
on the unmasked global crop. With `head_only_ema` (TIPSv2) the teacher
encoder IS the student encoder, so the student's unmasked pass (the one of
the contrastive loss) feeds the teacher heads through `stop_gradient`: no
extra pass.

Diagnostics (logged every step, see `DIAGNOSTIC_KEYS`): mean per-image
entropy of the teacher targets and of the student distributions, the
entropy of the batch-mean teacher target (high: no collapse onto few
prototypes) and the number of distinct prototypes the teacher picks as
argmax in the batch, for the CLS and the patch heads. A loss stuck at ln K
with a student entropy of ln K means a uniform student.

`loss = w_noisy * contrastive_noisy + w_synthetic * contrastive_synthetic
+ w_distillation * distillation + w_masked * masked
+ w_patch_text * contrastive_patches + w_phrase_text * contrastive_phrases`
(0.5, 0.5, 1, 2, 0, 0).
"""

import keras
from keras import ops

from keras_tips.backbone import TIPSBackbone
from keras_tips.vision_encoder import TIPSVisionEncoder
from training import backend_steps
from training import distribution
from training import ema
from training import losses as losses_lib
from training import schedules
from training.config import PretrainConfig
from training.heads import ProjectionHead

# Loss terms, in the order they are logged and checked.
LOSS_TERMS = (
    "contrastive_noisy",
    "contrastive_synthetic",
    "distillation",
    "masked",
    "contrastive_patches",
    "contrastive_phrases",
)

# Keys a training batch must hold, and their ranks.
BATCH_RANKS = {
    "global_images": 4,
    "local_images": 5,
    "patch_mask": 3,
    "noisy_token_ids": 2,
    "noisy_padding_mask": 2,
    "synthetic_token_ids": 2,
    "synthetic_padding_mask": 2,
    "has_noisy_caption": 1,
    "has_synthetic_caption": 1,
}

# Keys a batch must also hold when `phrase_text_weight > 0`.
PHRASE_BATCH_RANKS = {
    "phrase_token_ids": 3,
    "phrase_padding_mask": 3,
    "has_phrase": 2,
}

# Self-distillation health, per head (`cls`: DINO, `patch`: iBOT), in nats
# (entropies) and prototypes (`*_prototypes_used`). Computed on the local
# replica's batch.
DIAGNOSTIC_KEYS = tuple(
    f"{head}_{name}"
    for head in ("cls", "patch")
    for name in (
        "teacher_entropy",
        "teacher_batch_entropy",
        "student_entropy",
        "teacher_prototypes_used",
    )
)

# Keys of the per-step logs, besides `LOSS_TERMS`.
LOG_KEYS = (
    "loss",
    *LOSS_TERMS,
    "temperature",
    "teacher_temperature",
    "ema_momentum",
    "learning_rate",
    "gradient_norm",
    *DIAGNOSTIC_KEYS,
)


def _entropy(probabilities, axis=-1):
    """Entropy in nats of distributions along `axis` (0 log 0 = 0)."""
    return -ops.sum(
        probabilities * ops.log(ops.maximum(probabilities, 1e-30)), axis=axis
    )


def _distribution_diagnostics(teacher_probs, student_logits,
                              student_temperature, row_weights=None):
    """Entropies and prototype usage of `(M, K)` targets and student logits.

    Only the rows with `row_weights` 1 (those the loss uses; default all)
    count; without `row_weights` the student may have another number of
    rows than the teacher (several views per target). Returns
    a dict with `teacher_entropy` (mean per-row entropy of the targets),
    `teacher_batch_entropy` (entropy of their mean over rows),
    `student_entropy` (mean per-row entropy of the student softmax at
    `student_temperature`) and `teacher_prototypes_used` (distinct argmax
    prototypes over the rows), all float32 scalars without gradient.
    """
    teacher_probs = ops.stop_gradient(ops.cast(teacher_probs, "float32"))
    student_weights = None
    if row_weights is None:
        row_weights = ops.ones(ops.shape(teacher_probs)[:1], "float32")
    else:
        student_weights = ops.cast(row_weights, "float32")
    weights = ops.cast(row_weights, "float32")
    count = ops.maximum(ops.sum(weights), 1.0)
    num_prototypes = teacher_probs.shape[-1]
    # -sum p log p from the log-probabilities: fewer passes over the
    # `(M, K)` rows than a softmax followed by a clipped log.
    student_log_probs = ops.log_softmax(
        ops.stop_gradient(ops.cast(student_logits, "float32"))
        / student_temperature,
        axis=-1,
    )
    student_entropy = -ops.sum(
        ops.exp(student_log_probs) * student_log_probs, axis=-1
    )
    # Rows per argmax prototype, O(rows) (a one-hot would be rows x K).
    rows_per_prototype = ops.segment_sum(
        weights,
        ops.cast(ops.argmax(teacher_probs, axis=-1), "int32"),
        num_segments=num_prototypes,
    )
    # (1, M) @ (M, K): reads the targets once, writes only the mean.
    mean_target = ops.matmul(weights[None, :], teacher_probs)[0] / count
    return {
        "teacher_entropy": ops.sum(_entropy(teacher_probs) * weights) / count,
        "teacher_batch_entropy": _entropy(mean_target),
        "student_entropy": (
            ops.mean(student_entropy)
            if student_weights is None
            else ops.sum(student_entropy * student_weights) / count
        ),
        "teacher_prototypes_used": ops.sum(
            ops.cast(rows_per_prototype > 0, "float32")
        ),
    }


def _as_config(config):
    if config is None:
        return PretrainConfig()
    if isinstance(config, PretrainConfig):
        return config
    if isinstance(config, dict):
        return PretrainConfig.from_dict(config)
    raise TypeError(
        "`config` must be a `PretrainConfig`, a dict of its fields or None. "
        f"Received: {type(config).__name__}."
    )


def _make_head(config, num_prototypes, name, trainable=True):
    head = ProjectionHead(
        num_prototypes=num_prototypes,
        hidden_dim=config.head_hidden_dim,
        bottleneck_dim=config.head_bottleneck_dim,
        num_layers=config.head_num_layers,
        name=name,
    )
    head.trainable = trainable
    return head


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSPretrainer(keras.Model):
    """TIPS / TIPSv2 pretraining model: student, EMA teacher, heads, losses.

    Train it with `compile(optimizer=...)` and `fit(dataset)`, where the
    dataset yields the batches of `training.pipelines.make_pretraining_dataset`
    (dicts with the keys of `BATCH_RANKS`). One `fit` step: the loss terms of
    `forward`, gradients of their weighted sum for the student (backbone,
    text encoder, temperature and student heads; the teacher's weights are
    not trainable and never get a gradient), `prepare_gradients`
    (prototype freezing, global-norm clipping at
    `config.gradient_clip_norm`), the optimizer step, then the EMA teacher
    update with the cosine momentum schedule, the center updates and the
    step counter. Logs per step: `LOG_KEYS`.

    With `config.head_only_ema` (TIPSv2) there is no teacher vision encoder:
    the teacher runs the student's encoder without gradient, and only the
    heads have EMA copies.

    Build the model under the distribution it trains with (a
    `tf.distribute` strategy scope or a `keras.distribution`), see
    `training.distribution`.

    Args:
        backbone: the student `keras_tips.TIPSBackbone`.
        config: `training.config.PretrainConfig` (or a dict of its fields).
            Head sizes, temperatures, schedules, loss weights, clipping.
        contrastive_on_masked_view: bool. Where the contrastive CLS
            embeddings come from. False (default, the TIPS method): an
            unmasked student pass over the global crop, which under
            `head_only_ema` also feeds the teacher heads. True: the
            student's masked pass (one pass fewer; the CLS tokens then see
            mask tokens in training but never at inference, and the
            contrastive signal is weaker).
        **kwargs: standard `keras.Model` arguments, e.g. `name`.

    Example:
    ```python
    config = PretrainConfig.tiny()
    backbone = training.models.build_backbone(config, vocabulary_size=64)
    pretrainer = TIPSPretrainer(backbone, config)
    pretrainer.compile(
        optimizer=training.optimizers.build_optimizer(config, pretrainer))
    pretrainer.fit(dataset, steps_per_epoch=config.total_steps)
    losses = pretrainer.compute_losses(batch)  # dict of every term
    pretrainer.backbone.save_to_preset("preset_dir")
    ```
    """

    def __init__(
        self,
        backbone,
        config=None,
        contrastive_on_masked_view=False,
        **kwargs,
    ):
        if not isinstance(backbone, TIPSBackbone):
            raise TypeError(
                "`backbone` must be a `keras_tips.TIPSBackbone`. Received: "
                f"{type(backbone).__name__}."
            )
        config = _as_config(config)
        if contrastive_on_masked_view and config.patch_text_weight > 0:
            raise ValueError(
                "`patch_text_weight` > 0 needs the unmasked student pass, "
                "which `contrastive_on_masked_view=True` drops. Received: "
                f"patch_text_weight={config.patch_text_weight}."
            )
        if contrastive_on_masked_view and config.phrase_text_weight > 0:
            raise ValueError(
                "`phrase_text_weight` > 0 needs the unmasked student pass, "
                "which `contrastive_on_masked_view=True` drops. Received: "
                f"phrase_text_weight={config.phrase_text_weight}."
            )
        num_blocks = len(backbone.vision_encoder.blocks)
        if config.image_text_last_blocks > num_blocks:
            raise ValueError(
                "`image_text_last_blocks` must be at most the vision "
                f"encoder's {num_blocks} blocks. Received: "
                f"image_text_last_blocks={config.image_text_last_blocks}."
            )
        if contrastive_on_masked_view and config.image_text_last_blocks:
            raise ValueError(
                "`image_text_last_blocks` > 0 needs the unmasked student "
                "pass (the masked pass also feeds masked image modeling, "
                "which trains every block), and "
                "`contrastive_on_masked_view=True` drops it. Received: "
                f"image_text_last_blocks={config.image_text_last_blocks}."
            )
        super().__init__(**kwargs)
        self.config = config
        self.contrastive_on_masked_view = bool(contrastive_on_masked_view)
        hidden_dim = backbone.hidden_dim

        # === Student ===
        self.backbone = backbone
        if not config.learn_contrastive_temperature:
            backbone.temperature_layer.trainable = False
        self.student_cls_head = _make_head(
            config, config.cls_num_prototypes, "student_cls_head"
        )
        self.student_patch_head = None
        if config.separate_patch_head:
            self.student_patch_head = _make_head(
                config, config.patch_num_prototypes, "student_patch_head"
            )

        # === Teacher (weights are not trainable: EMA only) ===
        self.teacher_vision_encoder = None
        if not config.head_only_ema:
            encoder_config = backbone.vision_encoder.get_config()
            encoder_config["name"] = "teacher_vision_encoder"
            self.teacher_vision_encoder = TIPSVisionEncoder.from_config(
                encoder_config
            )
            self.teacher_vision_encoder.trainable = False
        self.teacher_cls_head = _make_head(
            config, config.cls_num_prototypes, "teacher_cls_head", False
        )
        self.teacher_patch_head = None
        if config.separate_patch_head:
            self.teacher_patch_head = _make_head(
                config, config.patch_num_prototypes, "teacher_patch_head", False
            )
        for head in self._heads():
            head.build((None, hidden_dim))

        # === Training state ===
        self.cls_center = self.add_weight(
            name="cls_center",
            shape=(config.cls_num_prototypes,),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            autocast=False,
        )
        self.patch_center = self.add_weight(
            name="patch_center",
            shape=(config.patch_num_prototypes,),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            autocast=False,
        )
        self.step_counter = self.add_weight(
            name="step",
            shape=(),
            initializer="zeros",
            dtype="int32",
            trainable=False,
            autocast=False,
        )
        self.built = True

        # The teacher starts as an exact copy of the student.
        self.copy_student_to_teacher()

    # ------------------------------------------------------------------
    # Structure.

    def _heads(self):
        heads = [self.student_cls_head, self.teacher_cls_head]
        if self.student_patch_head is not None:
            heads += [self.student_patch_head, self.teacher_patch_head]
        return heads

    @property
    def teacher_variables(self):
        """The teacher's weights, in the order of `ema_student_variables`.

        The teacher vision encoder (absent with `head_only_ema`) and the
        teacher heads. None of them is trainable.
        """
        variables = []
        if self.teacher_vision_encoder is not None:
            variables += list(self.teacher_vision_encoder.weights)
        variables += list(self.teacher_cls_head.weights)
        if self.teacher_patch_head is not None:
            variables += list(self.teacher_patch_head.weights)
        return variables

    @property
    def ema_student_variables(self):
        """The student weights the teacher is an EMA of (same order)."""
        variables = []
        if self.teacher_vision_encoder is not None:
            variables += list(self.backbone.vision_encoder.weights)
        variables += list(self.student_cls_head.weights)
        if self.student_patch_head is not None:
            variables += list(self.student_patch_head.weights)
        return variables

    @property
    def prototype_variables(self):
        """The student heads' prototype weights (frozen at the start)."""
        variables = [self.student_cls_head.prototypes]
        if self.student_patch_head is not None:
            variables.append(self.student_patch_head.prototypes)
        return variables

    def named_weights(self):
        """Every weight under a name that is the same on every backend.

        Names are `"<group>/<index>"` with groups `state` (centers, step
        counter), `student/vision_encoder`, `student/text_encoder`,
        `student/temperature`, `student/cls_head`, `student/patch_head`,
        `teacher/vision_encoder`, `teacher/cls_head`, `teacher/patch_head`;
        the index counts within the group's `weights`. (`model.weights` is
        ordered differently on different backends, and variable paths are
        not unique.) Checkpoints and cross-backend comparisons use it.

        Returns:
            dict of name -> variable, covering `self.weights` exactly.
        """
        groups = [
            ("state", [self.cls_center, self.patch_center, self.step_counter]),
            ("student/vision_encoder", self.backbone.vision_encoder.weights),
            ("student/text_encoder", self.backbone.text_encoder.weights),
            ("student/temperature", self.backbone.temperature_layer.weights),
            ("student/cls_head", self.student_cls_head.weights),
        ]
        if self.student_patch_head is not None:
            groups.append(("student/patch_head", self.student_patch_head.weights))
        if self.teacher_vision_encoder is not None:
            groups.append(
                ("teacher/vision_encoder", self.teacher_vision_encoder.weights)
            )
        groups.append(("teacher/cls_head", self.teacher_cls_head.weights))
        if self.teacher_patch_head is not None:
            groups.append(("teacher/patch_head", self.teacher_patch_head.weights))
        named = {}
        for group, variables in groups:
            for index, variable in enumerate(variables):
                named[f"{group}/{index}"] = variable
        if {id(v) for v in named.values()} != {id(v) for v in self.weights} or (
            len(named) != len(self.weights)
        ):
            raise RuntimeError(
                "TIPSPretrainer.named_weights() does not cover model.weights "
                "exactly; was a layer added to the pretrainer?"
            )
        return named

    def no_weight_decay_variables(self):
        """Trainable variables that AdamW should not decay.

        As in DINOv2: biases, normalization scales and offsets, LayerScale
        gammas (every weight of rank <= 1), and the contrastive temperature.
        """
        return [v for v in self.trainable_variables if len(v.shape) <= 1]

    def copy_student_to_teacher(self):
        """Sets every teacher weight to its student weight (fresh buffers).

        The values are copied, not shared: on JAX a buffer shared by two
        variables could not be donated to the jitted step.
        """
        for teacher, student in zip(
            self.teacher_variables, self.ema_student_variables
        ):
            teacher.assign(ops.copy(ops.convert_to_tensor(student)))

    def _student_patch_head(self):
        return self.student_patch_head or self.student_cls_head

    def _teacher_patch_head(self):
        return self.teacher_patch_head or self.teacher_cls_head

    # ------------------------------------------------------------------
    # Schedules (functions of the step counter).

    def teacher_temperature(self, step):
        """Teacher softmax temperature at `step` (linear warm-up)."""
        config = self.config
        return schedules.teacher_temperature_schedule(
            step,
            config.teacher_temperature_warmup_steps,
            config.teacher_temperature_start,
            config.teacher_temperature_end,
        )

    def ema_momentum(self, step):
        """EMA momentum of the teacher update after step `step` (cosine)."""
        config = self.config
        return schedules.ema_momentum_schedule(
            step,
            config.total_steps,
            config.ema_momentum_start,
            config.ema_momentum_end,
        )

    def contrastive_temperature(self):
        """The learned contrastive temperature, clamped as in the config."""
        return losses_lib.temperature_from_log(
            self.backbone.temperature_layer.log_temperature,
            self.config.contrastive_temperature_min,
            self.config.contrastive_temperature_max,
        )

    # ------------------------------------------------------------------
    # Inputs.

    def _check_batch(self, batch):
        if not isinstance(batch, dict):
            raise TypeError(
                "A TIPSPretrainer batch must be a dict (see "
                "`training.pipelines.make_pretraining_dataset`). Received: "
                f"{type(batch).__name__}."
            )
        ranks = dict(BATCH_RANKS)
        if self.config.phrase_text_weight > 0:
            ranks.update(PHRASE_BATCH_RANKS)
        missing = [key for key in ranks if key not in batch]
        if missing:
            hint = ""
            if any(key in PHRASE_BATCH_RANKS for key in missing):
                hint = (
                    " (`phrase_text_weight` > 0 needs the phrases: build "
                    "the dataset from `config.data`, whose `max_phrases` is "
                    "then > 0)"
                )
            raise ValueError(
                f"The pretraining batch lacks the key(s) {missing}; it has "
                f"{sorted(batch)}{hint}."
            )
        for key, rank in ranks.items():
            shape = tuple(batch[key].shape)
            if len(shape) != rank:
                raise ValueError(
                    f"Batch key '{key}' must have rank {rank}; received shape "
                    f"{shape}."
                )
        grid = tuple(batch["patch_mask"].shape[1:])
        global_shape = tuple(batch["global_images"].shape)
        patch_size = self.backbone.vision_encoder.patch_size
        expected = tuple(
            None if size is None else size // patch_size
            for size in global_shape[1:3]
        )
        if None not in grid + expected and grid != expected:
            raise ValueError(
                f"'patch_mask' grid {grid} does not match 'global_images' of "
                f"shape {global_shape} (patch size {patch_size}: expected "
                f"{expected})."
            )

    # ------------------------------------------------------------------
    # The math of one step.

    def _phrase_grounding(self, batch, patches, training):
        """`losses.phrase_grounding_loss` of the batch's phrases against
        `patches` `(B, h, w, D)`, over the global batch."""
        token_ids = batch["phrase_token_ids"]
        num_phrases, length = token_ids.shape[1], token_ids.shape[2]
        phrases = self.backbone.text_encoder(
            {
                "token_ids": ops.cast(
                    ops.reshape(token_ids, (-1, length)), "int32"
                ),
                "padding_mask": ops.cast(
                    ops.reshape(batch["phrase_padding_mask"], (-1, length)),
                    "int32",
                ),
            },
            training=training,
        )
        batch_size = ops.shape(patches)[0]
        dim = patches.shape[-1]
        # `phrase_grounding_loss` computes in float32 whatever these are.
        phrases = ops.reshape(phrases, (batch_size, num_phrases, dim))
        patches = ops.reshape(patches, (batch_size, -1, dim))
        return losses_lib.phrase_grounding_loss(
            distribution.global_batch(phrases),
            distribution.global_batch(patches),
            self.contrastive_temperature(),
            self.config.phrase_pool_temperature,
            valid=distribution.global_batch(
                ops.cast(batch["has_phrase"], "float32")
            ),
        )

    def forward(self, batch, training=False):
        """Every loss term and the statistics of one step.

        Args:
            batch: dict with the keys of `BATCH_RANKS`: `"global_images"`
                `(B, G, G, 3)`, `"local_images"` `(B, V, L, L, 3)`,
                `"patch_mask"` `(B, G/14, G/14)` (True = masked), token ids
                and padding masks `(B, T)` of the noisy and synthetic
                captions, `"has_noisy_caption"` / `"has_synthetic_caption"`
                `(B,)` (0 = no caption: the pair leaves the contrastive loss).
            training: bool. Training mode.

        Returns:
            `(losses, statistics)`: `losses` maps `"loss"` (the weighted
            total) and each of `LOSS_TERMS` to a float32 scalar;
            `statistics` holds the step, the schedules and the global means
            of the teacher logits (for the centers).
        """
        self._check_batch(batch)
        config = self.config
        vision = self.backbone.vision_encoder
        step = ops.convert_to_tensor(self.step_counter)
        teacher_temperature = self.teacher_temperature(step)

        global_images = batch["global_images"]
        patch_mask = ops.cast(batch["patch_mask"], "bool")
        hidden_dim = vision.hidden_dim

        # --- Student on the masked global crop (patch loss only). ---
        student = vision.encode(
            global_images, patch_mask=patch_mask, training=training
        )
        student_patches = ops.reshape(
            student["patch_embeddings"], (ops.shape(global_images)[0], -1, hidden_dim)
        )
        # --- Student on the unmasked global crop (contrastive loss). ---
        unmasked = None
        mean_patches = None
        contrastive_phrases = ops.zeros((), "float32")
        if self.contrastive_on_masked_view:
            contrastive_cls = student["cls_embeddings"]
        else:
            gradient_from_block = None
            if config.image_text_last_blocks:
                # The image-text terms train only the last blocks.
                gradient_from_block = (
                    len(vision.blocks) - config.image_text_last_blocks)
            unmasked = vision.encode(
                global_images, training=training,
                with_value_attention=(
                    config.patch_text_weight > 0
                    or config.phrase_text_weight > 0
                ),
                gradient_from_block=gradient_from_block,
            )
            contrastive_cls = unmasked["cls_embeddings"]
            if config.patch_text_weight > 0:
                # The zero-shot segmenter's patch read-out, averaged over
                # the image (not part of the TIPS / TIPSv2 recipes).
                mean_patches = ops.mean(
                    ops.cast(unmasked["value_attention_patches"], "float32"),
                    axis=(1, 2),
                )
            if config.phrase_text_weight > 0:
                contrastive_phrases = self._phrase_grounding(
                    batch, unmasked["value_attention_patches"], training
                )

        # --- Texts: both captions in one pass of the shared encoder. ---
        token_ids = ops.concatenate(
            [batch["noisy_token_ids"], batch["synthetic_token_ids"]], axis=0
        )
        padding_mask = ops.concatenate(
            [batch["noisy_padding_mask"], batch["synthetic_padding_mask"]],
            axis=0,
        )
        text = self.backbone.text_encoder(
            {
                "token_ids": ops.cast(token_ids, "int32"),
                "padding_mask": ops.cast(padding_mask, "int32"),
            },
            training=training,
        )
        noisy_text, synthetic_text = ops.split(text, 2, axis=0)

        # --- Contrastive terms over the global batch. ---
        parts = [
            ops.cast(contrastive_cls[:, 0], "float32"),
            ops.cast(contrastive_cls[:, 1], "float32"),
            ops.cast(noisy_text, "float32"),
            ops.cast(synthetic_text, "float32"),
        ]
        if mean_patches is not None:
            parts.append(mean_patches)
        embeddings = ops.concatenate(parts, axis=-1)
        valid = ops.stack(
            [
                ops.cast(batch["has_noisy_caption"], "float32"),
                ops.cast(batch["has_synthetic_caption"], "float32"),
            ],
            axis=-1,
        )
        embeddings = distribution.global_batch(embeddings)
        valid = distribution.global_batch(valid)
        first_cls, second_cls, noisy_text, synthetic_text, *global_patches = (
            ops.split(embeddings, len(parts), axis=-1)
        )
        temperature = self.contrastive_temperature()
        contrastive_noisy = losses_lib.contrastive_loss(
            first_cls, noisy_text, temperature, valid=valid[:, 0]
        )
        contrastive_synthetic = losses_lib.contrastive_loss(
            second_cls, synthetic_text, temperature, valid=valid[:, 1]
        )
        if global_patches:
            contrastive_patches = losses_lib.contrastive_loss(
                global_patches[0], synthetic_text, temperature, valid=valid[:, 1]
            )
        else:
            contrastive_patches = ops.zeros((), "float32")

        # --- Teacher on the unmasked global crop, without gradient. ---
        with backend_steps.no_gradient():
            if self.teacher_vision_encoder is not None:
                teacher = self.teacher_vision_encoder.encode(
                    global_images, training=False
                )
            elif unmasked is not None:
                # Head-only EMA: the teacher encoder is the student encoder,
                # whose unmasked pass was just computed.
                teacher = unmasked
            else:
                teacher = vision.encode(global_images, training=False)
            teacher_cls = ops.stop_gradient(teacher["cls_embeddings"][:, 0])
            teacher_patches = ops.stop_gradient(
                ops.reshape(
                    teacher["patch_embeddings"],
                    (ops.shape(global_images)[0], -1, hidden_dim),
                )
            )
            teacher_cls_logits = ops.stop_gradient(
                ops.cast(self.teacher_cls_head(teacher_cls), "float32")
            )
            teacher_patch_logits = ops.stop_gradient(
                ops.cast(self._teacher_patch_head()(teacher_patches), "float32")
            )
            cls_targets, patch_targets = self._teacher_targets(
                teacher_cls_logits,
                teacher_patch_logits,
                patch_mask,
                teacher_temperature,
            )
            cls_logits_mean = distribution.global_mean(
                ops.mean(teacher_cls_logits, axis=0)
            )
            patch_logits_mean = distribution.global_mean(
                ops.mean(teacher_patch_logits, axis=(0, 1))
            )

        # --- Distillation: local crops against the teacher's global CLS. ---
        local_images = batch["local_images"]
        num_local = local_images.shape[1]
        if num_local is None:
            raise ValueError(
                "The number of local crops (axis 1 of 'local_images') must be "
                f"static; received shape {tuple(local_images.shape)}."
            )
        if num_local > 0:
            local_size = tuple(local_images.shape[2:])
            local_flat = ops.reshape(local_images, (-1,) + local_size)
            local_cls = vision.encode(local_flat, training=training)[
                "cls_embeddings"
            ][:, 0]
            local_logits = self.student_cls_head(local_cls)
            local_logits = ops.reshape(
                local_logits, (-1, num_local, config.cls_num_prototypes)
            )
            distillation = losses_lib.distillation_loss(
                ops.transpose(local_logits, (1, 0, 2)),
                cls_targets,
                config.student_temperature,
            )
            student_cls_logits = ops.reshape(
                local_logits, (-1, config.cls_num_prototypes)
            )
        else:
            distillation = ops.zeros((), "float32")
            # Diagnostics only: the student head on the global CLS.
            student_cls_logits = self.student_cls_head(
                ops.stop_gradient(student["cls_embeddings"][:, 0])
            )

        # --- Masked image modeling on the student's patch tokens. ---
        student_patch_logits = self._student_patch_head()(student_patches)
        masked = losses_lib.masked_patch_loss(
            student_patch_logits,
            patch_targets,
            ops.reshape(patch_mask, (ops.shape(global_images)[0], -1)),
            config.student_temperature,
            visible_weight=config.patch_visible_weight,
        )

        diagnostics = {}
        patch_rows = ops.reshape(ops.cast(patch_mask, "float32"), (-1,))
        if config.patch_visible_weight > 0:
            patch_rows = ops.ones_like(patch_rows)
        for head, targets, logits, rows in (
            ("cls", cls_targets, student_cls_logits, None),
            ("patch", patch_targets, student_patch_logits, patch_rows),
        ):
            num_prototypes = targets.shape[-1]
            targets = ops.reshape(targets, (-1, num_prototypes))
            logits = ops.reshape(logits, (-1, num_prototypes))
            values = _distribution_diagnostics(
                targets, logits, config.student_temperature, rows
            )
            for name, value in values.items():
                diagnostics[f"{head}_{name}"] = value

        total = (
            config.contrastive_noisy_weight * contrastive_noisy
            + config.contrastive_synthetic_weight * contrastive_synthetic
            + config.distillation_weight * distillation
            + config.masked_weight * masked
            + config.patch_text_weight * contrastive_patches
            + config.phrase_text_weight * contrastive_phrases
        )
        losses = {
            "loss": total,
            "contrastive_noisy": contrastive_noisy,
            "contrastive_synthetic": contrastive_synthetic,
            "distillation": distillation,
            "masked": masked,
            "contrastive_patches": contrastive_patches,
            "contrastive_phrases": contrastive_phrases,
        }
        statistics = {
            "step": step,
            "temperature": temperature,
            "teacher_temperature": teacher_temperature,
            "ema_momentum": self.ema_momentum(step),
            "cls_logits_mean": cls_logits_mean,
            "patch_logits_mean": patch_logits_mean,
            **diagnostics,
        }
        return losses, statistics

    def _teacher_targets(self, cls_logits, patch_logits, patch_mask,
                         temperature):
        """Teacher CLS `(B, K)` and patch `(B, N, K)` targets.

        Sinkhorn-Knopp (default) or softmax centering, see
        `PretrainConfig.teacher_centering`. With Sinkhorn-Knopp the patch
        targets are balanced over the patches the loss uses: the masked
        ones (iBOT), or all of them when visible patches count too
        (iBOT++).
        """
        config = self.config
        if config.teacher_centering == "softmax":
            return (
                losses_lib.teacher_probabilities(
                    cls_logits, self.cls_center, temperature
                ),
                losses_lib.teacher_probabilities(
                    patch_logits, self.patch_center, temperature
                ),
            )
        cls_targets = losses_lib.sinkhorn_knopp_probabilities(
            cls_logits,
            temperature,
            config.sinkhorn_iterations,
            global_sum=distribution.global_sum,
        )
        batch, patches, prototypes = (
            ops.shape(patch_logits)[0],
            ops.shape(patch_logits)[1],
            patch_logits.shape[-1],
        )
        row_weights = None
        if config.patch_visible_weight == 0:
            row_weights = ops.reshape(ops.cast(patch_mask, "float32"), (-1,))
        patch_targets = losses_lib.sinkhorn_knopp_probabilities(
            ops.reshape(patch_logits, (-1, prototypes)),
            temperature,
            config.sinkhorn_iterations,
            row_weights=row_weights,
            global_sum=distribution.global_sum,
        )
        patch_targets = ops.reshape(patch_targets, (batch, patches, prototypes))
        return cls_targets, patch_targets

    def compute_losses(self, batch, training=False):
        """Every loss term of `batch`: a dict of float32 scalars.

        Keys: `"loss"` (the weighted total) and `LOSS_TERMS`. Nothing is
        updated.

        Example:
        ```python
        terms = pretrainer.compute_losses(batch)
        float(terms["masked"])
        ```
        """
        return self.forward(batch, training=training)[0]

    def prepare_gradients(self, gradients, step, global_gradients=None):
        """Prototype freezing and global-norm clipping of the gradients.

        Args:
            gradients: list matching `trainable_variables` (None entries
                become zeros).
            step: the step counter before this step's update.
            global_gradients: optional, the gradients summed over all
                replicas (`tf.distribute`), when `gradients` are one
                replica's share. The clipping factor then comes from the
                norm of the global gradient, and is applied to `gradients`
                (whose sum over replicas the optimizer then applies).

        Returns:
            `(gradients, global_norm)`: the new list and the norm of the
            (global) gradient before clipping.
        """
        variables = self.trainable_variables

        def fill_and_freeze(values):
            values = [
                ops.zeros(v.shape, v.dtype) if g is None else g
                for g, v in zip(values, variables)
            ]
            freeze_steps = self.config.freeze_prototypes_steps
            if freeze_steps <= 0:
                return values
            prototype_ids = {id(v) for v in self.prototype_variables}
            keep = ops.cast(ops.greater_equal(step, freeze_steps), "float32")
            return [
                g * ops.cast(keep, g.dtype) if id(v) in prototype_ids else g
                for g, v in zip(values, variables)
            ]

        gradients = fill_and_freeze(gradients)
        reference = gradients
        if global_gradients is not None:
            reference = fill_and_freeze(global_gradients)
        squared = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in reference]
        global_norm = ops.sqrt(ops.sum(ops.stack(squared)))
        clip_norm = self.config.gradient_clip_norm
        if clip_norm > 0:
            factor = clip_norm / ops.maximum(global_norm, clip_norm)
            gradients = [g * ops.cast(factor, g.dtype) for g in gradients]
        return gradients, global_norm

    def post_step_updates(self, statistics):
        """`(variable, new value)` pairs to assign after the optimizer step.

        The EMA teacher `m * teacher + (1 - m) * student` (reading the
        student weights AFTER the optimizer step), the centers
        `losses.center_update` with the global teacher-logit means, and the
        step counter plus one. Nothing is assigned here.
        """
        config = self.config
        momentum = statistics["ema_momentum"]
        teacher = self.teacher_variables
        student = self.ema_student_variables
        new_teacher = ema.ema_update_values(
            [ops.convert_to_tensor(v) for v in teacher],
            [ops.convert_to_tensor(v) for v in student],
            momentum,
        )
        updates = list(zip(teacher, new_teacher))
        updates.append(
            (
                self.cls_center,
                losses_lib.center_update(
                    self.cls_center,
                    statistics["cls_logits_mean"],
                    config.center_momentum,
                ),
            )
        )
        updates.append(
            (
                self.patch_center,
                losses_lib.center_update(
                    self.patch_center,
                    statistics["patch_logits_mean"],
                    config.center_momentum,
                ),
            )
        )
        updates.append(
            (self.step_counter, ops.cast(statistics["step"] + 1, "int32"))
        )
        return updates

    def step_logs(self, losses, statistics, learning_rate, gradient_norm):
        """The per-step log dict (`LOG_KEYS`), detached float32 scalars."""
        values = dict(losses)
        values["temperature"] = statistics["temperature"]
        values["teacher_temperature"] = statistics["teacher_temperature"]
        values["ema_momentum"] = statistics["ema_momentum"]
        values["learning_rate"] = learning_rate
        values["gradient_norm"] = gradient_norm
        for key in DIAGNOSTIC_KEYS:
            values[key] = statistics[key]
        return {
            key: ops.stop_gradient(ops.cast(values[key], "float32"))
            for key in LOG_KEYS
        }

    def current_learning_rate(self):
        """The optimizer's learning rate for its next step (a scalar)."""
        if self.optimizer is None:
            return ops.zeros((), "float32")
        return ops.cast(self.optimizer.learning_rate, "float32")

    # ------------------------------------------------------------------
    # Keras hooks.

    def call(self, inputs, training=False):
        """Alias of `compute_losses`: `pretrainer(batch)` gives the terms."""
        return self.compute_losses(inputs, training=training)

    def train_step(self, *args):
        return backend_steps.train_step(self, *args)

    def test_step(self, *args):
        return backend_steps.test_step(self, *args)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Called by Keras' TensorFlow trainer only; see
        # `tensorflow_step.build_for_fit`.
        del iterator, data_batch
        backend_steps.backend_module().build_for_fit(self)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "config": self.config.to_dict(),
                "contrastive_on_masked_view": self.contrastive_on_masked_view,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.layers.deserialize(
                config["backbone"], custom_objects=custom_objects
            )
        return cls(**config)

