"""The README's Hugging Face and fine-tuning snippets run as written."""

import re
import shutil

import numpy as np
import pytest
import torch
import transformers

from keras_tips import presets
from tests.conftest import REPO_ROOT
from training.scenes.generator import SHAPES
from training.scenes.generator import SceneConfig
from training.scenes.generator import generate_scene
from training.scenes.generator import scene_rng


def _snippet(name):
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(
        rf"<!-- readme-snippet: {name} -->\n```python\n(.*?)```", readme,
        re.DOTALL)
    assert match, f"README snippet {name!r} not found"
    return match.group(1)


# The snippets' numerics are checked per backend by
# test_transformers_checkpoint.py and test_image_classifier.py.
@pytest.mark.backend_independent
def test_hugging_face_snippet(tmp_path, monkeypatch, tokenizer_model):
    # The Hub repository, as `huggingface_hub` would download it: a small
    # random `Tipsv2Model` saved by transformers, with a tokenizer.
    torch.manual_seed(0)
    hub = tmp_path / "hub"
    transformers.Tipsv2Model(transformers.Tipsv2Config(
        vision_config=dict(hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=4, image_size=28),
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=4),
    )).save_pretrained(hub)
    shutil.copyfile(tokenizer_model, hub / "tokenizer.model")
    monkeypatch.setattr(presets, "download_hf_snapshot", lambda repo: str(hub))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(_snippet("huggingface"), namespace)
    assert isinstance(namespace["model"], transformers.Tipsv2Model)
    assert (tmp_path / "tipsv2-keras" / "tokenizer.model").exists()


@pytest.mark.backend_independent
def test_fine_tuning_snippet(tmp_path, monkeypatch):
    config = SceneConfig(image_size=112, min_objects=1, max_objects=1)
    scenes = [generate_scene(scene_rng(3, "readme", i), config)
              for i in range(8)]
    monkeypatch.chdir(tmp_path)
    namespace = {
        "images": np.stack([scene.image for scene in scenes]),
        "labels": np.array([SHAPES.index(s.objects[0].shape) for s in scenes]),
    }
    exec(_snippet("fine-tuning"), namespace)
    assert (tmp_path / "shapes.lora.h5").exists()
    assert (tmp_path / "backbone.lora.h5").exists()
    assert namespace["quantized"].text_encoder.blocks[0].qkv.quantization_mode == (
        "int8")
    history = namespace["classifier"].history.history
    assert len(history["loss"]) == 2


@pytest.mark.backend_independent
def test_export_section_names_what_a_server_needs():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "SentencepieceTokenizeOp" in readme
    assert "tensorflow_text" in readme
