"""The `keras-tips` command line, end to end on real photographs.

The photographs are scikit-image's sample data (astronaut, coffee, chelsea).
The model is a tiny random-weight preset, so the checks are about the
files written and their agreement with the library, not about accuracy.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

import keras_tips
from keras_tips import cli
from keras_tips.cli.zero_shot import class_palette
from keras_tips.presets import load_preset_components
from keras_tips.visualization import pca_images

skimage_data = pytest.importorskip("skimage.data")

REPO_ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
# "a|b": one class named by synonyms, scored by the best of them.
LABELS = ["cat|kitten", "wooden floor", "wall|background"]
LABEL_GROUPS = [["cat", "kitten"], "wooden floor", ["wall", "background"]]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = {
        "astronaut": folder / "astronaut.png",
        "coffee": folder / "coffee.jpg",
        "chelsea": folder / "chelsea.jpg",
    }
    Image.fromarray(skimage_data.astronaut()).save(paths["astronaut"])
    Image.fromarray(skimage_data.coffee()).save(paths["coffee"], quality=92)
    Image.fromarray(skimage_data.chelsea()).save(paths["chelsea"], quality=92)
    return {name: str(path) for name, path in paths.items()}


def _command():
    script = shutil.which("keras-tips")
    if script is not None:
        return [script]
    return [sys.executable, "-m", "keras_tips.cli"]


def _environment():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _photo_commands(preset_path, photos, out):
    """The photo subcommands the tests check, by name."""
    preset = ["--preset", preset_path]
    return {
        "pca": [
            "pca", photos["astronaut"], photos["coffee"], photos["chelsea"],
            "--output", str(out / "pca.png"), *preset,
        ],
        "segment": [
            "segment", photos["chelsea"], "--labels", *LABELS,
            "--output", str(out / "mask.png"),
            "--overlay", str(out / "overlay.png"),
            "--legend", str(out / "legend.json"), *preset,
        ],
        "classify": [
            "classify", photos["astronaut"], photos["coffee"],
            "--labels", "astronaut", "coffee cup|mug", "cat", "--top-k", "2",
            "--cls", "both", "--templates", "single",
            "--output", str(out / "classes.json"), *preset,
        ],
        "embed": [
            "embed", "--images", photos["chelsea"], photos["astronaut"],
            photos["coffee"], "--kind", "first", "--normalize",
            "--output", str(out / "images.npy"), *preset,
        ],
        "missing_image": [
            "embed", "--images", str(out / "missing.jpg"),
            "--output", str(out / "never.npy"), *preset,
        ],
    }


def _run_subprocesses(names, preset_path, photos, out):
    """Runs subcommands as `keras-tips` processes, concurrently."""
    commands = _photo_commands(preset_path, photos, out)
    processes = {
        name: subprocess.Popen(
            _command() + commands[name], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=_environment(),
            cwd=str(out),
        )
        for name in names
    }
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=900)
        results[name] = (process.returncode, stdout, stderr)
    return out, results


@pytest.fixture(scope="module")
def subprocess_runs(tiny_preset, photos, tmp_path_factory):
    """`segment` and a bad input, as real `keras-tips` processes."""
    return _run_subprocesses(
        ["segment", "missing_image"], tiny_preset, photos,
        tmp_path_factory.mktemp("cli_subprocess"),
    )


@pytest.fixture(scope="module")
def slow_subprocess_runs(tiny_preset, photos, tmp_path_factory):
    """The other photo subcommands as processes (slow: one start each)."""
    return _run_subprocesses(
        ["pca", "classify", "embed"], tiny_preset, photos,
        tmp_path_factory.mktemp("cli_subprocess_slow"),
    )


@pytest.fixture(scope="module")
def in_process_runs(tiny_preset, photos, tmp_path_factory):
    """The photo subcommands through `keras_tips.cli.main` in this process."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("cli_in_process")
    commands = _photo_commands(tiny_preset, photos, out)
    results = {}
    for name in ("pca", "classify", "embed"):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr):
            code = cli.main(commands[name])
        results[name] = (code, stdout.getvalue(), stderr.getvalue())
    return out, results


