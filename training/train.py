r"""Pretrain a TIPS / TIPSv2 model with `model.fit`: `python -m training.train`.

Builds the config, the input pipeline, the student backbone, the
`TIPSPretrainer` (EMA teacher, heads, losses) and AdamW, restores the newest
complete checkpoint of `--output_dir` (unless `--noresume`), trains with
`fit` and saves the final student backbone (and the tokenizer) with
`save_to_preset` to `<output_dir>/preset`.

This file is the orchestration (`run_training`, the command line); the
pieces it puts together live beside it: the student sizes and
`build_backbone` in `training.models`, the AdamW of `build_optimizer` in
`training.optimizers`, the fault-watching callbacks in `training.callbacks`,
checkpoints in `training.checkpointing`, the input pipeline in
`training.pipelines` and the held-out scene evaluation in
`training.scenes.evaluation`.

Faults:
* a NaN or Inf loss stops the run with `NonFiniteLossError`, which names
  the step and the offending loss term; the last good checkpoint is kept
  (the bad step is never saved) and the exit status is 1;
* SIGTERM / SIGINT: the running step finishes, a checkpoint is written, the
  process exits with status 128 + signal number; rerun the same command to
  resume;
* a killed run (SIGKILL, power loss) resumes from the newest COMPLETE
  checkpoint; a partial or corrupt one is skipped with a warning;
* a failed checkpoint write (disk full) raises `CheckpointError` and keeps
  the previous checkpoint.

Resuming restores the step, weights, teacher, centers and optimizer state;
the input pipeline is deterministic for a seed and skips the batches the
earlier run consumed, so an interrupted and resumed run takes the same steps
on the same batches as an uninterrupted one.

Example (a CPU smoke run on the procedural scenes, see `tools/make_scenes.py`):

```shell
python -m training.train --model=tiny --recipe=tips_v2 \
    --data='/tmp/scenes/train-*.tfrecord' \
    --tokenizer=runs/main/tokenizer.model \
    --batch_size=8 --steps=50 --checkpoint_every=10 --output_dir=/tmp/run
KERAS_BACKEND=tensorflow python -m training.train --model=S \
    --data='gs://bucket/train-*.tfrecord' --tokenizer=tokenizer.model \
    --distribution=tpu --tpu=my-tpu --batch_size=4096 --steps=200000 \
    --mixed_precision --output_dir=gs://bucket/run
```

Library use: `run_training(config, output_dir=..., data=..., tokenizer=...)`
(or with `dataset_fn` for an in-memory dataset) returns a `TrainingResult`.
"""

import dataclasses
import json
import logging
import os
import shutil
import sys

import keras
import numpy as np

from training import allocator
from training import distribution as distribution_lib
from training.callbacks import LogHistory
from training.callbacks import NonFiniteLossError
from training.callbacks import NonFiniteLossGuard
from training.checkpointing import CheckpointCallback
from training.checkpointing import CheckpointManager
from training.config import PretrainConfig
from training.metrics_log import MetricsLogger
from training.metrics_log import PeriodicEvaluation
from training.models import MODEL_SIZES
from training.models import build_backbone
from training.models import model_size_name
from training.optimizers import build_optimizer
from training.pretrainer import TIPSPretrainer

logger = logging.getLogger(__name__)

class TrainingInterrupted(RuntimeError):
    """SIGTERM / SIGINT stopped training after writing a checkpoint."""

    def __init__(self, step, signum, checkpoint):
        self.step = step
        self.signum = signum
        self.checkpoint = checkpoint
        super().__init__(
            f"Training interrupted by signal {signum} after step {step}; "
            f"checkpoint written to {checkpoint}. Run the same command again "
            "to resume."
        )


# ---------------------------------------------------------------------------
# The run's config, tokenizer, data and seeds.


def build_config(
    recipe="tips",
    model=None,
    config_file=None,
    overrides=None,
):
    """The run's `PretrainConfig`.

    Order: recipe defaults (`PretrainConfig.tiny` for `model="tiny"`), then
    the fields of the JSON `config_file`, then `overrides`.

    Args:
        recipe: `"tips"` or `"tips_v2"`, the default recipe: a `recipe`
            field of the file or of `overrides` wins (the command line puts
            an explicit `--recipe` in `overrides`).
        model: optional size (`MODEL_SIZES`), sets `model_variant`.
        config_file: optional path of a JSON object of config fields.
        overrides: optional dict of config fields.
    """
    fields = {}
    if config_file:
        try:
            with open(config_file) as file:
                fields = json.load(file)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Cannot read the config file {config_file!r}: {error}"
            ) from error
        if not isinstance(fields, dict):
            raise ValueError(
                f"The config file {config_file!r} must hold a JSON object of "
                "PretrainConfig fields."
            )
    fields.update(overrides or {})
    if model is not None:
        size = model_size_name(model)
        fields["model_variant"] = "tiny" if size == "tiny" else f"{size}/14"
    recipe = fields.pop("recipe", recipe)
    if fields.get("model_variant") == "tiny":
        return PretrainConfig.tiny(recipe, **fields)
    return PretrainConfig.for_recipe(recipe, **fields)


