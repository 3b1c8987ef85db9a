"""The preset loader: every TIPS `from_preset` resolves and loads here.

A preset is a named preset of `keras_tips.tips_presets`, a local preset
directory, a Hugging Face `transformers` TIPSv2 checkpoint or any keras-hub
handle. `resolve_preset` maps it to a local keras-hub preset directory:

- `TIPSBackbone.from_preset("tips_v2_b14")` downloads the official
  `<checkpoint>_vision.npz`, `<checkpoint>_text.npz` and `tokenizer.model`,
  converts them once into a keras-hub preset directory under the cache and
  loads that. The base URL can be redirected (a mirror, or `file://` for
  offline use) with the `KERAS_TIPS_BASE_URL` environment variable, and the
  cache moved with `KERAS_TIPS_CACHE`.
- Hugging Face `transformers` TIPSv2 checkpoints are converted the same
  way: a `Tipsv2Model.save_pretrained` directory, or an
  `hf://google/tipsv2-b14` handle (downloaded with `huggingface_hub`),
  becomes a preset under the cache on first use.

`load_preset` is the one `from_preset` of every TIPS class (through
`keras_tips.preset_mixin.TIPSPresetMixin`), `load_preset_components` loads
a preset's backbone, tokenizer and image converter at once, and
`register_builtin_presets` lists the named presets in keras-hub's registry.

This module imports the model classes and the converters (it builds them
when converting); they do not import it. It plugs itself into
`TIPSPresetMixin` and keras-hub's registry when imported, which the package
`__init__` does.
"""

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request

import keras_hub
from keras_hub.models import Backbone
from keras_hub.models import Task
from keras_hub.src.utils.preset_utils import register_presets

from keras_tips import preset_mixin
from keras_tips import variants
from keras_tips.backbone import TIPSBackbone
from keras_tips.image_converter import TIPSImageConverter
from keras_tips.official_checkpoint import check_output_dir
from keras_tips.official_checkpoint import official_preset_components
from keras_tips.official_checkpoint import write_preset
from keras_tips.tips_presets import EMBEDDED_DIR
from keras_tips.tips_presets import EMBEDDED_PRESETS
from keras_tips.tips_presets import MODEL_CARD
from keras_tips.tips_presets import OFFICIAL_BASE_URL
from keras_tips.tips_presets import PRESETS
from keras_tips.tips_presets import TOKENIZER_PATH
from keras_tips.tokenizer import TIPSTokenizer
from keras_tips.transformers_checkpoint import transformers_preset_components
from keras_tips.transformers_checkpoint import is_transformers_directory
from keras_tips.validation import check_finite_weights


def preset_metadata(name):
    """keras-hub metadata of a named preset: description, params, source."""
    if name in EMBEDDED_PRESETS:
        with open(os.path.join(EMBEDDED_DIR, name, "config.json")) as file:
            config = json.load(file)["config"]
        vision = config["vision_encoder"]["config"]
        text = config["text_encoder"]["config"]
        return {
            "description": EMBEDDED_PRESETS[name],
            "params": variants.parameter_count(vision, text),
            "official_name": "TIPS",
            "path": "tips",
            "model_card": MODEL_CARD,
            "source": "shipped with keras-tips (training/ pipeline)",
        }
    spec = PRESETS[name]
    grid = 16 if name.startswith("tips_v1") else 32
    vision = variants.vision_config(spec["size"], position_grid_size=grid)
    text = variants.text_config(spec["size"])
    return {
        "description": spec["description"],
        "params": variants.parameter_count(vision, text),
        "official_name": "TIPS",
        "path": "tips",
        "model_card": MODEL_CARD,
        "source": f"{OFFICIAL_BASE_URL}/{spec['path']}_{{vision,text}}.npz",
    }


def _preset_location(name):
    """The local directory the named preset is (or will be) loaded from."""
    if name in EMBEDDED_PRESETS:
        return os.path.join(EMBEDDED_DIR, name)
    return os.path.join(cache_dir(), "presets", name)


