"""The embedded `tips_tiny_scenes` preset: offline load and recorded quality."""

import json
import os

import keras
import numpy as np
import pytest

import keras_tips
from keras_tips.tips_presets import EMBEDDED_DIR
from tests.conftest import REPO_ROOT
from tools.embed_preset import heldout_metrics

PRESET_DIR = os.path.join(EMBEDDED_DIR, "tips_tiny_scenes")


def test_loads_offline_by_name():
    backbone = keras_tips.TIPSBackbone.from_preset("tips_tiny_scenes")
    preprocessor = keras_tips.TIPSPreprocessor.from_preset("tips_tiny_scenes")
    images = np.random.default_rng(0).integers(0, 255, (2, 112, 112, 3)).astype("uint8")
    inputs = preprocessor({"images": images,
                           "prompts": ["a red circle", "a blue star above a ring"]})
    outputs = backbone(inputs)
    assert tuple(outputs["patch_embeddings"].shape)[:3] == (2, 8, 8)
    for key in ("cls_embeddings", "text_embeddings"):
        assert np.isfinite(keras.ops.convert_to_numpy(outputs[key])).all()


@pytest.mark.slow
def test_reproduces_its_recorded_heldout_metrics(tmp_path):
    with open(os.path.join(PRESET_DIR, "heldout_metrics.json")) as file:
        recorded = json.load(file)
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"{recorded['linear_probe_seg_miou']:.3f}" in readme
    metrics = heldout_metrics("tips_tiny_scenes", str(tmp_path))
    assert metrics["num_scenes"] == recorded["num_scenes"] == 64
    # The probe is fitted to convergence: backends agree to 0.01.
    for key in ("zero_shot_seg_miou", "linear_probe_seg_miou",
                "zero_shot_seg_miou_color", "linear_probe_seg_miou_color",
                "retrieval_i2t@1_second_cls", "retrieval_t2i@1_second_cls"):
        assert metrics[key] == pytest.approx(recorded[key], abs=0.01), key


def test_recorded_metrics_beat_the_baselines_it_should_beat():
    """Retrieval and colour-class zero-shot segmentation: far above chance,
    the trivial answer and the same architecture untrained, and colour
    zero-shot segmentation at least issue #11's 0.30. (Shape-class
    segmentation and both probes do not beat them by a margin: the shape
    probe is at random features' level, the colour probe below them; the
    README says so.)"""
    with open(os.path.join(PRESET_DIR, "heldout_metrics.json")) as file:
        recorded = json.load(file)
    baselines = recorded["baselines"]
    chance = baselines["all_background"]["retrieval_i2t@1_best"]
    assert chance == pytest.approx(1 / 64)
    assert recorded["retrieval_i2t@1_best"] >= 25 * chance
    assert recorded["retrieval_i2t@1_best"] >= (
        baselines["random_weights"]["retrieval_i2t@1_best"] + 0.5)
    assert recorded["retrieval_t2i@1_second_cls"] >= (
        baselines["random_weights"]["retrieval_t2i@1_second_cls"] + 0.5)
    assert recorded["zero_shot_seg_miou_color"] >= 0.30
    for baseline in ("all_background", "random_weights"):
        assert recorded["zero_shot_seg_miou_color"] >= (
            baselines[baseline]["zero_shot_seg_miou_color"] + 0.5), baseline
    ceiling = baselines["patch_grid_ceiling"]
    for key in ("zero_shot_seg_miou", "linear_probe_seg_miou",
                "zero_shot_seg_miou_color", "linear_probe_seg_miou_color"):
        assert recorded[key] <= ceiling[key] + 0.02


def test_embedding_prints_and_writes_strict_json(tmp_path, monkeypatch,
                                                  capsys):
    """A class absent from the held-out scenes has a NaN IoU: the embedder
    prints and records it as `null`, never as the non-JSON `NaN`."""
    import keras_tips.tips_presets
    from tools import embed_preset

    source = tmp_path / "trained"
    source.mkdir()
    (source / "config.json").write_text("{}")
    embedded = tmp_path / "embedded"
    monkeypatch.setattr(keras_tips.tips_presets, "EMBEDDED_DIR", str(embedded))
    monkeypatch.setattr(
        embed_preset, "heldout_metrics",
        lambda preset, work_dir, baselines=False: {
            "zero_shot_iou_red_color": float("nan"), "num_scenes": 64})
    assert embed_preset.main(["--preset", str(source)]) == 0

    def reject(constant):
        raise AssertionError(f"non-JSON constant {constant}")

    printed = capsys.readouterr().out
    printed = printed[:printed.rindex("}") + 1]
    target = embedded / embed_preset.PRESET_NAME
    written = (target / "heldout_metrics.json").read_text()
    for text in (printed, written):
        metrics = json.loads(text, parse_constant=reject)
        assert metrics == {"zero_shot_iou_red_color": None, "num_scenes": 64}
    assert (target / "config.json").read_text() == "{}"