# The in-process runs check what each subcommand computes on every backend;
# the same subcommands as `keras-tips` processes add the console script, exit
# codes and output streams, which do not depend on the backend, so they run
# once (`segment`, which runs only as a process, still runs on every backend).
RUN_MODES = [
    "in_process",
    pytest.param(
        "subprocess",
        marks=[pytest.mark.slow, pytest.mark.backend_independent],
    ),
]


@pytest.fixture
def photo_runs(request):
    fixture = {
        "in_process": "in_process_runs",
        "subprocess": "slow_subprocess_runs",
    }[request.param]
    return request.getfixturevalue(fixture)


def _check_ok(result):
    code, stdout, stderr = result
    assert code == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    return stdout


def _components(preset):
    return load_preset_components(preset)


def _pixels(converter, path):
    image = np.asarray(Image.open(path).convert("RGB"))
    return ops.convert_to_numpy(converter(image))


@pytest.mark.parametrize("photo_runs", RUN_MODES, indirect=True)
def test_pca_writes_picture_sheet(photo_runs, tiny_preset, photos):
    out, results = photo_runs
    stdout = _check_ok(results["pca"])
    assert "wrote" in stdout
    sheet = np.asarray(Image.open(out / "pca.png"))
    # Three rows (image | gap | PCA), 56 px each, 4 px gaps.
    assert sheet.shape == (3 * 56 + 2 * 4, 56 + 4 + 56, 3)
    backbone, _, converter = _components(tiny_preset)
    names = ["astronaut", "coffee", "chelsea"]
    pixels = np.stack([_pixels(converter, photos[n]) for n in names])
    patches = ops.convert_to_numpy(
        backbone.encode_images(pixels)["patch_embeddings"]
    )
    pictures = pca_images(patches, (56, 56))
    for row in range(3):
        top = row * 60
        photo = sheet[top : top + 56, :56].astype(int)
        expected = np.round(pixels[row] * 255).astype(int)
        assert np.abs(photo - expected).max() <= 1
        pca = sheet[top : top + 56, 60:].astype(int)
        assert np.abs(pca - pictures[row].astype(int)).max() <= 1
    # Random features still give a picture with several colours.
    assert len(np.unique(sheet[:56, 60:].reshape(-1, 3), axis=0)) > 4


def test_segment_writes_coloured_mask_and_legend(subprocess_runs, tiny_preset,
                                                 photos):
    out, results = subprocess_runs
    stdout = _check_ok(results["segment"])
    chelsea = skimage_data.chelsea()
    mask_image = Image.open(out / "mask.png")
    assert mask_image.format == "PNG" and mask_image.mode == "RGB"
    mask_rgb = np.asarray(mask_image)
    assert mask_rgb.shape == chelsea.shape  # the input's size: 300 x 451
    palette = class_palette(len(LABELS))
    indices = np.full(mask_rgb.shape[:2], -1)
    for i, colour in enumerate(palette):
        indices[np.all(mask_rgb == colour, axis=-1)] = i
    assert indices.min() >= 0, "mask has colours outside the palette"
    legend = json.loads((out / "legend.json").read_text())
    assert [entry["label"] for entry in legend] == LABELS
    fractions = [entry["fraction"] for entry in legend]
    assert sum(fractions) == pytest.approx(1.0, abs=1e-5)
    for i, entry in enumerate(legend):
        assert entry["fraction"] == pytest.approx(np.mean(indices == i),
                                                  abs=1e-5)
        assert entry["color"] == "#%02x%02x%02x" % tuple(palette[i])
        assert entry["label"] in stdout
    overlay = np.asarray(Image.open(out / "overlay.png"))
    assert overlay.shape == chelsea.shape
    # Same defaults in the library: short side, window = the preset's 56.
    backbone, tokenizer, _ = _components(tiny_preset)
    from keras_tips.tasks import TCL_PROMPT_TEMPLATES
    from keras_tips.tasks import TIPSZeroShotSegmenter

    segmenter = TIPSZeroShotSegmenter(
        backbone, LABEL_GROUPS,
        preprocessor=keras_tips.TIPSPreprocessor(tokenizer=tokenizer),
        prompt_templates=TCL_PROMPT_TEMPLATES,
    )
    jpeg = np.asarray(Image.open(photos["chelsea"]).convert("RGB"))
    expected = segmenter.segment_masks(jpeg, short_side=56, window_size=56)[0]
    assert np.mean(expected == indices) > 0.999