class _ConvertOnLookup(dict):
    """keras-hub's registry entry of a named preset, converted on lookup.

    keras-hub resolves a built-in preset name in `preset_utils.get_file`,
    and only there, by reading `BUILTIN_PRESETS[name]["kaggle_handle"]`.
    For a TIPS preset that read runs `resolve_preset(name)`: the embedded
    directory, or the official checkpoint downloaded and converted into the
    cache on the first call (later calls find it there). So
    `keras_hub.models.Backbone.from_preset("tips_v2_b14")` (or
    `keras_hub.tokenizers.Tokenizer.from_preset(...)`) works from a cold
    cache, as it does for keras-hub's own presets. Listing presets
    (`TIPSBackbone.presets`, metadata) reads no handle and downloads
    nothing; a plain copy of the entry holds the cache path it will have.
    """

    def __init__(self, name):
        super().__init__(metadata=preset_metadata(name),
                         kaggle_handle=_preset_location(name))
        self.name = name

    def __getitem__(self, key):
        if key == "kaggle_handle":
            return resolve_preset(self.name)
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default


def register_builtin_presets(backbone_cls):
    """Registers the named presets with keras-hub for `backbone_cls`.

    Then `TIPSBackbone.presets` lists them with their metadata, and
    `keras_hub.models.Backbone.from_preset(name)` dispatches to
    `TIPSBackbone`: the embedded `tips_tiny_scenes` directly, an official
    preset after downloading and converting it once (see
    `_ConvertOnLookup`), exactly as `TIPSBackbone.from_preset(name)` does.
    """
    register_presets(
        {
            name: _ConvertOnLookup(name)
            for name in list(PRESETS) + list(EMBEDDED_PRESETS)
        },
        backbone_cls,
    )


def cache_dir():
    """Where converted presets are kept (`KERAS_TIPS_CACHE` overrides)."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "keras_tips")
    return os.environ.get("KERAS_TIPS_CACHE", default)


def base_url():
    """Where official files are fetched from (`KERAS_TIPS_BASE_URL`)."""
    return os.environ.get("KERAS_TIPS_BASE_URL", OFFICIAL_BASE_URL).rstrip("/")


def download(url, destination):
    """Downloads `url` to `destination` atomically; returns the path.

    The file is written beside the destination under a temporary name and
    renamed once complete, so an interrupted download leaves nothing that
    looks finished. `file://` URLs work, for mirrors and offline tests.
    """
    os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    handle, partial = tempfile.mkstemp(
        prefix=os.path.basename(destination) + ".", suffix=".partial",
        dir=os.path.dirname(destination) or ".",
    )
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url) as src:
            shutil.copyfileobj(src, out, length=1 << 20)
        os.replace(partial, destination)
    except BaseException as error:
        if os.path.exists(partial):
            os.remove(partial)
        if isinstance(error, OSError):
            raise OSError(f"Could not download {url}: {error}") from error
        raise
    return destination


def fetch_official_files(name, directory):
    """Downloads a named preset's vision, text and tokenizer files."""
    spec = PRESETS[name]
    files = {}
    for kind, remote in (
        ("vision", spec["path"] + "_vision.npz"),
        ("text", spec["path"] + "_text.npz"),
        ("tokenizer", TOKENIZER_PATH),
    ):
        local = os.path.join(directory, os.path.basename(remote))
        if not os.path.exists(local):
            download(f"{base_url()}/{remote}", local)
        files[kind] = local
    return files


