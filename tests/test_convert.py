"""Official checkpoint conversion: presets, named downloads, bad files."""

import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import keras_tips
from keras_tips import convert
from keras_tips import presets
from keras_tips import tips_presets
from tests.conftest import PARITY
from tests.conftest import REPO_ROOT

VISION = PARITY / "vit_mlp_vision.npz"
TEXT = PARITY / "text_small_text.npz"


def _arrays(path):
    return dict(np.load(path))


def _write(tmp_path, name, arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_preset_round_trip_reproduces_official_outputs(tmp_path, tokenizer_model):
    out = convert.convert_to_preset(
        VISION, TEXT, tokenizer_model, tmp_path / "preset", num_heads=4,
        image_size=56,
    )
    assert sorted(os.listdir(tmp_path)) == ["preset"]  # no staging left
    backbone = keras_tips.TIPSBackbone.from_preset(out)
    golden = np.load(PARITY / "vit_mlp_golden.npz")
    text = np.load(PARITY / "text_small_golden.npz")
    n = text["token_ids"].shape[0]
    images = np.repeat(golden["images_0"][:1], n, axis=0)
    outputs = backbone({"images": images, "token_ids": text["token_ids"],
                        "padding_mask": text["padding_mask"]})
    cls = keras.ops.convert_to_numpy(outputs["cls_embeddings"])[0]
    np.testing.assert_allclose(cls, golden["cls_0"][0],
                               atol=1e-4 * np.abs(golden["cls_0"]).max())
    emb = keras.ops.convert_to_numpy(outputs["text_embeddings"])
    np.testing.assert_allclose(emb, text["embeddings"],
                               atol=1e-4 * np.abs(text["embeddings"]).max())
    stored = float(np.load(TEXT)["temperature"])
    assert float(backbone.temperature) == pytest.approx(stored, rel=1e-5)
    tokenizer = keras_tips.TIPSTokenizer.from_preset(out)
    assert tokenizer.vocabulary_size() > 0


def test_official_arrays_inverse_of_loading():
    encoder = convert.load_vision_encoder(VISION, num_heads=4)
    exported = convert.official_arrays(encoder)
    original = _arrays(VISION)
    assert set(exported) == set(original)
    for key, value in original.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    text = convert.load_text_encoder(TEXT, num_heads=4)
    exported = convert.official_arrays(text)
    original = _arrays(TEXT)
    assert set(exported) | {"temperature"} == set(original)


def test_missing_key_is_named(tmp_path):
    arrays = _arrays(VISION)
    del arrays["blocks.1.attn.qkv.bias"]
    path = _write(tmp_path, "v.npz", arrays)
    with pytest.raises(convert.CheckpointError, match="blocks.1.attn.qkv.bias"):
        convert.load_vision_encoder(path, num_heads=4)


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    arrays = _arrays(VISION)
    arrays["blocks.0.attn.proj.weight"] = np.zeros((64, 32), "float32")
    path = _write(tmp_path, "v.npz", arrays)
    with pytest.raises(convert.CheckpointError) as info:
        convert.load_vision_encoder(path, num_heads=4)
    message = str(info.value)
    assert "blocks.0.attn.proj.weight" in message
    assert "(64, 32)" in message and "(64, 64)" in message


def test_extra_key_is_named(tmp_path):
    arrays = _arrays(TEXT)
    arrays["transformer.resblocks.7.ln_9.weight"] = np.zeros(3, "float32")
    path = _write(tmp_path, "t.npz", arrays)
    with pytest.raises(convert.CheckpointError, match="resblocks.7.ln_9"):
        convert.load_text_encoder(path, num_heads=4)


def test_unknown_layout_and_swapped_files(tmp_path):
    path = _write(tmp_path, "odd.npz", {"weights": np.zeros(3)})
    with pytest.raises(convert.CheckpointError, match="missing key"):
        convert.load_vision_encoder(path, num_heads=4)
    with pytest.raises(convert.CheckpointError, match="text encoder, not a vision"):
        convert.load_vision_encoder(TEXT, num_heads=4)
    with pytest.raises(convert.CheckpointError, match="vision encoder, not a text"):
        convert.load_text_encoder(VISION, num_heads=4)


def test_width_without_released_variant_needs_num_heads():
    with pytest.raises(convert.CheckpointError, match="num_heads"):
        convert.load_vision_encoder(VISION)


def test_not_an_npz_and_truncated(tmp_path):
    text_file = tmp_path / "notes.npz"
    text_file.write_text("hello")
    with pytest.raises(convert.CheckpointError, match="notes.npz"):
        convert.load_vision_encoder(text_file, num_heads=4)
    data = VISION.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(convert.CheckpointError, match="truncated.npz"):
        convert.load_vision_encoder(truncated, num_heads=4)
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        convert.load_vision_encoder(tmp_path / "absent.npz", num_heads=4)


def test_failed_conversion_leaves_nothing(tmp_path, tokenizer_model):
    arrays = _arrays(TEXT)
    arrays["ln_final.weight"] = np.zeros(5, "float32")
    bad_text = _write(tmp_path, "bad_text.npz", arrays)
    out_root = tmp_path / "out"
    out_root.mkdir()
    with pytest.raises(convert.CheckpointError, match="ln_final.weight"):
        convert.convert_to_preset(VISION, bad_text, tokenizer_model,
                                  out_root / "preset", num_heads=4)
    bad_tokenizer = tmp_path / "tokenizer.model"
    bad_tokenizer.write_bytes(b"not a sentencepiece model")
    with pytest.raises(convert.CheckpointError, match="SentencePiece"):
        convert.convert_to_preset(VISION, TEXT, bad_tokenizer,
                                  out_root / "preset", num_heads=4)
    assert os.listdir(out_root) == []


def test_existing_preset_is_not_overwritten_silently(tmp_path, tokenizer_model):
    out = tmp_path / "preset"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert.convert_to_preset(VISION, TEXT, tokenizer_model, out, num_heads=4)
    assert (out / "mine.txt").read_text() == "user data"
    convert.convert_to_preset(VISION, TEXT, tokenizer_model, out, num_heads=4,
                              overwrite=True)
    assert not (out / "mine.txt").exists()
    assert (out / "config.json").exists()
    assert sorted(os.listdir(tmp_path)) == ["preset"]


def test_named_preset_downloads_converts_and_caches(tmp_path, monkeypatch,
                                                    official_mirror):
    vision, _ = official_mirror("tips_v2_b14")
    backbone = keras_tips.TIPSBackbone.from_preset("tips_v2_b14")
    images = np.random.uniform(size=(1, 28, 28, 3)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(backbone.vision_encoder(images)["cls_embeddings"]),
        keras.ops.convert_to_numpy(vision(images)["cls_embeddings"]),
    )
    assert float(backbone.temperature) == pytest.approx(0.01, rel=1e-5)
    cached = tmp_path / "cache" / "presets" / "tips_v2_b14" / "config.json"
    assert cached.exists()
    # Later calls: no network, served from the cache.
    monkeypatch.setenv("KERAS_TIPS_BASE_URL", "file:///nonexistent")
    keras_tips.TIPSBackbone.from_preset("tips_v2_b14")
    preprocessor = keras_tips.TIPSPreprocessor.from_preset("tips_v2_b14")
    batch = preprocessor({"images": np.zeros((1, 30, 40, 3), "uint8"),
                          "prompts": ["a red circle"]})
    assert tuple(batch["images"].shape) == (1, 448, 448, 3)
    assert tuple(batch["token_ids"].shape) == (1, 64)


def test_first_named_preset_load_builds_the_backbone_once(
        monkeypatch, official_mirror):
    official_mirror("tips_v2_b14")
    built = []
    init = keras_tips.TIPSBackbone.__init__

    def counting_init(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(keras_tips.TIPSBackbone, "__init__", counting_init)
    backbone = keras_tips.TIPSBackbone.from_preset("tips_v2_b14")
    # Converted, saved to the cache and returned: not built again from it.
    assert built == [backbone]
    assert float(backbone.temperature) == pytest.approx(0.01, rel=1e-5)
    keras_tips.TIPSBackbone.from_preset("tips_v2_b14", load_weights=False)
    assert len(built) == 2


def test_download_failure_is_clear_and_leaves_no_partial(tmp_path):
    with pytest.raises(OSError, match="Could not download"):
        presets.download("file:///nonexistent/x.npz", str(tmp_path / "x.npz"))
    assert os.listdir(tmp_path) == []
    with pytest.raises(OSError, match="tips_v1_g14_lowres|tips_oss_g14_lowres"):
        keras_tips.TIPSBackbone.from_preset("tips_v1_g14_lowres")


def test_every_released_checkpoint_has_a_named_preset():
    checkpoints = {spec["checkpoint"] for spec in tips_presets.PRESETS.values()}
    assert checkpoints == {
        "tips_oss_s14_highres_distilled", "tips_oss_b14_highres_distilled",
        "tips_oss_l14_highres_distilled",
        "tips_oss_so400m14_highres_largetext_distilled",
        "tips_oss_g14_lowres", "tips_oss_g14_highres",
        "tips_v2_oss_b14", "tips_v2_oss_l14", "tips_v2_oss_so14", "tips_v2_oss_g14",
    }
    assert set(keras_tips.list_presets()) >= set(tips_presets.PRESETS)


def test_convert_checkpoint_cli(tmp_path, tokenizer_model, capsys):
    from tools.convert_checkpoint import main as convert_main

    out = tmp_path / "cli_preset"
    arguments = ["--vision", str(VISION), "--text", str(TEXT),
                 "--tokenizer", str(tokenizer_model), "--output", str(out),
                 "--num_heads", "4", "--image_size", "56"]
    command = [sys.executable, "tools/convert_checkpoint.py", *arguments]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    # Run again (in this process: the script's `main`): the preset written
    # above is kept, and the error says why.
    written = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert convert_main(arguments) == 1
    assert "already exists" in capsys.readouterr().err.strip().splitlines()[-1]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == written
