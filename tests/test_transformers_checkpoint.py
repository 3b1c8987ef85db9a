"""Hugging Face `transformers` TIPSv2 checkpoints, checked against transformers.

Random-weight `transformers.Tipsv2Model`s of small configurations are
saved with `save_pretrained`, loaded by keras-tips and compared output by
output; keras-tips models are exported and loaded by
`Tipsv2Model.from_pretrained`. Relative error bound: 1e-5 of the largest
reference value.
"""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import torch
import transformers

import keras_tips
from keras_tips import convert
from keras_tips import presets
from keras_tips.safetensors_file import read_safetensors
from keras_tips.safetensors_file import write_safetensors

RELATIVE_TOLERANCE = 1e-5

# name: (vision config, text config); widths are shared by both towers.
CONFIGS = {
    "mlp": (
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             mlp_ratio=4, image_size=28, patch_size=14),
        dict(vocab_size=64, hidden_size=32, intermediate_size=48,
             num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=16),
    ),
    "swiglu": (
        dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
             mlp_ratio=2.5, image_size=42, patch_size=14,
             use_swiglu_ffn=True),
        dict(vocab_size=64, hidden_size=24, intermediate_size=40,
             num_hidden_layers=1, num_attention_heads=3,
             max_position_embeddings=16),
    ),
}
# On the position grid, then resampled: upsampled (MLP), antialiased
# downsampling along one side (SwiGLU).
IMAGE_SIZES = {"mlp": [(28, 28), (42, 56)],
               "swiglu": [(42, 42), (28, 56)]}
TOKEN_IDS = np.array([[5, 9, 17, 3, 60, 2], [7, 11, 0, 0, 0, 0],
                      [4, 0, 0, 0, 0, 0]], "int32")


def _relative_error(actual, expected):
    actual = keras.ops.convert_to_numpy(actual)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _transformers_model(name, seed=0):
    """A random `Tipsv2Model`; biases, LayerScales and tokens randomised."""
    vision, text = CONFIGS[name]
    torch.manual_seed(seed)
    config = transformers.Tipsv2Config(
        vision_config=vision, text_config=text, temperature_init_value=0.02)
    model = transformers.Tipsv2Model(config).eval()
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if (key.endswith("bias") or "lambda1" in key or "register" in key
                    or "cls_token" in key or "layer_norm" in key
                    or "layernorm" in key):
                parameter.normal_(0.0, 0.5)
        model.temperature.fill_(0.0123)
    return model


def _reference(model, images, token_ids):
    """Outputs of a transformers model in keras-tips' layout (NumPy)."""
    padding_mask = (token_ids != 0).astype("int32")
    with torch.no_grad():
        output = model(
            pixel_values=torch.tensor(images.transpose(0, 3, 1, 2)),
            input_ids=torch.tensor(token_ids, dtype=torch.long),
            attention_mask=torch.tensor(padding_mask),
        )
    tokens = output.vision_model_output.last_hidden_state.numpy()
    batch, height, width, _ = images.shape
    return {
        "cls_embeddings": tokens[:, :2],
        "patch_embeddings": tokens[:, 2:].reshape(
            batch, height // 14, width // 14, -1),
        "text_embeddings": output.text_model_output.pooler_output.numpy(),
        "logits_per_text": output.logits_per_text.numpy(),
    }


def _images(height, width, batch=3, seed=0):
    return np.random.default_rng(seed).uniform(
        size=(batch, height, width, 3)).astype("float32")


def _keras_outputs(backbone, images, token_ids):
    padding_mask = (token_ids != 0).astype("int32")
    # Compiled (one trace per shape): much faster than eager calls on jax.
    outputs = backbone.predict_on_batch(
        {"images": images, "token_ids": token_ids,
         "padding_mask": padding_mask})
    image = np.array(outputs["cls_embeddings"][:, 0])
    text = np.array(outputs["text_embeddings"])
    image /= np.linalg.norm(image, axis=-1, keepdims=True)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    temperature = float(keras.ops.convert_to_numpy(backbone.temperature))
    return dict(outputs, logits_per_text=text @ image.T / temperature)


def _assert_same_outputs(backbone, model, name, errors=None):
    for height, width in IMAGE_SIZES[name]:
        images = _images(height, width)
        expected = _reference(model, images, TOKEN_IDS)
        actual = _keras_outputs(backbone, images, TOKEN_IDS)
        for key, value in expected.items():
            error = _relative_error(actual[key], value)
            if errors is not None:
                errors[(height, width, key)] = error
            assert error <= RELATIVE_TOLERANCE, (name, height, width, key,
                                                 error)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory, tokenizer_model):
    """`{name: (model, directory)}`; the directories hold a tokenizer."""
    root = tmp_path_factory.mktemp("transformers")
    saved = {}
    for name in CONFIGS:
        model = _transformers_model(name)
        directory = root / f"tipsv2-{name}"
        model.save_pretrained(directory)
        shutil.copyfile(tokenizer_model, directory / "tokenizer.model")
        saved[name] = (model, directory)
    return saved