def _version_tuple(text):
    parts = []
    for piece in str(text).split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_preset_directory(path, expected_class="TIPSBackbone"):
    """Fails clearly on a directory that is not a loadable TIPS preset.

    Checks that `config.json` exists and is readable, that it describes
    `expected_class` (not another keras-hub model), and that the preset was
    not written by a newer keras-hub than the installed one.
    """
    installed = keras_hub.__version__
    config_path = os.path.join(path, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(
            f"{path} is not a preset directory: it has no config.json. "
            "Write one with save_to_preset or tools/convert_checkpoint.py."
        )
    try:
        with open(config_path) as file:
            config = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{config_path} is not readable JSON: {error}") from error
    class_name = config.get("class_name") if isinstance(config, dict) else None
    if class_name != expected_class:
        raise ValueError(
            f"{path} holds a {class_name!r} preset, not a {expected_class}; "
            f"load it with that model's class instead."
        )
    metadata_path = os.path.join(path, "metadata.json")
    if os.path.exists(metadata_path):
        try:
            with open(metadata_path) as file:
                written_by = json.load(file).get("keras_hub_version")
        except (OSError, ValueError):
            written_by = None
        if written_by and _version_tuple(written_by) > _version_tuple(installed):
            raise ValueError(
                f"{path} was written by keras-hub {written_by}, newer than the "
                f"installed {installed}; upgrade keras-hub to load it."
            )


def download_hf_snapshot(repo_id):
    """Downloads the files of a Hub repository that a preset needs.

    Returns the local directory (in the `huggingface_hub` cache) holding
    the configs, safetensors weights and tokenizer files of `repo_id`.
    """
    try:
        import huggingface_hub
    except ImportError as error:
        raise ImportError(
            f"Loading 'hf://{repo_id}' needs the `huggingface_hub` package: "
            "pip install huggingface_hub"
        ) from error
    return huggingface_hub.snapshot_download(
        repo_id,
        allow_patterns=[
            "*.json",
            "*.safetensors",
            "tokenizer.model",
        ],
    )


def _convert_transformers_once(directory, converted, handle):
    """Converts a transformers checkpoint to `converted` unless it exists.

    Returns `(converted, backbone)`, `backbone` the `TIPSBackbone` built by
    this call's conversion, or `None` when there was none.
    """
    if os.path.exists(os.path.join(converted, "config.json")):
        return converted, None
    try:
        check_output_dir(converted, overwrite=False)
        components = transformers_preset_components(directory)
        write_preset(converted, *components)
    except FileExistsError:
        # Converted concurrently by another process, or a broken leftover.
        if not os.path.exists(os.path.join(converted, "config.json")):
            raise FileExistsError(
                f"{converted} exists but holds no converted preset; delete "
                f"it to convert {handle} again."
            ) from None
        return converted, None
    return converted, components[0]


def transformers_cache_path(directory):
    """Cache directory of the converted preset of a local checkpoint.

    Keyed by the directory's real path and the names, sizes and
    modification times of its files, so a re-saved checkpoint is
    converted again.
    """
    directory = os.path.realpath(directory)
    digest = hashlib.sha256(directory.encode("utf-8"))
    for name in sorted(os.listdir(directory)):
        stat = os.stat(os.path.join(directory, name))
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    name = os.path.basename(directory.rstrip(os.sep)) or "checkpoint"
    return os.path.join(
        cache_dir(), "presets", "transformers",
        f"{name}-{digest.hexdigest()[:16]}",
    )


def _resolve_hf_handle(handle):
    repo_id = handle[len("hf://"):].strip("/")
    converted = os.path.join(
        cache_dir(), "presets", "hf", repo_id.replace("/", "--")
    )
    if os.path.exists(os.path.join(converted, "config.json")):
        return converted, None
    local = download_hf_snapshot(repo_id)
    if not is_transformers_directory(local):
        # A keras-hub preset on the Hub: keras-hub loads it.
        return handle, None
    return _convert_transformers_once(local, converted, handle)


def resolve_preset(preset):
    """Maps a preset name to a local preset directory; other values pass.

    Named official presets are downloaded and converted on first use; the
    converted directory is cached, so later calls only load it. A
    `transformers` checkpoint (a local directory or an `hf://` handle) is
    converted into the cache the same way.
    """
    return _resolve(preset)[0]


def _resolve(preset):
    """`(resolved preset, backbone)`, as `resolve_preset` resolves it.

    `backbone` is the `TIPSBackbone` this call converted (then saved to the
    returned directory), or `None` if nothing was converted.
    """
    if isinstance(preset, os.PathLike):
        preset = os.fspath(preset)
    if not isinstance(preset, str):
        return preset, None
    if preset.lower().startswith("hf://"):
        return _resolve_hf_handle(preset)
    if is_transformers_directory(preset):
        return _convert_transformers_once(
            preset, transformers_cache_path(preset), preset
        )
    if preset in EMBEDDED_PRESETS:
        path = os.path.join(EMBEDDED_DIR, preset)
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"The embedded preset {preset!r} is missing from this "
                f"installation ({path}); reinstall keras-tips."
            )
        return path, None
    if preset not in PRESETS:
        return preset, None
    converted = os.path.join(cache_dir(), "presets", preset)
    if os.path.exists(os.path.join(converted, "config.json")):
        return converted, None
    files = fetch_official_files(
        preset, os.path.join(cache_dir(), "downloads")
    )
    check_output_dir(converted, overwrite=False)
    components = official_preset_components(
        files["vision"],
        files["text"],
        files["tokenizer"],
        image_size=PRESETS[preset]["image_size"],
    )
    write_preset(converted, *components)
    return converted, components[0]


