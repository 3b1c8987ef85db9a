"""Hyperparameters of TIPS / TIPSv2 pretraining as one immutable dataclass.

`PretrainConfig` holds every number of a pretraining run. Values follow the
TIPS / TIPSv2 papers and, where they build on it, DINOv2; values that the
papers do not state (learning rate, batch size, step counts) are reasonable
defaults to override.

Recipes:

* `"tips"` (TIPS, ICLR 2025): contrastive losses on a noisy and a synthetic
  caption, DINO self-distillation and iBOT masked image modeling, with a
  full EMA teacher.
* `"tips_v2"` (TIPSv2, CVPR 2026): iBOT++ (visible patches also supervised,
  `patch_visible_weight`), head-only EMA (`head_only_ema`) and
  multi-granularity synthetic captions (`multi_granularity_captions`).

Example:
```python
config = PretrainConfig.for_recipe("tips_v2", total_steps=200_000)
smoke = PretrainConfig.tiny()
config2 = PretrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
data_config = config.data   # the input pipeline's `DataConfig` section
```

Saved configs (`configs/*.json`, a run's `config.json`) are the flat dict of
`to_dict()`; the data fields among them are validated by building the
`DataConfig` section (`training.data_config`), so each rule lives once.
"""

import dataclasses
import json
import numbers
from typing import Optional
from typing import Tuple

from training.data_config import ConfigFieldError
from training.data_config import DataConfig
from training.data_config import check_field_types
from training.data_config import coerce_field_values

RECIPES = ("tips", "tips_v2")
TEACHER_CENTERINGS = ("sinkhorn_knopp", "softmax")

# Fields that differ between recipes; everything else is shared.
_RECIPE_DEFAULTS = {
    "tips": {
        "patch_visible_weight": 0.0,
        "head_only_ema": False,
        "multi_granularity_captions": False,
    },
    "tips_v2": {
        "patch_visible_weight": 1.0,
        "head_only_ema": True,
        "multi_granularity_captions": True,
    },
}


ARCHITECTURE_FIELDS = (
    "hidden_dim", "num_layers", "num_heads", "mlp_dim", "text_num_layers"
)