@pytest.mark.parametrize("photo_runs", RUN_MODES, indirect=True)
def test_classify_writes_ranked_labels(photo_runs, tiny_preset, photos):
    out, results = photo_runs
    stdout = _check_ok(results["classify"])
    ranked = json.loads((out / "classes.json").read_text())
    assert [entry["image"] for entry in ranked] == [
        photos["astronaut"], photos["coffee"]
    ]
    backbone, tokenizer, converter = _components(tiny_preset)
    from keras_tips.tasks import SINGLE_PROMPT_TEMPLATE
    from keras_tips.tasks import TIPSZeroShotClassifier

    labels = ["astronaut", ["coffee cup", "mug"], "cat"]
    given = {"astronaut": "astronaut", "coffee cup": "coffee cup|mug",
             "cat": "cat"}
    classifier = TIPSZeroShotClassifier(
        backbone, labels,
        preprocessor=keras_tips.TIPSPreprocessor(tokenizer=tokenizer),
        prompt_templates=SINGLE_PROMPT_TEMPLATE, cls_token="both",
    )
    for entry in ranked:
        assert len(entry["labels"]) == 2
        probabilities = [item["probability"] for item in entry["labels"]]
        assert probabilities == sorted(probabilities, reverse=True)
        expected = classifier.classify(
            _pixels(converter, entry["image"])[None], top_k=2
        )[0]
        assert [item["label"] for item in entry["labels"]] == [
            given[name] for name, _ in expected
        ]
        np.testing.assert_allclose(probabilities, [p for _, p in expected],
                                   atol=1e-4)
        assert os.path.basename(entry["image"]) in stdout


@pytest.mark.parametrize("photo_runs", RUN_MODES, indirect=True)
def test_embed_images_writes_normalised_first_cls(photo_runs, tiny_preset,
                                                  photos):
    out, results = photo_runs
    stdout = _check_ok(results["embed"])
    assert "(3, 64)" in stdout
    embeddings = np.load(out / "images.npy")
    assert embeddings.shape == (3, 64) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0,
                               atol=1e-5)
    backbone, _, converter = _components(tiny_preset)
    pixels = np.stack([
        _pixels(converter, photos[n])
        for n in ("chelsea", "astronaut", "coffee")
    ])
    first = ops.convert_to_numpy(backbone.encode_images(pixels)[
        "cls_embeddings"])[:, 0]
    first /= np.linalg.norm(first, axis=-1, keepdims=True)
    np.testing.assert_allclose(embeddings, first, atol=1e-5)


def test_bad_input_exits_nonzero_with_one_line_error(subprocess_runs):
    _, results = subprocess_runs
    code, stdout, stderr = results["missing_image"]
    assert code == 1
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("keras-tips embed: error: image not found:")
    assert "missing.jpg" in last