def load_preset(cls, load, preset, **kwargs):
    """Loads a TIPS class from a preset: what every `from_preset` runs.

    `TIPSPresetMixin.from_preset` (the backbone, tokenizer, image
    converter, preprocessor and tasks) calls this with `load`, keras-hub's
    own `from_preset` of the class. The preset is resolved first (see
    `resolve_preset`). A backbone that was converted by this very call
    (an official or `transformers` checkpoint loaded the first time) is
    returned as converted, not built again from the files just written,
    unless arguments such as `dtype` or `load_weights=False` ask for
    another build. A backbone's preset directory is checked
    (`check_preset_directory`), unreadable files raise an `OSError` that
    says so, and loaded weights are checked: NaN or Inf raises a
    `ValueError` naming the weight. A task checks its backbone's weights
    and its own, and needs the arguments it lists in
    `required_preset_arguments` (e.g. the zero-shot tasks' `class_names`).

    Args:
        cls: the class `from_preset` was called on.
        load: keras-hub's `from_preset` of `cls` (a bound classmethod).
        preset: a preset name, directory, checkpoint or handle.
        **kwargs: passed to `load` (e.g. `load_weights`).

    Returns:
        The loaded object.
    """
    for name in cls.required_preset_arguments:
        if name not in kwargs:
            raise ValueError(f"{cls.__name__}.from_preset() needs `{name}`.")
    path, converted = _resolve(preset)
    check_weights = kwargs.get("load_weights", True)
    if issubclass(cls, Backbone):
        if isinstance(path, str) and os.path.isdir(path):
            check_preset_directory(path, expected_class=cls.__name__)
        if type(converted) is cls and kwargs in ({}, {"load_weights": True}):
            # Just converted and saved: the same model, not built twice.
            backbone = converted
        else:
            try:
                backbone = load(path, **kwargs)
            except OSError as error:
                raise OSError(
                    f"Could not load the TIPS preset {path}: its files are "
                    f"unreadable or truncated ({error}). Convert or save it "
                    "again."
                ) from error
        if check_weights:
            check_finite_weights(backbone, f"TIPS preset {path}")
        return backbone
    loaded = load(path, **kwargs)
    if issubclass(cls, Task) and check_weights:
        # The backbone too: a task's graph may not use every encoder (and
        # torch tracks only the layers in the graph).
        for model in (loaded.backbone, loaded):
            check_finite_weights(model, f"TIPS preset {preset}")
    return loaded


def load_preset_components(preset):
    """`(backbone, tokenizer, image_converter)` of a preset (name or dir).

    The tokenizer or image converter is `None` if the preset has none.
    """
    path = resolve_preset(preset)
    backbone = TIPSBackbone.from_preset(path)
    tokenizer = image_converter = None
    if isinstance(path, str) and os.path.isdir(path):
        if os.path.exists(os.path.join(path, "tokenizer.json")):
            tokenizer = TIPSTokenizer.from_preset(path)
        if os.path.exists(os.path.join(path, "image_converter.json")):
            image_converter = TIPSImageConverter.from_preset(path)
    else:
        tokenizer = TIPSTokenizer.from_preset(path)
        image_converter = TIPSImageConverter.from_preset(path)
    return backbone, tokenizer, image_converter


# The loader plugs itself in where the classes, which it builds and so comes
# after, look for it: every `from_preset` (`TIPSPresetMixin`), and keras-hub's
# registry (`TIPSBackbone.presets`, `from_preset(name)` on keras-hub's base
# classes). The package imports this module, so both hold from the first
# `import keras_tips...` on.
preset_mixin.use_preset_loader(load_preset)
register_builtin_presets(TIPSBackbone)
