"""Tests for tools/validate_data.py (TFDV), run in the .venv-tfdv venv.

tools/validate_data.py only runs in the separate TFDV environment created by
`bash tools/setup_tfdv_env.sh`; these tests call it as a subprocess with
`.venv-tfdv/bin/python` on freshly generated shards, on a copy with the
captions removed from one shard, on a copy with corrupted image bytes and
on a copy with colour masks holding a class past the last colour. The
validations run concurrently to keep the file quick.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.scenes.generator import COLORS
from training.scenes.generator import SceneConfig
from training.scenes.shards import write_scene_shards

pytestmark = [pytest.mark.tfdv, pytest.mark.backend_independent]

REPO_ROOT = Path(__file__).resolve().parents[1]
TFDV_PYTHON = REPO_ROOT / ".venv-tfdv" / "bin" / "python"
SCHEMA = REPO_ROOT / "tools" / "data_schema.pbtxt"


def _require_tfdv_env():
    if not TFDV_PYTHON.exists():
        pytest.fail(
            f"TFDV venv not found at {TFDV_PYTHON}: run "
            "`bash tools/setup_tfdv_env.sh` from the repository root first."
        )


def _rewrite_shard(path, edit):
    """Rewrites a TFRecord shard, passing each tf.train.Example to `edit`."""
    import tensorflow as tf

    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index, record in enumerate(records):
            example = tf.train.Example.FromString(record)
            edit(index, example)
            writer.write(example.SerializeToString())


def _remove_captions(index, example):
    del example.features.feature["caption_synthetic"]
    if "caption_noisy" in example.features.feature:
        del example.features.feature["caption_noisy"]


def _corrupt_image(index, example):
    values = example.features.feature["image"].bytes_list.value
    original = values[0]
    if index % 2 == 0:
        # Valid PNG signature, truncated body: only decoding can tell.
        corrupted = original[:64]
    else:
        corrupted = np.random.default_rng(index).bytes(len(original))
    values[0] = corrupted


def _color_class_out_of_range(index, example):
    """One pixel of the colour mask set to 1 + the number of colours."""
    import tensorflow as tf

    values = example.features.feature["color_segmentation"].bytes_list.value
    mask = tf.io.decode_png(values[0]).numpy()
    mask[0, 0] = 1 + len(COLORS)
    values[0] = tf.io.encode_png(mask).numpy()


def _start(data_dir, out_dir):
    return subprocess.Popen(
        [
            str(TFDV_PYTHON),
            "-m",
            "tools.validate_data",
            "--data",
            os.path.join(data_dir, "train-*.tfrecord"),
            "--schema",
            str(SCHEMA),
            "--output_dir",
            str(out_dir),
        ],
        cwd=str(REPO_ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs validate_data.py on clean, caption-less, corrupted, bad-mask and
    no data."""
    _require_tfdv_env()
    root = tmp_path_factory.mktemp("tfdv")
    clean = root / "clean"
    write_scene_shards(
        str(clean), num_scenes=120, num_shards=2, seed=0,
        config=SceneConfig(image_size=56),
    )
    variants = {"clean": clean}
    for name, edit in (("no_captions", _remove_captions),
                       ("bad_images", _corrupt_image),
                       ("bad_color_masks", _color_class_out_of_range)):
        copy = root / name
        shutil.copytree(clean, copy)
        _rewrite_shard(copy / "train-00001-of-00002.tfrecord", edit)
        variants[name] = copy
    variants["missing"] = root / "does_not_exist"
    processes = {
        name: (_start(str(path), root / f"{name}_out"), root / f"{name}_out")
        for name, path in variants.items()
    }
    results = {}
    for name, (process, out_dir) in processes.items():
        try:
            stdout, stderr = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        results[name] = (process.returncode, stdout, stderr, out_dir)
    return results


def _explain(result):
    code, stdout, stderr, _ = result
    return f"exit {code}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr[-3000:]}"


def test_clean_data_passes(runs):
    result = runs["clean"]
    code, stdout, _, out_dir = result
    assert code == 0, _explain(result)
    assert "OK: no anomalies." in stdout
    assert "120 examples in 2 files" in stdout
    # Both masks of every record: shapes and colours.
    assert "120 images and 240 masks decoded" in stdout
    for name in ("statistics.tfrecord", "statistics.pbtxt", "anomalies.pbtxt",
                 "report.txt"):
        assert (out_dir / name).is_file(), name
    anomalies = (out_dir / "anomalies.pbtxt").read_text()
    assert "anomaly_info" not in anomalies
    stats = (out_dir / "statistics.pbtxt").read_text()
    assert 'name: "image_format_histogram"' in stats
    assert 'label: "png"' in stats


def test_removed_captions_are_reported(runs):
    result = runs["no_captions"]
    code, stdout, _, out_dir = result
    assert code == 1, _explain(result)
    assert "caption_synthetic: FEATURE_TYPE_LOW_FRACTION_PRESENT" in stdout, (
        _explain(result)
    )
    assert "caption_noisy: FEATURE_TYPE_LOW_FRACTION_PRESENT" in stdout
    assert "FAILED" in stdout
    anomalies = (out_dir / "anomalies.pbtxt").read_text()
    assert 'key: "caption_synthetic"' in anomalies
    assert "image:" not in stdout


def test_corrupted_images_are_reported(runs):
    result = runs["bad_images"]
    code, stdout, _, out_dir = result
    assert code == 1, _explain(result)
    # TFDV's image domain: random bytes are no known image format.
    assert "image: LOW_SUPPORTED_IMAGE_FRACTION" in stdout, _explain(result)
    # Custom decode check: truncated PNGs keep a valid signature.
    assert "image: CUSTOM_VALIDATION: Undecodable image" in stdout
    anomalies = (out_dir / "anomalies.pbtxt").read_text()
    assert 'key: "image"' in anomalies
    assert "caption_synthetic:" not in stdout


def test_color_mask_class_out_of_range_is_reported(runs):
    result = runs["bad_color_masks"]
    code, stdout, _, out_dir = result
    assert code == 1, _explain(result)
    assert (
        "color_segmentation: CUSTOM_VALIDATION: Color segmentation class out "
        f"of range: train-00001-of-00002.tfrecord record 0: color_segmentation "
        f"mask value {len(COLORS) + 1} >= {len(COLORS) + 1} classes."
    ) in stdout, _explain(result)
    # The shape masks of the same records are fine.
    assert "\n  segmentation:" not in stdout
    anomalies = (out_dir / "anomalies.pbtxt").read_text()
    assert 'key: "color_segmentation"' in anomalies


def test_missing_files_exit_with_usage_error(runs):
    result = runs["missing"]
    code, _, stderr, out_dir = result
    assert code == 2, _explain(result)
    assert "no files match --data" in stderr
    assert not out_dir.exists()


def test_validate_data_does_not_import_in_main_venv():
    # The tool belongs to the TFDV venv; elsewhere it fails with a message
    # that says how to get that venv.
    code = subprocess.run(
        [sys.executable, "-m", "tools.validate_data"],
        capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT),
    )
    if code.returncode == 0:
        pytest.skip("TFDV is importable in this interpreter")
    assert "setup_tfdv_env.sh" in code.stderr


def test_missing_tfdv_venv_fails_with_setup_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(
        sys.modules[__name__], "TFDV_PYTHON", tmp_path / "no-venv" / "python"
    )
    with pytest.raises(pytest.fail.Exception, match="setup_tfdv_env.sh"):
        _require_tfdv_env()
