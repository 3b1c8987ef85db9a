#!/usr/bin/env bash
# The main job, offline on a fresh machine: install, make synthetic scenes
# with noisy and synthetic captions, validate them with TensorFlow Data
# Validation, train a tokenizer, pretrain a tiny TIPS with the full recipe
# (contrastive + self-distillation + masked image modeling) plus a
# phrase-grounding term (each phrase of the short caption against the
# patches), evaluate it on held-out scenes and print the results table.
#
# Usage: bash tools/main_job.sh [output_dir]   (default: runs/main)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/main}
export TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=${KERAS_BACKEND:-jax}
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

stamp "Installing (.venv, .venv-tfdv)"
bash tools/setup_envs.sh
py=.venv/bin/python

stamp "Making synthetic scenes"
$py -m tools.make_scenes --output_dir "$out/data" --num_train 3000 \
  --num_eval 200 --num_shards 4 --seed 0 --image_size 112 \
  --object_scale 1.7 --max_objects 3

stamp "Validating the training shards with TFDV"
KERAS_BACKEND=tensorflow .venv-tfdv/bin/python -m tools.validate_data \
  --data "$out/data/train-*.tfrecord" --schema tools/data_schema.pbtxt \
  --output_dir "$out/validation"

stamp "Training the tokenizer"
$py -m tools.train_tokenizer --data "$out/data/train-*.tfrecord" \
  --vocab_size 1000 --output "$out/tokenizer.model"

stamp "Pretraining (KERAS_BACKEND=$KERAS_BACKEND)"
$py -m training.train --config configs/tiny_scenes.json \
  --data "$out/data/train-*.tfrecord" --tokenizer "$out/tokenizer.model" \
  --output_dir "$out/train" --checkpoint_every 200 --verbose 1 --tensorboard

stamp "Evaluating on held-out scenes"
$py -m tools.evaluate --preset "$out/train/preset" \
  --data "$out/data/eval-*.tfrecord" --output_dir "$out/eval" \
  --train_dir "$out/train"
stamp "Done: preset in $out/train/preset, metrics in $out/eval"