def with_total_steps(config, total_steps, keep=()):
    """`config` with `total_steps`; step counts that would exceed it shrink.

    `warmup_steps`, `teacher_temperature_warmup_steps` and `high_res_steps`
    are capped at `total_steps` unless named in `keep` (explicitly set).
    """
    changes = {"total_steps": int(total_steps)}
    for field in (
        "warmup_steps",
        "teacher_temperature_warmup_steps",
        "high_res_steps",
    ):
        if field not in keep:
            changes[field] = min(getattr(config, field), int(total_steps))
    return config.replace(**changes)



def load_tokenizer(path, sequence_length):
    """A `keras_tips.TIPSTokenizer` from a SentencePiece model file."""
    from keras_tips import TIPSTokenizer

    if not path or not os.path.exists(path):
        raise ValueError(
            f"Tokenizer model {path!r} not found; pass --tokenizer=<path to "
            "the SentencePiece .model file>."
        )
    return TIPSTokenizer(proto=path, sequence_length=sequence_length)


def make_dataset(
    config,
    data,
    tokenizer,
    start_step=0,
    global_crop_size=None,
    stats=None,
):
    """The pretraining `tf.data.Dataset` for `config`, from step `start_step`.

    Reads the TFRecords `data` with the input pipeline of `config.data`
    (its global crop replaced by `global_crop_size`, when given, for the
    high-resolution stage). Deterministic for `config.seed`; the first
    `start_step` batches are skipped, so a resumed run sees the batches an
    uninterrupted one would.
    """
    from training.pipelines import make_pretraining_dataset

    data_config = config.data
    if global_crop_size:
        data_config = data_config.replace(global_crop_size=global_crop_size)
    dataset = make_pretraining_dataset(data, tokenizer, data_config, stats=stats)
    if start_step:
        dataset = dataset.skip(start_step)
    return dataset