# Record shuffle buffer of a training run's input pipeline (in records).
TRAINING_SHUFFLE_BUFFER = 10_000
# `DataConfig` fields named differently here (the others share the name).
_DATA_FIELD_SOURCES = {
    "sequence_length": "text_max_length",
    "synthetic_caption_sampling": "multi_granularity_captions",
}


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """All hyperparameters of a TIPS / TIPSv2 pretraining run.

    Build one with `PretrainConfig.for_recipe(name, **overrides)` (or
    `PretrainConfig.tiny()` for CPU smoke runs); derive variants with
    `.replace(**changes)`; save and load with `to_dict()` / `from_dict()`
    (or `to_json()` / `from_json()`). The instance is immutable and
    validated on creation: a bad value raises a `ValueError` naming the
    field. Unknown field names raise a `ValueError` everywhere. The input
    pipeline's settings come out whole as the `DataConfig` section
    `config.data`.

    Fields (grouped):

    Recipe and model:
        recipe: `"tips"` or `"tips_v2"`.
        model_variant: name of the image/text encoder variant, passed to the
            model builder (e.g. `"B/14"`, `"L/14"`, `"So400m/14"`, `"g/14"`).
        patch_size: ViT patch size in pixels; every crop size must be a
            multiple of it.
        text_max_length: text encoder sequence length (tokens).
        caption_safe_global_crop: no flip / colour jitter / grayscale /
            solarization on the global crop, for captions that name colours
            and positions.
        hidden_dim, num_layers, num_heads, mlp_dim, text_num_layers:
            architecture overrides; `None` takes the value of
            `model_variant` (for custom models, e.g. the scenes preset).
        layer_scale_init: initial LayerScale value of the vision blocks
            (1e-5, DINOv2's value for deep models trained for hundreds of
            thousands of steps). With 1e-5 every residual branch starts
            muted, so at step 0 the CLS token is the same for every image;
            shallow models trained briefly use a larger value (the scenes
            miniature: 1.0).

    Crops (multi-crop augmentation):
        global_crop_size: side of the global crop (224). The student and the
            teacher see it; the contrastive and masked losses use it.
        high_res_crop_size: global crop side of the final high-resolution
            stage (448).
        high_res_steps: number of final training steps run at
            `high_res_crop_size` (0: no high-resolution stage). Included in
            `total_steps`.
        local_crop_size: side of the local crops (98).
        num_local_crops: number of local crops per image (6).
        global_crop_scale: `(min, max)` area fraction of the global crop
            (DINOv2: (0.32, 1.0)).
        local_crop_scale: `(min, max)` area fraction of the local crops
            (DINOv2: (0.05, 0.32)).
        color_jitter_probability: colour jitter probability of every crop
            (DINO: 0.8), the caption-safe global crop excepted.
        color_jitter_hue: the colour jitter's largest hue shift, a fraction
            of the colour wheel in [0, 0.5] (DINO: 0.1).
        grayscale_probability: grayscale probability of every crop (DINO:
            0.2), the caption-safe global crop excepted.

    Masked image modeling:
        mask_ratio: fraction of the global crop's patches masked for the
            student (0.75).
        mask_mode: `"random"` (independent patches) or `"block"` (iBOT /
            BEiT block-wise masking).

    Projection heads (see `training.heads.ProjectionHead`):
        head_hidden_dim: MLP hidden width (2048).
        head_bottleneck_dim: MLP output width before the prototypes (256).
        head_num_layers: Dense layers in the MLP (3).
        cls_num_prototypes: prototypes of the CLS (DINO) head (65536).
        patch_num_prototypes: prototypes of the patch (iBOT) head (32768).
        separate_patch_head: use a separate head for patches (True) or share
            the CLS head (False, then `patch_num_prototypes` must equal
            `cls_num_prototypes`).
        freeze_prototypes_steps: steps during which the prototype weights
            receive no update (DINO freezes the last layer in the first
            epoch; 0: never frozen).

    Self-distillation temperatures and centering:
        student_temperature: student softmax temperature (0.1).
        teacher_temperature_start: teacher temperature at step 0 (0.04).
        teacher_temperature_end: teacher temperature after warm-up (0.07).
        teacher_temperature_warmup_steps: linear warm-up length (DINOv2: 30
            epochs).
        teacher_centering: how teacher logits become targets.
            `"sinkhorn_knopp"` (DINOv2; default): Sinkhorn-Knopp
            equipartition over the batch (`losses.sinkhorn_knopp_probabilities`),
            sharp and diverse targets from the first step. `"softmax"`
            (DINO / iBOT): subtract the running center, then a softmax.
        sinkhorn_iterations: Sinkhorn-Knopp rounds (3, as DINOv2).
        center_momentum: momentum of the teacher-logit centers (0.9; used
            by `"softmax"` centering).

    EMA teacher:
        ema_momentum_start: EMA momentum at step 0 (0.994, DINOv2's ViT-g
            value; DINOv2's default config uses 0.992).
        ema_momentum_end: EMA momentum at `total_steps` (1.0), cosine.
        head_only_ema: TIPSv2 head-only EMA: only the projection heads have
            an EMA copy, the teacher backbone is the student backbone.

    Loss weights (total = sum of weight * term):
        contrastive_noisy_weight: contrastive loss of CLS token 1 with the
            noisy (web alt-text) caption (0.5).
        contrastive_synthetic_weight: contrastive loss of CLS token 2 with
            the synthetic caption (0.5).
        distillation_weight: DINO local-to-global CLS distillation (1.0).
        masked_weight: iBOT / iBOT++ masked patch loss (2.0).
        patch_visible_weight: iBOT++ weight of visible patches in the patch
            loss (`masked_patch_loss(visible_weight=...)`; 0: plain iBOT).
        patch_text_weight: contrastive loss of the image-mean
            value-attention patch embedding with the synthetic caption
            (0: off, the TIPS and TIPSv2 recipes; not in either).
        image_text_last_blocks: how many of the vision encoder's last
            blocks the image-text (contrastive) terms train. 0: all of
            it, as TIPS and TIPSv2 do; `k > 0`: their gradient stops at
            the input of the last `k` blocks, so the patch embedding and
            the blocks before learn only from self-distillation and masked
            image modeling (in neither recipe; see the README's "Where the
            objects' colours come from in the background").
        phrase_text_weight: phrase-grounding loss
            (`losses.phrase_grounding_loss`): each noun phrase of the
            first synthetic caption (`captions.split_phrases`) against the
            value-attention patch embeddings of the unmasked pass, the
            zero-shot segmenter's read-out (0: off, the TIPS and TIPSv2
            recipes; not in either).
        max_phrases: phrases per image for that term (6).
        phrase_length: token sequence length of a phrase (16).
        phrase_pool_temperature: temperature of the softmax that pools an
            image's patch cosines with a phrase (0.05).

    Contrastive temperature (learned as a log, then clamped):
        contrastive_temperature_init: initial temperature (0.07).
        contrastive_temperature_min: lower clamp (0.01, i.e. logit scale
            100 as in CLIP).
        contrastive_temperature_max: upper clamp (1.0).
        learn_contrastive_temperature: learn it (True) or keep it fixed.

    Captions:
        multi_granularity_captions: TIPSv2: each step the synthetic caption
            is sampled among the available granularities (PaliGemma short /
            Gemini detailed descriptions) instead of a fixed one.

    Optimizer (AdamW) and schedules:
        learning_rate: peak learning rate after warm-up.
        final_learning_rate: learning rate at `total_steps` (cosine).
        warmup_steps: linear learning-rate warm-up from
            `warmup_start_learning_rate`.
        warmup_start_learning_rate: learning rate at step 0.
        adam_beta1, adam_beta2, adam_epsilon: AdamW moments (0.9, 0.999,
            1e-8).
        weight_decay_start: weight decay at step 0 (0.04), cosine to
        weight_decay_end: weight decay at `total_steps` (0.2).
        gradient_clip_norm: global gradient-norm clip (3.0; 0: no clip).

    Run:
        total_steps: optimizer steps of the whole run.
        batch_size: global batch size (images, summed over replicas).
        mixed_precision: compute in bfloat16/float16 with float32 weights.
        seed: random seed.
    """

    # Recipe and model.
    recipe: str = "tips"
    model_variant: str = "B/14"
    patch_size: int = 14
    text_max_length: int = 64
    hidden_dim: Optional[int] = None
    num_layers: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_dim: Optional[int] = None
    text_num_layers: Optional[int] = None
    layer_scale_init: float = 1e-5

    # Crops.
    global_crop_size: int = 224
    high_res_crop_size: int = 448
    high_res_steps: int = 0
    local_crop_size: int = 98
    num_local_crops: int = 6
    global_crop_scale: Tuple[float, float] = (0.32, 1.0)
    local_crop_scale: Tuple[float, float] = (0.05, 0.32)
    caption_safe_global_crop: bool = False
    color_jitter_probability: float = 0.8
    color_jitter_hue: float = 0.1
    grayscale_probability: float = 0.2

    # Masked image modeling.
    mask_ratio: float = 0.75
    mask_mode: str = "random"

    # Projection heads.
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    head_num_layers: int = 3
    cls_num_prototypes: int = 65536
    patch_num_prototypes: int = 32768
    separate_patch_head: bool = True
    freeze_prototypes_steps: int = 0

    # Self-distillation temperatures and centering.
    student_temperature: float = 0.1
    teacher_temperature_start: float = 0.04
    teacher_temperature_end: float = 0.07
    teacher_temperature_warmup_steps: int = 10_000
    teacher_centering: str = "sinkhorn_knopp"
    sinkhorn_iterations: int = 3
    center_momentum: float = 0.9

    # EMA teacher.
    ema_momentum_start: float = 0.994
    ema_momentum_end: float = 1.0
    head_only_ema: bool = False

    # Loss weights.
    contrastive_noisy_weight: float = 0.5
    contrastive_synthetic_weight: float = 0.5
    distillation_weight: float = 1.0
    masked_weight: float = 2.0
    patch_visible_weight: float = 0.0
    patch_text_weight: float = 0.0
    image_text_last_blocks: int = 0
    phrase_text_weight: float = 0.0
    max_phrases: int = 6
    phrase_length: int = 16
    phrase_pool_temperature: float = 0.05

    # Contrastive temperature.
    contrastive_temperature_init: float = 0.07
    contrastive_temperature_min: float = 0.01
    contrastive_temperature_max: float = 1.0
    learn_contrastive_temperature: bool = True

    # Captions.
    multi_granularity_captions: bool = False

    # Optimizer and schedules.
    learning_rate: float = 1e-3
    final_learning_rate: float = 1e-6
    warmup_steps: int = 10_000
    warmup_start_learning_rate: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay_start: float = 0.04
    weight_decay_end: float = 0.2
    gradient_clip_norm: float = 3.0

    # Run.
    total_steps: int = 100_000
    batch_size: int = 1024
    mixed_precision: bool = False
    seed: int = 0

    # ------------------------------------------------------------------
    # Construction.

    @classmethod
    def field_names(cls):
        """Names of all fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def _check_known(cls, keys, where):
        unknown = sorted(set(keys) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"Unknown PretrainConfig field(s) in {where}: {unknown}. "
                f"Known fields: {list(cls.field_names())}."
            )

    @classmethod
    def for_recipe(cls, name, **overrides):
        """The default config of recipe `name` (`"tips"` or `"tips_v2"`).

        Args:
            name: recipe name.
            **overrides: field values replacing the recipe defaults.

        Example:
        ```python
        config = PretrainConfig.for_recipe("tips_v2", batch_size=4096)
        ```
        """
        if name not in RECIPES:
            raise ValueError(
                f"Unknown recipe {name!r}. Expected one of {list(RECIPES)}."
            )
        if "recipe" in overrides and overrides["recipe"] != name:
            raise ValueError(
                f"`recipe` override {overrides['recipe']!r} contradicts the "
                f"requested recipe {name!r}."
            )
        cls._check_known(overrides, "overrides")
        values = dict(_RECIPE_DEFAULTS[name])
        values.update(overrides)
        values["recipe"] = name
        return cls(**values)

    @classmethod
    def tiny(cls, recipe="tips", **overrides):
        """A small config for CPU smoke runs and tests.

        Tiny model (`model_variant="tiny"`), 56 px global crops (4 x 4
        patches of 14 px), 28 px local crops, 2 local crops, heads of width
        256 / 64 with 1024 prototypes, batch 8 and a few steps.

        Example:
        ```python
        config = PretrainConfig.tiny("tips_v2", total_steps=5)
        ```
        """
        values = {
            "model_variant": "tiny",
            "text_max_length": 16,
            "global_crop_size": 56,
            "high_res_crop_size": 112,
            "high_res_steps": 0,
            "local_crop_size": 28,
            "num_local_crops": 2,
            "head_hidden_dim": 256,
            "head_bottleneck_dim": 64,
            "cls_num_prototypes": 1024,
            "patch_num_prototypes": 1024,
            "teacher_temperature_warmup_steps": 5,
            "warmup_steps": 2,
            "total_steps": 20,
            "batch_size": 8,
        }
        values.update(overrides)
        return cls.for_recipe(recipe, **values)

    def replace(self, **changes):
        """A copy with `changes` applied (validated; unknown names raise).

        Example:
        ```python
        config = config.replace(mask_ratio=0.5)
        ```
        """
        self._check_known(changes, "replace()")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------
    # Serialization.

    def to_dict(self):
        """A JSON-compatible dict of all fields (tuples become lists)."""
        result = {}
        for name in self.field_names():
            value = getattr(self, name)
            result[name] = list(value) if isinstance(value, tuple) else value
        return result

    @classmethod
    def from_dict(cls, values):
        """Inverse of `to_dict`.

        Missing fields take the defaults of the dict's recipe (`"tips"` when
        `recipe` is missing too), as `for_recipe` would. Unknown keys raise a
        `ValueError` naming them.
        """
        if not isinstance(values, dict):
            raise TypeError(
                "`PretrainConfig.from_dict` expects a dict. Received: "
                f"{type(values).__name__}."
            )
        cls._check_known(values, "from_dict()")
        values = dict(values)
        recipe = values.pop("recipe", "tips")
        return cls.for_recipe(recipe, **values)

    def to_json(self, **json_kwargs):
        """`to_dict()` as a JSON string."""
        return json.dumps(self.to_dict(), **json_kwargs)

    @classmethod
    def from_json(cls, text):
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------------
    # Derived values.

    @property
    def data(self):
        """The `DataConfig` section: the input pipeline of this run.

        Its crop, mask, caption, batch and seed settings are this config's
        fields (`sequence_length` is `text_max_length`; the synthetic
        captions are sampled at random with `multi_granularity_captions`;
        phrases only with `phrase_text_weight > 0`);
        the record shuffle buffer is `TRAINING_SHUFFLE_BUFFER`, the other
        settings keep the `DataConfig` defaults. The high-resolution stage
        uses `config.data.replace(global_crop_size=high_res_crop_size)`.

        Example:
        ```python
        dataset = make_pretraining_dataset(files, tokenizer, config.data)
        ```
        """
        return DataConfig(
            batch_size=self.batch_size,
            global_crop_size=self.global_crop_size,
            local_crop_size=self.local_crop_size,
            num_local_crops=self.num_local_crops,
            global_crop_scale=self.global_crop_scale,
            local_crop_scale=self.local_crop_scale,
            patch_size=self.patch_size,
            mask_ratio=self.mask_ratio,
            mask_mode=self.mask_mode,
            sequence_length=self.text_max_length,
            max_phrases=self.max_phrases if self.phrase_text_weight > 0 else 0,
            phrase_length=self.phrase_length,
            synthetic_caption_sampling=(
                "random" if self.multi_granularity_captions else "first"
            ),
            caption_safe_global_crop=self.caption_safe_global_crop,
            color_jitter_probability=self.color_jitter_probability,
            color_jitter_hue=self.color_jitter_hue,
            grayscale_probability=self.grayscale_probability,
            shuffle_buffer=TRAINING_SHUFFLE_BUFFER,
            seed=self.seed,
        )

    @property
    def contrastive_weight_total(self):
        """Sum of the two contrastive loss weights."""
        return self.contrastive_noisy_weight + self.contrastive_synthetic_weight

    # ------------------------------------------------------------------
    # Validation.

    def __post_init__(self):
        coerce_field_values(self)
        self._validate()

    def _fail(self, name, requirement):
        raise ValueError(
            f"PretrainConfig.{name} {requirement}. Received: "
            f"{getattr(self, name)!r}."
        )

    def _validate(self):
        check_field_types(self, self._fail)
        # The data fields (crops, mask, captions, batch size, seed) are
        # checked once, by the `DataConfig` section they make up.
        try:
            self.data
            data_error = None
        except ConfigFieldError as error:
            data_error = error
        if data_error is not None:
            self._fail(
                _DATA_FIELD_SOURCES.get(data_error.field, data_error.field),
                data_error.requirement,
            )

        for name in ARCHITECTURE_FIELDS:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, numbers.Integral)
                or value < 1
            ):
                self._fail(name, "must be a positive int or None")
        if (
            self.hidden_dim is not None
            and self.num_heads is not None
            and self.hidden_dim % self.num_heads
        ):
            self._fail("hidden_dim", "must be divisible by num_heads")

        if self.recipe not in RECIPES:
            self._fail("recipe", f"must be one of {list(RECIPES)}")
        if self.teacher_centering not in TEACHER_CENTERINGS:
            self._fail(
                "teacher_centering", f"must be one of {list(TEACHER_CENTERINGS)}"
            )
        if self.sinkhorn_iterations < 1:
            self._fail("sinkhorn_iterations", "must be >= 1")

        for name in (
            "high_res_crop_size",
            "head_hidden_dim",
            "head_bottleneck_dim",
            "head_num_layers",
            "cls_num_prototypes",
            "patch_num_prototypes",
            "total_steps",
            "max_phrases",
            "phrase_length",
        ):
            if getattr(self, name) < 1:
                self._fail(name, "must be >= 1")
        for name in (
            "high_res_steps",
            "freeze_prototypes_steps",
            "image_text_last_blocks",
            "teacher_temperature_warmup_steps",
            "warmup_steps",
        ):
            if getattr(self, name) < 0:
                self._fail(name, "must be >= 0")
        if self.high_res_crop_size % self.patch_size:
            self._fail(
                "high_res_crop_size",
                f"must be a multiple of patch_size={self.patch_size}",
            )
        if self.high_res_steps > self.total_steps:
            self._fail("high_res_steps", "must be <= total_steps")
        if self.warmup_steps > self.total_steps:
            self._fail("warmup_steps", "must be <= total_steps")

        if not self.separate_patch_head and (
            self.patch_num_prototypes != self.cls_num_prototypes
        ):
            self._fail(
                "patch_num_prototypes",
                "must equal cls_num_prototypes when separate_patch_head=False",
            )

        for name in (
            "layer_scale_init",
            "student_temperature",
            "teacher_temperature_start",
            "teacher_temperature_end",
            "contrastive_temperature_min",
            "phrase_pool_temperature",
            "adam_epsilon",
        ):
            if not getattr(self, name) > 0:
                self._fail(name, "must be > 0")
        if not (
            self.contrastive_temperature_min
            <= self.contrastive_temperature_init
            <= self.contrastive_temperature_max
        ):
            self._fail(
                "contrastive_temperature_init",
                "must lie in [contrastive_temperature_min, "
                "contrastive_temperature_max]",
            )
        for name in (
            "center_momentum",
            "ema_momentum_start",
            "ema_momentum_end",
            "adam_beta1",
            "adam_beta2",
        ):
            if not 0 <= getattr(self, name) <= 1:
                self._fail(name, "must be in [0, 1]")
        for name in (
            "contrastive_noisy_weight",
            "contrastive_synthetic_weight",
            "distillation_weight",
            "masked_weight",
            "patch_visible_weight",
            "patch_text_weight",
            "phrase_text_weight",
            "learning_rate",
            "final_learning_rate",
            "warmup_start_learning_rate",
            "weight_decay_start",
            "weight_decay_end",
            "gradient_clip_norm",
        ):
            if getattr(self, name) < 0:
                self._fail(name, "must be >= 0")
