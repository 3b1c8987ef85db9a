"""`DataConfig`: the settings of the pretraining input pipeline, validated once.

The pretraining pipeline (`training.pipelines.make_pretraining_dataset`)
takes one `DataConfig` whole: batch size, multi-crop sizes and scales, the
patch mask, caption handling, augmentation probabilities, shuffling and
reading. A `DataConfig` is immutable and checked when it is created, so the
pipeline trusts its values; a bad value raises a `ConfigFieldError` (a
`ValueError`) naming the field.

A training run does not build one by hand: `PretrainConfig.data` is the
`DataConfig` section of the run's configuration (DINOv2 keeps its crop and
data settings in sections of its config the same way), and
`PretrainConfig` validates its data fields by building that section.

This module also holds the names of the choices (`MASK_MODES`,
`SYNTHETIC_CAPTION_SAMPLING`) and the field coercion and type checks that
`PretrainConfig` shares.

Example:

```python
config = DataConfig(batch_size=8, global_crop_size=56, local_crop_size=28,
                    num_local_crops=2, seed=0)
dataset = make_pretraining_dataset("train-*.tfrecord", tokenizer, config)
high_res = config.replace(global_crop_size=112)
```
"""

import dataclasses
import numbers
from typing import Optional
from typing import Tuple

# Patch-mask algorithms of `training.masking.patch_mask`.
MASK_MODES = ("random", "block")
# How the synthetic caption of a record is chosen: the first non-blank one,
# or (TIPSv2 multi-granularity captions) a uniformly random non-blank one.
SYNTHETIC_CAPTION_SAMPLING = ("first", "random")


class ConfigFieldError(ValueError):
    """A config field holds a bad value.

    Attributes:
        field: name of the field.
        requirement: what the value must be, e.g. `"must be >= 1"`.
    """

    def __init__(self, message, field, requirement):
        super().__init__(message)
        self.field = field
        self.requirement = requirement


def coerce_field_values(config):
    """Lists become tuples (JSON has none), reals in float fields floats.

    For frozen config dataclasses, in `__post_init__` before validation.
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, list):
            object.__setattr__(config, field.name, tuple(value))
        elif (
            field.type is float
            and isinstance(value, numbers.Real)
            and not isinstance(value, bool)
        ):
            object.__setattr__(config, field.name, float(value))


def check_field_types(config, fail):
    """Calls `fail(name, requirement)` for the first field of a wrong type.

    Checks the fields declared `bool`, `int`, `float` and `str` of a config
    dataclass (a bool is not an int or a number here).
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.type is bool and not isinstance(value, bool):
            fail(field.name, "must be a bool")
        if field.type is int and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral)
        ):
            fail(field.name, "must be an int")
        if field.type is float and (
            isinstance(value, bool) or not isinstance(value, numbers.Real)
        ):
            fail(field.name, "must be a number")
        if field.type is str and not isinstance(value, str):
            fail(field.name, "must be a str")