@pytest.mark.parametrize("name", list(CONFIGS))
def test_from_preset_matches_transformers(saved_models, name):
    model, directory = saved_models[name]
    backbone = keras_tips.TIPSBackbone.from_preset(str(directory))
    assert backbone.vision_encoder.ffn_layer == (
        "swiglu" if name == "swiglu" else "mlp")
    assert float(keras.ops.convert_to_numpy(backbone.temperature)) == (
        pytest.approx(0.0123, rel=1e-6))
    _assert_same_outputs(backbone, model, name)


def _random_backbone(name, seed):
    """A keras-tips backbone with every weight drawn at random."""
    vision, text = CONFIGS[name]
    hidden = vision["hidden_size"]
    backbone = keras_tips.TIPSBackbone(
        keras_tips.TIPSVisionEncoder(
            hidden_dim=hidden, num_layers=vision["num_hidden_layers"],
            num_heads=vision["num_attention_heads"],
            mlp_dim=int(hidden * vision["mlp_ratio"]),
            ffn_layer="swiglu" if vision.get("use_swiglu_ffn") else "mlp",
            position_grid_size=vision["image_size"] // 14),
        keras_tips.TIPSTextEncoder(
            vocabulary_size=text["vocab_size"], hidden_dim=hidden,
            num_layers=text["num_hidden_layers"],
            num_heads=text["num_attention_heads"],
            mlp_dim=text["intermediate_size"]),
        temperature=0.05,
    )
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        if variable.path.endswith("log_temperature"):
            continue
        scale = 0.5 if len(variable.shape) < 2 else 0.2
        variable.assign(rng.normal(0.0, scale, variable.shape))
    return backbone


@pytest.mark.parametrize("name", list(CONFIGS))
def test_export_loads_in_transformers(tmp_path, name):
    backbone = _random_backbone(name, seed=1)
    directory = convert.export_to_transformers(backbone, tmp_path / "hf")
    model = transformers.Tipsv2Model.from_pretrained(directory).eval()
    assert model.temperature.item() == pytest.approx(0.05, rel=1e-6)
    _assert_same_outputs(backbone, model, name)


def test_round_trip_is_exact(saved_models, tmp_path):
    _, directory = saved_models["swiglu"]
    backbone = convert.load_transformers_backbone(directory)
    tokenizer = keras_tips.TIPSTokenizer(
        proto=str(directory / "tokenizer.model"), sequence_length=16)
    out = convert.export_to_transformers(backbone, tmp_path / "again",
                                         tokenizer=tokenizer)
    original, _ = read_safetensors(directory / "model.safetensors")
    exported, metadata = read_safetensors(os.path.join(out, "model.safetensors"))
    assert metadata == {"format": "pt"}
    assert sorted(original) == sorted(exported)
    # The temperature is kept as its logarithm: exact to float32 rounding.
    np.testing.assert_allclose(exported.pop("temperature"),
                               original.pop("temperature"), rtol=1e-6)
    for key, value in original.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    config = transformers.Tipsv2Config.from_pretrained(out)
    reference = transformers.Tipsv2Config.from_pretrained(directory)
    for tower in ("vision_config", "text_config"):
        ours = getattr(config, tower).to_dict()
        theirs = getattr(reference, tower).to_dict()
        differing = {k for k in theirs if ours.get(k) != theirs[k]}
        # The init-only fields that keras-tips does not keep.
        assert differing <= {"initializer_range", "mlp_ratio"}, differing
    assert (directory / "tokenizer.model").read_bytes() == (
        open(os.path.join(out, "tokenizer.model"), "rb").read())
    processor = json.loads(open(os.path.join(out, "preprocessor_config.json")).read())
    assert processor["size"] == {"height": 42, "width": 42}
    assert isinstance(transformers.AutoTokenizer.from_pretrained(out),
                      transformers.Tipsv2Tokenizer)
    with pytest.raises(FileExistsError, match="overwrite"):
        convert.export_to_transformers(backbone, out)


def test_tokenizer_preprocessor_and_tasks_from_the_directory(saved_models):
    _, directory = saved_models["mlp"]
    tokenizer = keras_tips.TIPSTokenizer.from_preset(str(directory))
    reference = keras_tips.TIPSTokenizer(
        proto=str(directory / "tokenizer.model"), sequence_length=16)
    assert tokenizer.sequence_length == 16  # max_position_embeddings
    np.testing.assert_array_equal(tokenizer(["a red circle", "two squares"]),
                                  reference(["a red circle", "two squares"]))
    preprocessor = keras_tips.TIPSPreprocessor.from_preset(str(directory))
    batch = preprocessor({"images": np.zeros((1, 30, 40, 3), "uint8"),
                          "prompts": ["a red circle"]})
    assert tuple(batch["images"].shape) == (1, 28, 28, 3)  # image_size
    classifier = keras_tips.tasks.TIPSZeroShotClassifier.from_preset(
        str(directory), class_names=["circle", "square"])
    assert classifier.class_embeddings.shape == (2, 32)
    # Converted once: one cached preset, reused by every loader.
    cached = os.listdir(os.path.join(presets.cache_dir(), "presets",
                                     "transformers"))
    assert len(cached) == 1 and cached[0].startswith("tipsv2-mlp-")


def test_directory_without_tokenizer(tmp_path):
    model = _transformers_model("mlp")
    model.save_pretrained(tmp_path / "bare")
    backbone = keras_tips.TIPSBackbone.from_preset(str(tmp_path / "bare"))
    assert backbone.hidden_dim == 32
    converted = presets.resolve_preset(str(tmp_path / "bare"))
    assert not os.path.exists(os.path.join(converted, "tokenizer.json"))


def test_hf_handle_is_downloaded_and_converted_once(saved_models, monkeypatch):
    _, directory = saved_models["mlp"]
    calls = []

    def fake_snapshot(repo_id):
        calls.append(repo_id)
        return str(directory)

    monkeypatch.setattr(presets, "download_hf_snapshot", fake_snapshot)
    backbone = keras_tips.TIPSBackbone.from_preset("hf://google/tipsv2-b14")
    keras_tips.TIPSBackbone.from_preset("hf://google/tipsv2-b14")
    tokenizer = keras_tips.TIPSTokenizer.from_preset("hf://google/tipsv2-b14")
    assert calls == ["google/tipsv2-b14"]
    assert backbone.hidden_dim == 32 and tokenizer.vocabulary_size() == 64
    assert os.path.exists(os.path.join(
        presets.cache_dir(), "presets", "hf", "google--tipsv2-b14",
        "config.json"))


@pytest.mark.backend_independent
def test_hf_handle_of_a_keras_hub_preset_passes_through(
        tmp_path, monkeypatch, tiny_preset):
    monkeypatch.setattr(presets, "download_hf_snapshot",
                        lambda repo_id: tiny_preset)
    assert presets.resolve_preset("hf://someone/keras-preset") == (
        "hf://someone/keras-preset")


@pytest.mark.backend_independent
def test_other_model_types_are_named(tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "config.json").write_text(json.dumps(
        {"model_type": "clip", "architectures": ["CLIPModel"]}))
    with pytest.raises(convert.CheckpointError,
                       match="type 'clip' \\(CLIPModel\\), not TIPSv2"):
        keras_tips.TIPSBackbone.from_preset(str(clip))
    with pytest.raises(convert.CheckpointError, match="'clip'"):
        keras_tips.TIPSTokenizer.from_preset(str(clip))
    vision = transformers.Tipsv2VisionModel(transformers.Tipsv2VisionConfig(
        **CONFIGS["mlp"][0]))
    vision.save_pretrained(tmp_path / "vision")
    with pytest.raises(convert.CheckpointError,
                       match="only one TIPSv2 tower.*tipsv2_vision_model"):
        keras_tips.TIPSBackbone.from_preset(str(tmp_path / "vision"))


def _tampered_copy(source, target, change):
    shutil.copytree(source, target)
    arrays, metadata = read_safetensors(target / "model.safetensors")
    change(arrays)
    write_safetensors(target / "model.safetensors", arrays, metadata)
    return str(target)


@pytest.mark.backend_independent
def test_key_and_shape_errors_leave_no_preset(saved_models, tmp_path):
    _, directory = saved_models["mlp"]
    missing = _tampered_copy(directory, tmp_path / "missing", lambda a: a.pop(
        "vision_encoder.blocks.1.mlp.c_fc.bias"))
    with pytest.raises(convert.CheckpointError,
                       match="missing key 'blocks.1.mlp.fc1.bias'"):
        keras_tips.TIPSBackbone.from_preset(missing)

    def reshape(arrays):
        arrays["text_encoder.ln_final.weight"] = np.zeros(5, "float32")

    wrong = _tampered_copy(directory, tmp_path / "wrong", reshape)
    with pytest.raises(convert.CheckpointError,
                       match="'ln_final.weight' has shape \\(5,\\)"):
        keras_tips.TIPSBackbone.from_preset(wrong)

    def add(arrays):
        arrays["logit_bias"] = np.zeros((), "float32")

    extra = _tampered_copy(directory, tmp_path / "extra", add)
    with pytest.raises(convert.CheckpointError, match="'logit_bias'"):
        keras_tips.TIPSBackbone.from_preset(extra)
    cache = os.path.join(presets.cache_dir(), "presets", "transformers")
    assert not os.path.exists(cache) or os.listdir(cache) == []


@pytest.mark.backend_independent
def test_unsupported_settings_are_named(saved_models, tmp_path):
    _, directory = saved_models["mlp"]
    changed = tmp_path / "changed"
    shutil.copytree(directory, changed)
    config = json.loads((changed / "config.json").read_text())
    config["vision_config"]["hidden_act"] = "gelu_new"
    (changed / "config.json").write_text(json.dumps(config))
    with pytest.raises(convert.CheckpointError,
                       match="vision_config.hidden_act='gelu_new'"):
        convert.load_transformers_backbone(changed)


@pytest.mark.backend_independent
def test_bfloat16_and_sharded_checkpoints(tmp_path):
    model = _transformers_model("mlp", seed=3)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    backbone = convert.load_transformers_backbone(tmp_path / "sharded")
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    from_bf16 = convert.load_transformers_backbone(tmp_path / "bf16")
    for full, half in zip(backbone.weights, from_bf16.weights):
        full = keras.ops.convert_to_numpy(full)
        half = keras.ops.convert_to_numpy(half)
        # bfloat16 keeps 8 significant bits: relative rounding <= 2**-8.
        np.testing.assert_allclose(half, full, rtol=2**-8, atol=1e-30)


DPT_HEADS = {
    "segmentation": "Tipsv2DptForSemanticSegmentation",
    "depth": "Tipsv2DptForDepthEstimation",
    "normals": "Tipsv2DptForNormalEstimation",
}


@pytest.mark.parametrize("task", [
    "segmentation",
    # The same decoder with another read-out: once, for CI time.
    pytest.param("depth", marks=pytest.mark.backend_independent),
    pytest.param("normals", marks=pytest.mark.backend_independent),
])
def test_dpt_heads_match_transformers(tmp_path, task):
    from keras_tips.tasks.dense_task import depth_from_bins
    from keras_tips.tasks.intermediate_features import intermediate_layer_features

    torch.manual_seed(5)
    config = transformers.Tipsv2DptConfig(
        backbone_config=dict(
            model_type="tipsv2_vision_model", hidden_size=32,
            num_hidden_layers=4, num_attention_heads=4, image_size=28,
            out_indices=[1, 2, 3, 4], reshape_hidden_states=False),
        neck_hidden_sizes=[4, 8, 16, 32], fusion_hidden_size=16,
        num_labels=5, num_depth_bins=8)
    model = getattr(transformers, DPT_HEADS[task])(config).eval()
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if key.endswith("bias") or "lambda1" in key:
                parameter.normal_(0.0, 0.5)
    model.save_pretrained(tmp_path / "dpt")

    backbone = keras_tips.TIPSBackbone(
        keras_tips.TIPSVisionEncoder(hidden_dim=32, num_layers=4, num_heads=4,
                                     mlp_dim=128, position_grid_size=2),
        keras_tips.TIPSTextEncoder(vocabulary_size=64, hidden_dim=32,
                                   num_layers=1, num_heads=4, mlp_dim=64))
    predictor = keras_tips.tasks.TIPSDensePredictor(
        backbone, task=task, num_classes=5, image_size=(28, 28), channels=16,
        post_process_channels=(4, 8, 16, 32), num_depth_bins=8,
        output_activation=task == "depth", compile=False)
    convert.load_transformers_dense_predictor_weights(predictor,
                                                      tmp_path / "dpt")
    inputs = keras.Input((None, None, 3))
    decoder = keras.Model(inputs, predictor.decoder(intermediate_layer_features(
        backbone.vision_encoder, inputs, predictor.layer_indices)))
    sizes = ((28, 28), (42, 56)) if task == "segmentation" else ((42, 56),)
    for height, width in sizes:
        images = _images(height, width, batch=2)
        with torch.no_grad():
            output = model(
                pixel_values=torch.tensor(images.transpose(0, 3, 1, 2)))
        raw = decoder.predict_on_batch(images)
        if task == "depth":
            actual = depth_from_bins(raw, predictor.min_depth,
                                     predictor.max_depth)[..., 0]
            expected = output.predicted_depth.numpy()
        else:
            actual = raw
            expected = (output.logits if task == "segmentation"
                        else output.normals).numpy().transpose(0, 2, 3, 1)
        assert _relative_error(actual, expected) <= RELATIVE_TOLERANCE, (
            task, height, width, _relative_error(actual, expected))

    if task == "depth":
        with pytest.raises(convert.CheckpointError, match="predictor's task"):
            convert.load_transformers_dense_predictor_weights(
                keras_tips.tasks.TIPSDensePredictor(
                    backbone, task="normals", image_size=(28, 28),
                    channels=16, post_process_channels=(4, 8, 16, 32),
                    compile=False),
                tmp_path / "dpt")
        with pytest.raises(convert.CheckpointError,
                           match="depth_decoder_activation"):
            predictor.decoder.output_activation = False
            convert.load_transformers_dense_predictor_weights(
                predictor, tmp_path / "dpt")