def seed_weight_initialization(seed):
    """Seeds Keras initializers, Python, NumPy and torch with `seed`.

    Like `keras.utils.set_random_seed` but without `tf.random.set_seed`,
    which destroys TensorFlow resources created before it (such as a
    `TIPSTokenizer`'s SentencePiece op, then "Resource ... does not exist"
    in the input pipeline). The input pipeline seeds its own random ops.
    """
    import random

    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    seed = int(seed)
    global_state.set_global_attribute("global_random_seed", seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def _phases(config):
    """`[(first_step, end_step, global_crop_size)]` of the run."""
    low_res_end = config.total_steps - config.high_res_steps
    phases = []
    if low_res_end > 0:
        phases.append((0, low_res_end, config.global_crop_size))
    if config.high_res_steps:
        phases.append((low_res_end, config.total_steps, config.high_res_crop_size))
    return phases


def _warn_on_config_change(manager, config):
    latest = manager.latest_complete()
    if latest is None:
        return
    stored = manager.validate(latest[1]).get("extra", {}).get("config")
    if not stored:
        return
    current = config.to_dict()
    changed = sorted(k for k in current if stored.get(k, current[k]) != current[k])
    if changed:
        logger.warning(
            "Resuming from %s with a different config: %s. The schedules "
            "follow the new values.",
            latest[1],
            ", ".join(f"{k}: {stored[k]!r} -> {current[k]!r}" for k in changed),
        )


def _save_preset_atomically(backbone, tokenizer, preset_dir, image_size=None):
    from keras_tips import TIPSImageConverter

    temp_dir = f"{preset_dir}.tmp-{os.getpid()}"
    shutil.rmtree(temp_dir, ignore_errors=True)
    backbone.save_to_preset(temp_dir)
    if tokenizer is not None and hasattr(tokenizer, "save_to_preset"):
        tokenizer.save_to_preset(temp_dir)
    if image_size:
        converter = TIPSImageConverter(image_size=(image_size, image_size))
        converter.save_to_preset(temp_dir)
    if os.path.exists(preset_dir):
        shutil.rmtree(preset_dir)
    os.replace(temp_dir, preset_dir)


@dataclasses.dataclass
class TrainingResult:
    """What `run_training` did.

    Attributes:
        step: global steps completed (restored + trained).
        start_step: the step the run resumed from (0 for a fresh run).
        pretrainer: the `TIPSPretrainer`.
        preset_dir: where the final student was saved (None if not saved).
        history: logs of every step trained in this run (list of dicts).
    """

    step: int
    start_step: int
    pretrainer: object
    preset_dir: str = None
    history: list = dataclasses.field(default_factory=list)


def _scene_evaluator(eval_data, tokenizer, config):
    """`backbone -> metrics` on held-out scenes (`training.scenes.evaluation`)."""

    batches = []

    def evaluate(backbone):
        from training.scenes import evaluation

        if not batches:  # read once, reused at every evaluation
            batches.extend(evaluation.load_eval_batches(
                tokenizer, eval_data, config.global_crop_size))
        features = evaluation.extract_features(backbone, batches)
        return evaluation.evaluate_features(backbone, tokenizer, features)

    return evaluate


def run_training(
    config,
    output_dir,
    data=None,
    tokenizer=None,
    dataset_fn=None,
    distribution="none",
    distribution_options=None,
    resume=True,
    checkpoint_every=1000,
    keep_checkpoints=3,
    init_preset=None,
    vocabulary_size=None,
    callbacks=(),
    verbose="auto",
    save_preset=True,
    tensorboard=False,
    eval_data=None,
    eval_every=0,
    retain_freed_memory=None,
):
    """Trains `config` with `fit`, checkpointing to `output_dir`.

    Args:
        config: `PretrainConfig`.
        output_dir: str. Checkpoints go to `<output_dir>/checkpoints`, the
            final preset to `<output_dir>/preset`, the config to
            `<output_dir>/config.json`.
        data: glob pattern(s) of TFRecord shards (with `tokenizer`), unless
            `dataset_fn` is given.
        tokenizer: a `TIPSTokenizer` (its vocabulary sizes the text encoder).
        dataset_fn: optional `fn(config, start_step, global_crop_size) ->
            tf.data.Dataset` replacing the TFRecord pipeline (tests, custom
            data). It must skip the first `start_step` batches itself.
        distribution: one of `training.distribution.DISTRIBUTIONS`.
        distribution_options: dict of `make_distribution` keyword arguments.
        resume: bool. Restore the newest complete checkpoint if any.
        checkpoint_every: int. Save every this many steps (0: only at the
            end and on signals).
        keep_checkpoints: int. Complete checkpoints kept.
        init_preset: optional preset to initialize the student from
            (ignored when resuming from a checkpoint).
        vocabulary_size: int, the text encoder's vocabulary; defaults to
            the tokenizer's.
        callbacks: extra Keras callbacks.
        verbose: `fit` verbosity.
        save_preset: bool. Save the final student with `save_to_preset`,
            its image converter at the global crop size of the last
            phase (`high_res_crop_size` after a high-resolution stage).
        tensorboard: bool. Also write the per-step metrics as TensorBoard
            event files under `<output_dir>/tensorboard`. (They always go
            to `<output_dir>/metrics.jsonl`, see `training.metrics_log`.)
        eval_data: optional glob of held-out scene shards (with
            segmentation masks, see `tools/make_scenes.py`), evaluated
            every `eval_every` steps with `training.scenes.evaluation` and logged
            as `eval/<metric>`.
        eval_every: int, steps between evaluations (0: never).
        retain_freed_memory: bool or None. Keep memory that large tensors
            free in the process (`training.allocator`), so that each step
            does not page-fault its way through every large buffer; None:
            on the torch and JAX backends. Process-wide and permanent.

    Returns:
        `TrainingResult`.

    Raises:
        NonFiniteLossError: a loss term became NaN / Inf.
        TrainingInterrupted: SIGTERM / SIGINT (after a checkpoint).
        CheckpointError: a checkpoint could not be written.
    """
    if dataset_fn is None and (data is None or tokenizer is None):
        raise ValueError(
            "Pass `data` (TFRecord glob) and `tokenizer`, or a `dataset_fn`."
        )
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "config.json"), "w") as file:
        file.write(config.to_json(indent=1))
    allocator.setup(retain_freed_memory)

    if config.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    setup = distribution_lib.make_distribution(
        distribution, **(distribution_options or {})
    )
    setup.check_batch_size(config.batch_size)
    seed_weight_initialization(config.seed)

    if vocabulary_size is None and tokenizer is not None:
        vocabulary_size = tokenizer.vocabulary_size()
    manager = CheckpointManager(
        os.path.join(output_dir, "checkpoints"), max_to_keep=keep_checkpoints
    )
    with setup.scope():
        if init_preset:
            from keras_tips import TIPSBackbone

            backbone = TIPSBackbone.from_preset(init_preset)
        else:
            if vocabulary_size is None:
                raise ValueError(
                    "Pass `tokenizer` or `vocabulary_size` (to size the text "
                    "encoder), or `init_preset`."
                )
            backbone = build_backbone(config, vocabulary_size)
        pretrainer = TIPSPretrainer(backbone, config)
        pretrainer.compile(optimizer=build_optimizer(config, pretrainer))
        pretrainer.optimizer.build(pretrainer.trainable_variables)
        start_step = 0
        if resume:
            start_step = manager.restore_latest(pretrainer) or 0
            if start_step:
                _warn_on_config_change(manager, config)
        elif manager.checkpoints():
            raise ValueError(
                f"{manager.directory} already holds checkpoints; resume "
                "(--resume) or choose another --output_dir."
            )

    if dataset_fn is None:

        def dataset_fn(config, start_step, global_crop_size):
            return make_dataset(
                config,
                data,
                tokenizer,
                start_step=start_step,
                global_crop_size=global_crop_size,
            )

    checkpoint_callback = CheckpointCallback(
        manager,
        checkpoint_every,
        initial_step=start_step,
        extra={"config": config.to_dict()},
    )
    history = LogHistory()
    metrics_logger = MetricsLogger(
        output_dir, config.batch_size, initial_step=start_step,
        tensorboard=tensorboard,
    )
    run_callbacks = [metrics_logger]
    if eval_data and eval_every:
        if tokenizer is None:
            raise ValueError("`eval_data` needs the `tokenizer`.")
        run_callbacks.append(
            PeriodicEvaluation(
                _scene_evaluator(eval_data, tokenizer, config),
                eval_every,
                metrics_logger,
            )
        )
    step = start_step
    for first, end, crop_size in _phases(config):
        if step >= end:
            continue
        guard = NonFiniteLossGuard(step, checkpoint_callback)
        checkpoint_callback.step = step
        dataset = dataset_fn(config, step - first, crop_size)
        pretrainer.fit(
            dataset,
            epochs=1,
            steps_per_epoch=end - step,
            # The input pipeline shuffles; Keras ignores `shuffle` for a
            # dataset and would only warn that it does.
            shuffle=False,
            callbacks=[
                guard, checkpoint_callback, history, *run_callbacks,
                *callbacks,
            ],
            verbose=verbose,
        )
        step = checkpoint_callback.step
        if guard.error is not None:
            raise guard.error
        if checkpoint_callback.interrupted_by is not None:
            raise TrainingInterrupted(
                step,
                checkpoint_callback.interrupted_by,
                checkpoint_callback.last_saved_path,
            )
    if checkpoint_callback.last_saved_step != step and step > start_step:
        checkpoint_callback.save()

    preset_dir = None
    if save_preset:
        preset_dir = os.path.join(output_dir, "preset")
        # The image size the model trained at last: after a high-resolution
        # stage that stage's crop, which is the size to encode images at.
        _save_preset_atomically(
            pretrainer.backbone, tokenizer, preset_dir,
            image_size=_phases(config)[-1][2],
        )
    return TrainingResult(
        step=step,
        start_step=start_step,
        pretrainer=pretrainer,
        preset_dir=preset_dir,
        history=history.steps,
    )


