"""`tools/run_ablation.py`: the rows' loss weights and what a run writes."""

import json
from pathlib import Path

import pytest

from tools import run_ablation
from training.config import PretrainConfig
from training.scenes.generator import SceneConfig
from training.scenes.shards import write_scene_shards

pytestmark = pytest.mark.backend_independent

REPO_ROOT = Path(__file__).resolve().parents[1]
LOSS_FIELDS = ("contrastive_noisy_weight", "contrastive_synthetic_weight",
               "distillation_weight", "masked_weight", "patch_visible_weight",
               "patch_text_weight", "phrase_text_weight")


def _main_job_config():
    fields = json.loads((REPO_ROOT / "configs" / "tiny_scenes.json").read_text())
    return PretrainConfig.from_dict(fields)


def _weights(config):
    return tuple(getattr(config, field) for field in LOSS_FIELDS)


def test_recipe_weights_are_the_papers():
    base = _main_job_config().replace(patch_visible_weight=1.0,
                                      patch_text_weight=0.5,
                                      phrase_text_weight=0.5,
                                      image_text_last_blocks=1)
    # Every row trains the whole encoder with the image-text terms.
    for key in "abcde":
        assert run_ablation.ablation_config(base, key).image_text_last_blocks == 0
    assert _weights(run_ablation.ablation_config(base, "a")) == (
        1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert _weights(run_ablation.ablation_config(base, "b")) == (
        0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert _weights(run_ablation.ablation_config(base, "c")) == (
        0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert _weights(run_ablation.ablation_config(base, "d")) == (
        0.5, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0)
    # iBOT on the masked patches only, no patch-text and no phrase term,
    # whatever the base gives them.
    assert _weights(run_ablation.ablation_config(base, "e")) == (
        0.5, 0.5, 1.0, 2.0, 0.0, 0.0, 0.0)


def test_config_weights_make_row_e_the_main_job():
    base = _main_job_config()
    assert (base.distillation_weight, base.masked_weight) == (0.05, 0.1)
    config = lambda key: run_ablation.ablation_config(base, key, "config")
    assert _weights(config("c")) == (0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert _weights(config("d")) == (0.5, 0.5, 0.05, 0.0, 0.0, 0.0, 0.0)
    # Row (e) is the main job without its phrase-grounding term.
    assert base.phrase_text_weight == 0.5
    assert config("e") == base.replace(phrase_text_weight=0.0)
    # Everything but the loss weights is the base's.
    assert config("a").replace(**dict(zip(LOSS_FIELDS, _weights(base))))\
        == base


def test_bad_rows_and_weights_are_named():
    base = _main_job_config()
    with pytest.raises(ValueError, match="Unknown ablation row 'f'"):
        run_ablation.ablation_config(base, "f")
    with pytest.raises(ValueError, match="self_distillation_weights"):
        run_ablation.ablation_config(base, "e", "paper")
    with pytest.raises(ValueError, match="`masked_weight` > 0"):
        run_ablation.ablation_config(
            base.replace(masked_weight=0.0), "e", "config")
    with pytest.raises(SystemExit):
        run_ablation.main(["--data", "x", "--eval_data", "y", "--tokenizer",
                           "z", "--output_dir", "w", "--only", "cx"])


def test_a_run_of_other_weights_is_not_taken_for_this_one(tmp_path):
    base = _main_job_config()
    recipe = run_ablation.ablation_config(base, "e", "recipe")
    (tmp_path / "config.json").write_text(recipe.to_json(indent=1))
    run_ablation.check_run_dir(str(tmp_path), recipe)  # same run: resumes
    with pytest.raises(ValueError, match=r"masked_weight: 2\.0 -> 0\.1"):
        run_ablation.check_run_dir(
            str(tmp_path), run_ablation.ablation_config(base, "e", "config"))


@pytest.mark.slow
def test_a_short_ablation_trains_each_row_with_its_weights(
        tmp_path, tokenizer_model, capsys):
    scene_config = SceneConfig(image_size=56, max_objects=2, object_scale=1.7)
    write_scene_shards(str(tmp_path / "data"), num_scenes=32, num_shards=1,
                       seed=0, config=scene_config, num_workers=1)
    write_scene_shards(str(tmp_path / "data"), num_scenes=16, num_shards=1,
                       seed=1, config=scene_config, split_name="eval",
                       num_workers=1)
    fields = json.loads((REPO_ROOT / "configs" / "tiny_scenes.json").read_text())
    fields.update(
        global_crop_size=56, local_crop_size=28, text_max_length=16,
        hidden_dim=32, num_layers=1, num_heads=2, mlp_dim=64,
        text_num_layers=1, head_hidden_dim=32, head_bottleneck_dim=16,
        cls_num_prototypes=16, patch_num_prototypes=16, batch_size=8,
        warmup_steps=1,
    )
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(fields))
    out = tmp_path / "ablation"
    status = run_ablation.main([
        "--config", str(config_path),
        "--data", str(tmp_path / "data" / "train-*.tfrecord"),
        "--eval_data", str(tmp_path / "data" / "eval-*.tfrecord"),
        "--tokenizer", str(tokenizer_model), "--output_dir", str(out),
        "--steps", "2", "--only", "ce", "--seeds", "0",
        "--self_distillation_weights", "config",
    ])
    assert status == 0
    for key, expected in (("c", (0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0)),
                          ("e", (0.5, 0.5, 0.05, 0.1, 0.0, 0.0, 0.0))):
        run_dir = out / key / "seed0"
        stored = json.loads((run_dir / "config.json").read_text())
        assert tuple(stored[f] for f in LOSS_FIELDS) == expected
        assert stored["total_steps"] == 2
        metrics = json.loads((run_dir / "eval_metrics.json").read_text())
        assert 0.0 <= metrics["zero_shot_seg_miou_color"] <= 1.0
    table = (out / "ablation.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines()
            if line.startswith("| (")]
    assert rows == ["(c) dual (noisy + synthetic)",
                    "(e) (d) + masked modeling (TIPS)"]
    assert "self-distillation weights of rows (d) and (e): config" in table
    assert table in capsys.readouterr().out