def test_embed_texts_in_process(tiny_preset, tmp_path, capsys):
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("a photo of a dog\n\nA RED CAR\n")
    output = tmp_path / "texts.npy"
    code = cli.main([
        "embed", "--texts", "a cat", "--texts-file", str(texts_file),
        "--output", str(output), "--preset", tiny_preset, "--batch-size", "2",
    ])
    assert code == 0, capsys.readouterr().err
    embeddings = np.load(output)
    backbone, tokenizer, _ = _components(tiny_preset)
    texts = ["a cat", "a photo of a dog", "A RED CAR"]
    expected = []
    for text in texts:
        tokens = tokenizer.tokenize_with_padding_mask([text])
        expected.append(ops.convert_to_numpy(backbone.encode_texts(
            ops.convert_to_tensor(tokens["token_ids"]),
            ops.convert_to_tensor(tokens["padding_mask"]),
        ))[0])
    np.testing.assert_allclose(embeddings, np.stack(expected), atol=1e-5)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["embed", "--texts", "a", "--output", "x.txt"],
         "--output must end with .npy"),
        (["embed", "--output", "x.npy"], "give either --images or --texts"),
        (["embed", "--texts", "a", "--output", "x.npy", "--image-size", "50"],
         "--image-size must be a positive multiple of 14"),
        (["classify", "IMAGE", "--output", "r.json"], "give class names"),
        (["segment", "IMAGE", "--labels", "a", "--output", "m.jpg"],
         "--output must end with .png"),
        (["classify", "IMAGE", "--labels", "a|", "b"], "empty synonym"),
        (["classify", "IMAGE", "--labels", "a|b", "b"], "duplicates"),
        (["pca", "nowhere.png", "--output", "p.png"], "image not found"),
        (["convert", "--vision", "v.npz"], "missing --text, --tokenizer"),
        (["convert", "no_such_preset"], "unknown preset"),
    ],
)
def test_bad_arguments_give_one_line_errors(argv, message, photos, tiny_preset,
                                            tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [photos["coffee"] if a == "IMAGE" else a for a in argv]
    if argv[0] != "convert":
        argv += ["--preset", tiny_preset]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"keras-tips {argv[0]}: error:")
    assert message in err[0]


def test_unknown_preset_folder_is_one_line_error(tmp_path, capsys):
    code = cli.main([
        "embed", "--texts", "a", "--output", str(tmp_path / "t.npy"),
        "--preset", str(tmp_path / "no_preset_here"),
    ])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load preset" in err[0]


@pytest.mark.parametrize(
    "command", ["convert", "embed", "classify", "segment", "pca", "export"]
)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: keras-tips {command}")
    assert "--preset" in text or command == "convert"
    assert "example" in text


def test_usage_errors_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["segment"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2


def test_convert_writes_a_loadable_preset(parity_dir, tokenizer_model,
                                          tmp_path, capsys):
    output = tmp_path / "converted"
    argv = [
        "convert", "--vision", str(parity_dir / "vit_mlp_vision.npz"),
        "--text", str(parity_dir / "text_small_text.npz"),
        "--tokenizer", str(tokenizer_model), "--output", str(output),
        "--num-heads", "4", "--image-size", "56",
    ]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(output)
    backbone = keras_tips.TIPSBackbone.from_preset(str(output))
    assert backbone.hidden_dim == 64
    assert cli.main(argv) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli.main(argv + ["--overwrite"]) == 0


@pytest.mark.skipif(
    BACKEND == "torch",
    reason="export on torch re-runs with tensorflow in a subprocess; "
    "covered by the slow test in test_export.py",
)
def test_export_writes_saved_model(tiny_preset, tmp_path, capsys):
    import tensorflow as tf

    output = tmp_path / "saved"
    assert cli.main(["export", "--output", str(output),
                     "--preset", tiny_preset]) == 0
    assert (output / "saved_model.pb").exists()
    served = tf.saved_model.load(str(output))
    out = served.embed_images(tf.zeros((1, 28, 42, 3)))
    assert tuple(out["patch_embeddings"].shape) == (1, 2, 3, 64)
    assert cli.main(["export", "--output", str(output),
                     "--preset", tiny_preset]) == 1
    assert "--overwrite" in capsys.readouterr().err