# ---------------------------------------------------------------------------
# Command line.


def _define_flags():
    from absl import flags

    flags.DEFINE_string("config", None, "JSON file of PretrainConfig fields.")
    flags.DEFINE_enum(
        "recipe",
        None,
        ["tips", "tips_v2"],
        "Training recipe (default tips; when given, it wins over a `recipe` "
        "field of --config).",
    )
    flags.DEFINE_enum("model", None, list(MODEL_SIZES), "Model size.")
    flags.DEFINE_multi_string("data", None, "TFRecord glob pattern(s).")
    flags.DEFINE_string("tokenizer", None, "SentencePiece tokenizer model file.")
    flags.DEFINE_integer("batch_size", None, "Global batch size.")
    flags.DEFINE_integer("steps", None, "Total training steps (schedules too).")
    flags.DEFINE_float("learning_rate", None, "Peak learning rate.")
    flags.DEFINE_integer("seed", None, "Random seed (weights and data).")
    flags.DEFINE_bool("mixed_precision", None, "Compute in bfloat16.")
    flags.DEFINE_multi_string(
        "override", [], "Config field override, 'field=JSON value'."
    )
    flags.DEFINE_enum(
        "distribution", "none", list(distribution_lib.DISTRIBUTIONS),
        "How to distribute training.",
    )
    flags.DEFINE_string("tpu", None, "TPU name or address (--distribution=tpu).")
    flags.DEFINE_string("tpu_zone", None, "GCE zone of the TPU.")
    flags.DEFINE_string("gcp_project", None, "GCP project of the TPU.")
    flags.DEFINE_integer(
        "model_parallel_size", None, "Devices on the model axis (model_parallel)."
    )
    flags.DEFINE_string("output_dir", None, "Checkpoints and final preset.")
    flags.DEFINE_bool("resume", True, "Resume from the newest checkpoint.")
    flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints.")
    flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
    flags.DEFINE_string("init_preset", None, "Initialize the student from a preset.")
    flags.DEFINE_integer("verbose", 1, "fit verbosity (0, 1: progress bar, 2).")
    flags.DEFINE_bool(
        "tensorboard", False,
        "Also write the per-step metrics as TensorBoard event files "
        "(<output_dir>/tensorboard); they always go to metrics.jsonl.",
    )
    flags.DEFINE_multi_string(
        "eval_data", None, "Held-out scene shards (glob) to evaluate on."
    )
    flags.DEFINE_integer(
        "eval_every", 0, "Steps between held-out evaluations (0: never)."
    )
    flags.DEFINE_bool(
        "retain_freed_memory", None,
        "Keep freed memory in the process (glibc); default: on the torch "
        "and jax backends, see training/allocator.py.",
    )
    flags.mark_flags_as_required(["data", "tokenizer", "output_dir"])
    return flags.FLAGS


