"""tools/supervised_ceiling.py: the supervised bound on what pretraining shows."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tools import supervised_ceiling
from training.scenes import evaluation
from training.scenes import generator
from training.scenes.generator import SceneConfig
from training.scenes.shards import write_scene_shards

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.backend_independent


def test_foreground_only_labels_every_object_with_the_majority_class():
    masks = np.zeros((2, 28, 28), "uint8")
    masks[0, :14, :14] = 2  # one patch of class 2
    masks[1, 14:, 14:] = 2
    train_labels = np.array([[[0, 2], [2, 5]]])  # class 2 is the majority
    # Every object is of the majority class: as good as perfect labels.
    assert supervised_ceiling.foreground_only_miou(
        train_labels, masks, (2, 2), 7
    ) == pytest.approx(evaluation.patch_grid_ceiling_miou(masks, (2, 2), 7))
    # A class-5 object is labelled 2: its class scores 0, class 2 loses
    # half its IoU, so the mean drops below the ceiling by about a third.
    masks[1] = 0
    masks[1, 14:, 14:] = 5
    ceiling = evaluation.patch_grid_ceiling_miou(masks, (2, 2), 7)
    got = supervised_ceiling.foreground_only_miou(train_labels, masks, (2, 2), 7)
    assert got < ceiling - 0.25
    assert got == pytest.approx(ceiling * 1.5 / 3, abs=0.03)


# The script as a process once; the other class set through its `main` in
# this process (a process start costs about as much as the run itself).
@pytest.mark.parametrize("classes, in_process", [("shape", False),
                                                 ("color", True)])
def test_tool_trains_and_writes_its_table(tmp_path, capsys, classes,
                                          in_process):
    config = SceneConfig(image_size=28, max_objects=2, object_scale=1.7)
    write_scene_shards(str(tmp_path), num_scenes=64, num_shards=1,
                       seed=0, config=config, num_workers=1)
    write_scene_shards(str(tmp_path), num_scenes=16, num_shards=1,
                       seed=1, config=config, split_name="eval",
                       num_workers=1)
    fields = json.loads((REPO_ROOT / "configs" / "tiny_scenes.json").read_text())
    fields.update(global_crop_size=28, local_crop_size=14, hidden_dim=32,
                  num_layers=1, num_heads=2, mlp_dim=64, text_num_layers=1)
    (tmp_path / "config.json").write_text(json.dumps(fields))
    out = tmp_path / "metrics.json"
    arguments = [
        "--config", str(tmp_path / "config.json"),
        "--train_data", str(tmp_path / "train-*.tfrecord"),
        "--eval_data", str(tmp_path / "eval-*.tfrecord"),
        "--steps", "4", "--batch_size", "16", "--output", str(out),
        "--classes", classes,
    ]
    if in_process:
        supervised_ceiling.main(arguments)
        stdout = capsys.readouterr().out
    else:
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "tools" / "supervised_ceiling.py"),
             *arguments],
            capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        stdout = result.stdout
    assert "| perfect per-patch labels (ceiling) |" in stdout
    title = {"shape": "shape classes", "color": "colour classes"}[classes]
    assert f"| held-out segmentation ({title}) | mIoU |" in stdout
    metrics = json.loads(out.read_text())
    assert metrics["classes"] == classes
    # Scored on that class set's masks (28 px scenes, 28 px crops).
    scenes = [generator.generate_scene(generator.scene_rng(1, "eval", i), config)
              for i in range(16)]
    masks = np.stack([s.mask if classes == "shape" else s.color_mask
                      for s in scenes])
    num_classes = len(generator.class_names() if classes == "shape"
                      else generator.color_class_names())
    assert metrics["all_background_miou"] == pytest.approx(
        evaluation.all_background_miou(masks, num_classes))
    assert metrics["steps"] == 4
    assert metrics["num_train_scenes"] == 64
    assert metrics["num_eval_scenes"] == 16
    for key in ("supervised_miou", "foreground_only_miou",
                "all_background_miou", "patch_grid_ceiling_miou"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["foreground_only_miou"] <= metrics["patch_grid_ceiling_miou"]
