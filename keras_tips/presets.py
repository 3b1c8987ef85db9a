"""Named TIPS presets: official checkpoints downloaded, converted and cached.

`TIPSBackbone.from_preset("tips_v2_b14")` looks the name up here, downloads
the official `<checkpoint>_vision.npz`, `<checkpoint>_text.npz` and
`tokenizer.model`, converts them once into a keras-hub preset directory
under the cache and loads that. The base URL can be redirected (a mirror,
or `file://` for offline use) with the `KERAS_TIPS_BASE_URL` environment
variable, and the cache moved with `KERAS_TIPS_CACHE`.

Hugging Face `transformers` TIPSv2 checkpoints are converted the same way:
a `Tipsv2Model.save_pretrained` directory, or an `hf://google/tipsv2-b14`
handle (downloaded with `huggingface_hub`), becomes a preset under the
cache on first use.
"""

import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request

OFFICIAL_BASE_URL = "https://storage.googleapis.com/tips_data"
TOKENIZER_PATH = "v1_0/checkpoints/tokenizer.model"
EMBEDDED_DIR = os.path.join(os.path.dirname(__file__), "preset_files")


def _official(release, checkpoint, size, image_size, description):
    folder = {"v1": "v1_0", "v2": "v2_0"}[release]
    return {
        "checkpoint": checkpoint,
        "path": f"{folder}/checkpoints/pytorch/{checkpoint}",
        "size": size,
        "image_size": image_size,
        "description": description,
    }


# Every released checkpoint of the official repository.
PRESETS = {
    "tips_v1_s14_highres": _official(
        "v1", "tips_oss_s14_highres_distilled", "S", 448,
        "TIPS v1 ViT-S/14, high resolution, distilled from g/14."),
    "tips_v1_b14_highres": _official(
        "v1", "tips_oss_b14_highres_distilled", "B", 448,
        "TIPS v1 ViT-B/14, high resolution, distilled from g/14."),
    "tips_v1_l14_highres": _official(
        "v1", "tips_oss_l14_highres_distilled", "L", 448,
        "TIPS v1 ViT-L/14, high resolution, distilled from g/14."),
    "tips_v1_so400m14_highres": _official(
        "v1", "tips_oss_so400m14_highres_largetext_distilled", "So400m", 448,
        "TIPS v1 SoViT-400m/14 with the 27-layer text tower, distilled."),
    "tips_v1_g14_lowres": _official(
        "v1", "tips_oss_g14_lowres", "g", 224,
        "TIPS v1 ViT-g/14 (SwiGLU), 224 px."),
    "tips_v1_g14_highres": _official(
        "v1", "tips_oss_g14_highres", "g", 448,
        "TIPS v1 ViT-g/14 (SwiGLU), 448 px."),
    "tips_v2_b14": _official(
        "v2", "tips_v2_oss_b14", "B", 448, "TIPSv2 ViT-B/14."),
    "tips_v2_l14": _official(
        "v2", "tips_v2_oss_l14", "L", 448, "TIPSv2 ViT-L/14."),
    "tips_v2_so400m14": _official(
        "v2", "tips_v2_oss_so14", "So400m", 448, "TIPSv2 SoViT-400m/14."),
    "tips_v2_g14": _official(
        "v2", "tips_v2_oss_g14", "g", 448, "TIPSv2 ViT-g/14 (SwiGLU)."),
}

# Presets that ship inside the package (no download).
EMBEDDED_PRESETS = {
    "tips_tiny_scenes": (
        "A tiny TIPS trained by this repository's offline pipeline on "
        "synthetic scenes; for demos and tests."
    ),
}


MODEL_CARD = "https://github.com/google-deepmind/tips"


def preset_metadata(name):
    """keras-hub metadata of a named preset: description, params, source."""
    from keras_tips import variants

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
    from keras_hub.src.utils.preset_utils import register_presets

    register_presets(
        {
            name: _ConvertOnLookup(name)
            for name in list(PRESETS) + list(EMBEDDED_PRESETS)
        },
        backbone_cls,
    )


def list_presets():
    """Names and descriptions of every named preset."""
    listing = {name: spec["description"] for name, spec in PRESETS.items()}
    listing.update(EMBEDDED_PRESETS)
    return listing


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
    from keras_hub import __version__ as installed

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
    """Converts a transformers checkpoint to `converted` unless it exists."""
    from keras_tips.transformers_checkpoint import (
        convert_transformers_to_preset,
    )

    if os.path.exists(os.path.join(converted, "config.json")):
        return converted
    try:
        convert_transformers_to_preset(directory, converted)
    except FileExistsError:
        # Converted concurrently by another process, or a broken leftover.
        if not os.path.exists(os.path.join(converted, "config.json")):
            raise FileExistsError(
                f"{converted} exists but holds no converted preset; delete "
                f"it to convert {handle} again."
            ) from None
    return converted


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
        return converted
    from keras_tips.transformers_checkpoint import is_transformers_directory

    local = download_hf_snapshot(repo_id)
    if not is_transformers_directory(local):
        return handle  # a keras-hub preset on the Hub: keras-hub loads it
    return _convert_transformers_once(local, converted, handle)


def resolve_preset(preset):
    """Maps a preset name to a local preset directory; other values pass.

    Named official presets are downloaded and converted on first use; the
    converted directory is cached, so later calls only load it. A
    `transformers` checkpoint (a local directory or an `hf://` handle) is
    converted into the cache the same way.
    """
    if isinstance(preset, os.PathLike):
        preset = os.fspath(preset)
    if not isinstance(preset, str):
        return preset
    if preset.lower().startswith("hf://"):
        return _resolve_hf_handle(preset)
    from keras_tips.transformers_checkpoint import is_transformers_directory

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
        return path
    if preset not in PRESETS:
        return preset
    converted = os.path.join(cache_dir(), "presets", preset)
    if os.path.exists(os.path.join(converted, "config.json")):
        return converted
    from keras_tips.convert import convert_to_preset

    files = fetch_official_files(
        preset, os.path.join(cache_dir(), "downloads")
    )
    spec = PRESETS[preset]
    convert_to_preset(
        files["vision"],
        files["text"],
        files["tokenizer"],
        converted,
        image_size=spec["image_size"],
    )
    return converted
