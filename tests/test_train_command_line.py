"""`python -m training.train`'s flags: what the command line gives wins."""

import json
import types

import pytest

from training.train import config_from_flags


def _flags(**values):
    defaults = {
        "override": [], "batch_size": None, "learning_rate": None,
        "seed": None, "mixed_precision": None, "recipe": None,
        "model": None, "config": None, "steps": None,
    }
    defaults.update(values)
    return types.SimpleNamespace(**defaults)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "recipe": "tips", "model_variant": "tiny", "batch_size": 32,
        "total_steps": 500, "warmup_steps": 40,
    }))
    return str(path)


def test_recipe_flag_wins_over_the_config_file(config_file):
    config = config_from_flags(_flags(config=config_file, recipe="tips_v2"))
    assert config.recipe == "tips_v2"
    # The recipe's own defaults come with it, the file's fields stay.
    assert config.head_only_ema and config.patch_visible_weight == 1.0
    assert config.batch_size == 32


def test_without_recipe_flag_the_file_decides(config_file, tmp_path):
    assert config_from_flags(_flags(config=config_file)).recipe == "tips"
    v2_file = tmp_path / "v2.json"
    v2_file.write_text(json.dumps({"recipe": "tips_v2", "model_variant": "tiny"}))
    assert config_from_flags(_flags(config=str(v2_file))).recipe == "tips_v2"
    assert config_from_flags(_flags(model="tiny")).recipe == "tips"


def test_flags_and_overrides_win_over_the_file(config_file):
    config = config_from_flags(_flags(
        config=config_file, batch_size=8, seed=3,
        override=["layer_scale_init=0.1", 'recipe="tips_v2"'], steps=100,
    ))
    assert (config.batch_size, config.seed) == (8, 3)
    assert config.layer_scale_init == 0.1 and config.recipe == "tips_v2"
    assert config.total_steps == 100 and config.warmup_steps <= 100


def test_bad_override_is_named():
    with pytest.raises(ValueError, match="field=value"):
        config_from_flags(_flags(model="tiny", override=["layer_scale_init"]))