def _parse_overrides(items):
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--override expects 'field=value'; received {item!r}.")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = json.loads(value)
        except ValueError:
            overrides[key.strip()] = value
    return overrides


def config_from_flags(values):
    """The run's `PretrainConfig` from the command line's values.

    The recipe's defaults, then `--config`, then `--override`s and the
    flags that name a field (`--batch_size`, `--learning_rate`, `--seed`,
    `--mixed_precision`, `--recipe`), then `--steps`: a flag given on the
    command line always wins over the file.

    Args:
        values: the parsed flags (`absl.flags.FLAGS`, or any object with
            the same attributes).
    """
    overrides = _parse_overrides(values.override)
    for field in (
        "batch_size", "learning_rate", "seed", "mixed_precision", "recipe",
    ):
        value = getattr(values, field)
        if value is not None:
            overrides[field] = value
    config = build_config(
        model=values.model, config_file=values.config, overrides=overrides
    )
    if values.steps is not None:
        config = with_total_steps(config, values.steps, overrides)
    return config


def main(argv):
    del argv
    from absl import flags

    FLAGS = flags.FLAGS
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = config_from_flags(FLAGS)
    tokenizer = load_tokenizer(FLAGS.tokenizer, config.text_max_length)
    options = {}
    if FLAGS.distribution == "tpu":
        options = {
            "tpu": FLAGS.tpu,
            "tpu_zone": FLAGS.tpu_zone,
            "gcp_project": FLAGS.gcp_project,
        }
    elif FLAGS.distribution == "model_parallel":
        options = {"model_parallel_size": FLAGS.model_parallel_size}
    try:
        result = run_training(
            config,
            output_dir=FLAGS.output_dir,
            data=FLAGS.data,
            tokenizer=tokenizer,
            distribution=FLAGS.distribution,
            distribution_options=options,
            resume=FLAGS.resume,
            checkpoint_every=FLAGS.checkpoint_every,
            keep_checkpoints=FLAGS.keep_checkpoints,
            init_preset=FLAGS.init_preset,
            verbose=FLAGS.verbose,
            tensorboard=FLAGS.tensorboard,
            eval_data=FLAGS.eval_data,
            eval_every=FLAGS.eval_every,
            retain_freed_memory=FLAGS.retain_freed_memory,
        )
    except TrainingInterrupted as interrupted:
        logger.warning("%s", interrupted)
        sys.exit(128 + interrupted.signum)
    except NonFiniteLossError as error:
        logger.error("%s", error)
        sys.exit(1)
    logger.info(
        "Finished at step %d; final student preset: %s",
        result.step,
        result.preset_dir,
    )


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