def is_unit_interval_pair(value):
    """Whether `value` is a `(min, max)` tuple with `0 < min <= max <= 1`."""
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool)
            for v in value
        )
        and 0 < value[0] <= value[1] <= 1
    )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Settings of the pretraining input pipeline.

    Build one directly (only `batch_size` is required) or take
    `PretrainConfig.data`; derive variants with `.replace(**changes)`.
    Validated on creation: a bad value raises a `ConfigFieldError` naming
    the field (`DataConfig.<field> <requirement>. Received: <value>.`).

    Fields:
        batch_size: images per batch (>= 1).
        global_crop_size: side of the global crop, a multiple of
            `patch_size` (224).
        local_crop_size: side of the local crops, a multiple of
            `patch_size` (98).
        num_local_crops: local crops per image (>= 0; 6).
        global_crop_scale: `(min, max)` area fraction of the global crop,
            `0 < min <= max <= 1` ((0.32, 1.0)).
        local_crop_scale: `(min, max)` area fraction of the local crops
            ((0.05, 0.32)).
        patch_size: ViT patch size; the patch mask grid is
            `global_crop_size // patch_size` square (14).
        mask_ratio: fraction of masked patches, in `[0, 1)` (0.75).
        mask_mode: one of `MASK_MODES` (`"random"`, `"block"`; see
            `training.masking`).
        sequence_length: token sequence length (64).
        synthetic_caption_sampling: one of `SYNTHETIC_CAPTION_SAMPLING`:
            `"first"` (the first non-blank synthetic caption) or `"random"`
            (TIPSv2: uniform among a record's non-blank synthetic captions,
            drawn anew each time).
        max_phrases: phrases per image for the phrase-grounding term
            (`PretrainConfig.phrase_text_weight`): the first non-blank
            synthetic caption split by `captions.split_phrases`, padded or
            cut to this many. 0 (the default): no phrases in the batches.
        phrase_length: token sequence length of each phrase (16).
        global_blur_probability: blur probability of the global crop (0.5).
        local_blur_probability: blur probability of local crops (0.5).
        global_solarize_probability: solarization probability of the
            global crop (0.2).
        color_jitter_probability: colour jitter probability of every view
            (0.8; DINO's brightness 0.4, contrast 0.4, saturation 0.2,
            hue `color_jitter_hue`), the caption-safe global crop excepted.
        color_jitter_hue: the colour jitter's largest hue shift, a fraction
            of the colour wheel in [0, 0.5] (DINO: 0.1, 36 degrees; 0: no
            hue shift).
        grayscale_probability: grayscale probability of every view (0.2),
            the caption-safe global crop excepted.
        caption_safe_global_crop: no flip, colour jitter, grayscale or
            solarization on the global crop, so captions naming colours and
            left/right positions stay true of it (False).
        shuffle_buffer: record shuffle buffer, in serialized records (memory:
            about `shuffle_buffer` times the mean encoded image size); 0 or
            1: no shuffling, files are then read in sorted order,
            interleaved (4096).
        seed: int or None. With an int the pipeline is reproducible (same
            seed, same files -> same batches); None: random.
        drop_remainder: drop the last incomplete batch (True).
        repeat: repeat forever, reshuffling each pass (True).
        num_parallel_reads: files read at once (interleave cycle; 8).

    Example:

    ```python
    config = DataConfig(batch_size=32, mask_mode="block", seed=0)
    ```
    """

    batch_size: int
    global_crop_size: int = 224
    local_crop_size: int = 98
    num_local_crops: int = 6
    global_crop_scale: Tuple[float, float] = (0.32, 1.0)
    local_crop_scale: Tuple[float, float] = (0.05, 0.32)
    patch_size: int = 14
    mask_ratio: float = 0.75
    mask_mode: str = "random"
    sequence_length: int = 64
    synthetic_caption_sampling: str = "first"
    max_phrases: int = 0
    phrase_length: int = 16
    global_blur_probability: float = 0.5
    local_blur_probability: float = 0.5
    global_solarize_probability: float = 0.2
    color_jitter_probability: float = 0.8
    color_jitter_hue: float = 0.1
    grayscale_probability: float = 0.2
    caption_safe_global_crop: bool = False
    shuffle_buffer: int = 4096
    seed: Optional[int] = None
    drop_remainder: bool = True
    repeat: bool = True
    num_parallel_reads: int = 8

    def replace(self, **changes):
        """A copy with `changes` applied (validated again).

        Example:
        ```python
        config = config.replace(global_crop_size=448)
        ```
        """
        return dataclasses.replace(self, **changes)

    @property
    def mask_grid_size(self):
        """Side of the square patch grid of the global crop."""
        return self.global_crop_size // self.patch_size

    def __post_init__(self):
        coerce_field_values(self)
        self._validate()

    def _fail(self, name, requirement):
        raise ConfigFieldError(
            f"DataConfig.{name} {requirement}. Received: "
            f"{getattr(self, name)!r}.",
            name,
            requirement,
        )

    def _validate(self):
        check_field_types(self, self._fail)
        if self.seed is not None and (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, numbers.Integral)
        ):
            self._fail("seed", "must be an int or None")
        for name in (
            "batch_size",
            "patch_size",
            "global_crop_size",
            "local_crop_size",
            "sequence_length",
            "phrase_length",
            "num_parallel_reads",
        ):
            if getattr(self, name) < 1:
                self._fail(name, "must be >= 1")
        for name in ("num_local_crops", "shuffle_buffer", "max_phrases"):
            if getattr(self, name) < 0:
                self._fail(name, "must be >= 0")
        for name in ("global_crop_size", "local_crop_size"):
            if getattr(self, name) % self.patch_size:
                self._fail(
                    name, f"must be a multiple of patch_size={self.patch_size}"
                )
        for name in ("global_crop_scale", "local_crop_scale"):
            if not is_unit_interval_pair(getattr(self, name)):
                self._fail(
                    name, "must be a pair (min, max) with 0 < min <= max <= 1"
                )
        if not 0 <= self.mask_ratio < 1:
            self._fail("mask_ratio", "must be in [0, 1)")
        if self.mask_mode not in MASK_MODES:
            self._fail("mask_mode", f"must be one of {list(MASK_MODES)}")
        if self.synthetic_caption_sampling not in SYNTHETIC_CAPTION_SAMPLING:
            self._fail(
                "synthetic_caption_sampling",
                f"must be one of {list(SYNTHETIC_CAPTION_SAMPLING)}",
            )
        for name in (
            "global_blur_probability",
            "local_blur_probability",
            "global_solarize_probability",
            "color_jitter_probability",
            "grayscale_probability",
        ):
            if not 0 <= getattr(self, name) <= 1:
                self._fail(name, "must be in [0, 1]")
        if not 0 <= self.color_jitter_hue <= 0.5:
            self._fail("color_jitter_hue", "must be in [0, 0.5]")
