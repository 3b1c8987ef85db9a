"""`keras-tips`: the command-line tool of keras-tips.

Subcommands:
- `convert`: official TIPS checkpoint files (or a named preset) to a preset
  directory.
- `embed`: images or texts to a `.npy` file of embeddings.
- `classify`: zero-shot classification of images among given labels.
- `segment`: zero-shot segmentation of an image into given labels; writes a
  coloured mask PNG.
- `pca`: the PCA picture of the patch embeddings of images (PNG).
- `export`: a TensorFlow SavedModel for serving.

Every subcommand takes `--preset` (a named preset such as `tips_v2_b14`, or
a preset directory; default `$KERAS_TIPS_PRESET` or `tips_v2_b14`) and
`--help`. Errors print one line and exit with status 1 (2 for bad usage).
The Keras backend is chosen with the `KERAS_BACKEND` environment variable.
"""

import argparse
import colorsys
import json
import os
import sys
import textwrap

DEFAULT_PRESET = "tips_v2_b14"
TEMPLATE_SETS = ("imagenet", "tcl", "single")


class CommandError(Exception):
    """A bad input reported as one line, exit status 1."""


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _progress(total, description):
    """A tqdm progress bar on stderr (shown on terminals only)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with keras-hub
        return _NoProgress()
    return tqdm(
        total=total, desc=description, unit="step", file=sys.stderr,
        disable=None, leave=False,
    )


class _NoProgress:
    def update(self, n=1):
        pass

    def close(self):
        pass


def read_image(path):
    """An image file as a uint8 RGB array `(H, W, 3)`."""
    import numpy as np
    from PIL import Image
    from PIL import ImageOps
    from PIL import UnidentifiedImageError

    if not os.path.isfile(path):
        raise CommandError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise CommandError(f"cannot read {path} as an image: {error}")


def write_png(path, array):
    from PIL import Image

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _check_output(path, suffix):
    if not path.lower().endswith(suffix):
        raise CommandError(f"--output must end with {suffix}: {path}")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CommandError(f"cannot write {path}: {directory} is not a folder")
    return path


def _load(preset, need_tokenizer=False, image_size=None):
    """Backbone, tokenizer and image converter of `--preset`.

    `image_size` (`--image-size`, checked here) replaces the converter's.
    """
    from keras_tips.image_converter import TIPSImageConverter
    from keras_tips.presets import load_preset_components

    _check_image_size(image_size)
    if not isinstance(preset, str) or not preset:
        raise CommandError("--preset is empty")
    try:
        backbone, tokenizer, converter = load_preset_components(preset)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise CommandError(f"cannot load preset {preset!r}: {_one_line(error)}")
    if need_tokenizer and tokenizer is None:
        raise CommandError(f"preset {preset!r} has no tokenizer")
    if image_size is not None:
        converter = TIPSImageConverter(image_size=(image_size, image_size))
    elif converter is None or converter.image_size is None:
        converter = TIPSImageConverter(image_size=(448, 448))
    return backbone, tokenizer, converter


def _check_image_size(value):
    if value is not None and (value <= 0 or value % 14):
        raise CommandError(
            f"--image-size must be a positive multiple of 14; got {value}"
        )
    return value


def _check_images_exist(paths):
    for path in paths:
        if not os.path.isfile(path):
            raise CommandError(f"image not found: {path}")


def _labels(args):
    labels = list(args.labels or [])
    if args.labels_file:
        labels += _read_lines(args.labels_file, "--labels-file")
    if not labels:
        raise CommandError("give class names with --labels or --labels-file")
    return labels


def _read_lines(path, option):
    if not os.path.isfile(path):
        raise CommandError(f"{option} not found: {path}")
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    lines = [line for line in lines if line]
    if not lines:
        raise CommandError(f"{option} {path} has no non-empty lines")
    return lines


def _templates(args, default):
    from keras_tips.tasks import zero_shot

    if args.template:
        return tuple(args.template)
    name = args.templates or default
    return {
        "imagenet": zero_shot.IMAGENET_PROMPT_TEMPLATES,
        "tcl": zero_shot.TCL_PROMPT_TEMPLATES,
        "single": zero_shot.SINGLE_PROMPT_TEMPLATE,
    }[name]


def _zero_shot_task(task_class, args, default_templates, backbone, tokenizer,
                    labels, **kwargs):
    """A zero-shot task on `labels`, with the prompts of `--template(s)`."""
    from keras_tips.tasks.zero_shot import class_text_embeddings

    templates = _templates(args, default_templates)
    try:
        embeddings = class_text_embeddings(
            backbone, tokenizer, labels, templates
        )
    except (TypeError, ValueError) as error:
        raise CommandError(_one_line(error))
    return task_class(backbone, labels, prompt_templates=templates,
                      class_embeddings=embeddings, **kwargs)


def _convert_images(converter, paths, progress=None):
    """Images at `paths` through the image converter, as one float batch."""
    import numpy as np
    from keras import ops

    batch = []
    for path in paths:
        batch.append(ops.convert_to_numpy(converter(read_image(path))))
        if progress is not None:
            progress.update(1)
    return np.stack(batch)


def _batches(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def class_palette(num_classes):
    """Distinct RGB colours (uint8 `(num_classes, 3)`), golden-ratio hues."""
    import numpy as np

    colours = np.zeros((num_classes, 3), dtype="uint8")
    for i in range(num_classes):
        hue = (0.1 + i * 0.61803398875) % 1.0
        saturation = 0.65 + 0.35 * ((i * 3) % 4) / 3
        value = 0.75 + 0.25 * ((i * 5) % 3) / 2
        red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
        colours[i] = [round(red * 255), round(green * 255), round(blue * 255)]
    return colours


def _one_line(error):
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------


def run_convert(args):
    from keras_tips import convert
    from keras_tips import presets

    if args.preset_name:
        if args.vision or args.text or args.tokenizer:
            raise CommandError(
                "give either a preset name or --vision/--text/--tokenizer"
            )
        if args.preset_name not in presets.PRESETS:
            raise CommandError(
                f"unknown preset {args.preset_name!r}; choose from "
                f"{sorted(presets.PRESETS)}"
            )
        if args.output is None:
            path = presets.resolve_preset(args.preset_name)
        else:
            files = presets.fetch_official_files(
                args.preset_name,
                os.path.join(presets.cache_dir(), "downloads"),
            )
            path = convert.convert_to_preset(
                files["vision"], files["text"], files["tokenizer"],
                args.output,
                image_size=presets.PRESETS[args.preset_name]["image_size"],
                overwrite=args.overwrite,
            )
    else:
        missing = [
            option
            for option, value in (
                ("--vision", args.vision),
                ("--text", args.text),
                ("--tokenizer", args.tokenizer),
                ("--output", args.output),
            )
            if not value
        ]
        if missing:
            raise CommandError(
                f"missing {', '.join(missing)} (or give a preset name)"
            )
        _check_image_size(args.image_size)
        path = convert.convert_to_preset(
            args.vision, args.text, args.tokenizer, args.output,
            num_heads=args.num_heads, image_size=args.image_size or 448,
            overwrite=args.overwrite,
        )
    print(path)
    return 0


def run_embed(args):
    import numpy as np
    from keras import ops

    from keras_tips.validation import check_text_inputs

    _check_output(args.output, ".npy")
    texts = list(args.texts or [])
    if args.texts_file:
        texts += _read_lines(args.texts_file, "--texts-file")
    if bool(args.images) == bool(texts):
        raise CommandError("give either --images or --texts/--texts-file")
    if args.batch_size < 1:
        raise CommandError(
            f"--batch-size must be positive; got {args.batch_size}"
        )
    backbone, tokenizer, converter = _load(
        args.preset, need_tokenizer=bool(texts), image_size=args.image_size
    )
    chunks = []
    if texts:
        progress = _progress(len(texts), "embedding texts")
        for batch in _batches(texts, args.batch_size):
            tokens = tokenizer.tokenize_with_padding_mask(batch)
            inputs = check_text_inputs(
                {
                    "token_ids": np.asarray(tokens["token_ids"]),
                    "padding_mask": np.asarray(tokens["padding_mask"]),
                },
                backbone.text_encoder.vocabulary_size,
            )
            chunks.append(
                np.asarray(backbone.text_encoder.predict_on_batch(inputs))
            )
            progress.update(len(batch))
        progress.close()
    else:
        _check_images_exist(args.images)
        progress = _progress(len(args.images), "embedding images")
        for batch in _batches(args.images, args.batch_size):
            images = _convert_images(converter, batch)
            outputs = backbone.vision_encoder.predict_on_batch(images)
            if args.kind == "patch":
                values = outputs["patch_embeddings"]
            else:
                values = outputs["cls_embeddings"]
                if args.kind == "first":
                    values = values[:, 0]
                elif args.kind == "second":
                    values = values[:, 1]
            chunks.append(ops.convert_to_numpy(values))
            progress.update(len(batch))
        progress.close()
    embeddings = np.concatenate(chunks, axis=0).astype("float32")
    if args.normalize:
        norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
        embeddings = embeddings / np.maximum(norms, 1e-12)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.save(args.output, embeddings)
    print(f"wrote {args.output}: shape {embeddings.shape}")
    return 0


def run_classify(args):
    from keras_tips.tasks.zero_shot import TIPSZeroShotClassifier

    if args.output:
        _check_output(args.output, ".json")
    if args.top_k < 1:
        raise CommandError(f"--top-k must be positive; got {args.top_k}")
    _check_images_exist(args.images)
    labels = _labels(args)
    backbone, tokenizer, converter = _load(
        args.preset, need_tokenizer=True, image_size=args.image_size
    )
    classifier = _zero_shot_task(
        TIPSZeroShotClassifier, args, "imagenet", backbone, tokenizer, labels,
        cls_token=args.cls,
    )
    results = []
    progress = _progress(len(args.images), "classifying")
    for path in args.images:
        images = _convert_images(converter, [path])
        top = classifier.classify(images, top_k=args.top_k)[0]
        results.append(
            {
                "image": path,
                "labels": [
                    {"label": label, "probability": round(p, 6)}
                    for label, p in top
                ],
            }
        )
        progress.update(1)
    progress.close()
    for result in results:
        ranked = ", ".join(
            f"{item['label']} ({100 * item['probability']:.1f}%)"
            for item in result["labels"]
        )
        print(f"{result['image']}: {ranked}")
    if args.output:
        folder = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(folder, exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


def run_segment(args):
    import numpy as np

    from keras_tips.tasks.segmentation import TIPSZeroShotSegmenter

    _check_output(args.output, ".png")
    if args.overlay:
        _check_output(args.overlay, ".png")
    if args.legend:
        _check_output(args.legend, ".json")
    labels = _labels(args)
    image = read_image(args.image)
    backbone, tokenizer, converter = _load(args.preset, need_tokenizer=True)
    default_side = int(converter.image_size[0])
    short_side = None if args.no_resize else (args.short_side or default_side)
    window = None if args.whole else (args.window or default_side)
    for option, value in (
        ("--short-side", short_side),
        ("--window", window),
        ("--stride", args.stride),
    ):
        if value is not None and value < 1:
            raise CommandError(f"{option} must be positive; got {value}")
    segmenter = _zero_shot_task(
        TIPSZeroShotSegmenter, args, "tcl", backbone, tokenizer, labels
    )
    progress = _progress(None, "segmenting")

    def callback(done, total):
        progress.total = total
        progress.update(1)

    masks = segmenter.segment_masks(
        image,
        short_side=short_side,
        window_size=window,
        stride=args.stride,
        callback=callback,
    )
    progress.close()
    mask = masks[0]
    palette = class_palette(len(labels))
    coloured = palette[mask]
    write_png(args.output, coloured)
    if args.overlay:
        blend = 0.5 * image.astype("float32") + 0.5 * coloured
        write_png(args.overlay, np.round(blend).astype("uint8"))
    counts = np.bincount(mask.ravel(), minlength=len(labels))
    legend = [
        {
            "index": i,
            "label": label,
            "color": "#%02x%02x%02x" % tuple(int(c) for c in palette[i]),
            "fraction": round(float(counts[i]) / mask.size, 6),
        }
        for i, label in enumerate(labels)
    ]
    for entry in legend:
        print(
            f"{entry['index']}\t{entry['color']}\t"
            f"{100 * entry['fraction']:.1f}%\t{entry['label']}"
        )
    if args.legend:
        with open(args.legend, "w", encoding="utf-8") as handle:
            json.dump(legend, handle, indent=2)
    print(f"wrote {args.output}: {mask.shape[1]}x{mask.shape[0]}")
    return 0


def run_pca(args):
    import numpy as np
    from PIL import Image

    from keras_tips.visualization import pca_images

    _check_output(args.output, ".png")
    _check_images_exist(args.images)
    backbone, _, converter = _load(args.preset, image_size=args.image_size)
    height, width = (int(s) for s in converter.image_size)
    progress = _progress(len(args.images), "encoding")
    images, patches = [], []
    for batch in _batches(args.images, 8):
        pixels = _convert_images(converter, batch)
        images.append(pixels)
        patches.append(
            np.asarray(
                backbone.vision_encoder.predict_on_batch(pixels)[
                    "patch_embeddings"
                ]
            )
        )
        progress.update(len(batch))
    progress.close()
    images = np.concatenate(images)
    patches = np.concatenate(patches)
    # One PCA over the patches of all images: consistent colours.
    pictures = pca_images(patches, image_size=(height, width))
    rows = []
    for pixels, picture in zip(images, pictures):
        if args.pca_only:
            rows.append(picture)
        else:
            photo = np.clip(np.round(pixels * 255.0), 0, 255).astype("uint8")
            gap = np.full((height, 4, 3), 255, "uint8")
            rows.append(np.concatenate([photo, gap, picture], axis=1))
    gap = np.full((4, rows[0].shape[1], 3), 255, "uint8")
    sheet = rows[0]
    for row in rows[1:]:
        sheet = np.concatenate([sheet, gap, row], axis=0)
    if args.scale != 1:
        if args.scale < 1:
            raise CommandError(f"--scale must be at least 1; got {args.scale}")
        sheet = np.asarray(
            Image.fromarray(sheet).resize(
                (sheet.shape[1] * args.scale, sheet.shape[0] * args.scale),
                Image.Resampling.NEAREST,
            )
        )
    write_png(args.output, sheet)
    print(f"wrote {args.output}: {sheet.shape[1]}x{sheet.shape[0]}")
    return 0


def run_export(args):
    from keras_tips.export import export_saved_model

    if os.path.exists(args.output) and os.listdir(args.output):
        if not args.overwrite:
            raise CommandError(
                f"{args.output} exists and is not empty; pass --overwrite"
            )
    _check_image_size(args.image_size)
    backbone, tokenizer, converter = _load(args.preset)
    export_saved_model(
        backbone,
        args.output,
        tokenizer=tokenizer,
        image_converter=converter,
        image_size=args.image_size,
    )
    print(f"wrote SavedModel {args.output}")
    return 0


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps example layout; shows defaults that are set and not stated."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "default" not in text
            and default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def _wrap(text):
    return textwrap.fill(" ".join(text.split()), width=78)


def _add_command(commands, name, handler, help, description, epilog,
                 preset=True):
    """A subcommand's parser, with `--preset` unless `preset=False`."""
    parser = commands.add_parser(
        name, formatter_class=_Formatter, help=help,
        description=_wrap(description), epilog=epilog,
    )
    parser.set_defaults(handler=handler)
    if preset:
        parser.add_argument(
            "--preset",
            default=os.environ.get("KERAS_TIPS_PRESET", DEFAULT_PRESET),
            help="named preset (see keras_tips.list_presets()) or preset "
                 "folder",
        )
    return parser


def _add_image_files(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (JPEG, PNG, ...)")


def _add_image_size(parser, help=None):
    parser.add_argument("--image-size", type=int, default=None, help=help)


def _add_labels(parser):
    parser.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="class names")
    parser.add_argument("--labels-file", metavar="FILE",
                        help="text file with one class name per line")
    parser.add_argument(
        "--templates", choices=TEMPLATE_SETS, default=None,
        help="prompt template set (default: imagenet for classify, tcl for "
             "segment)",
    )
    parser.add_argument(
        "--template", action="append", metavar="TEXT",
        help="custom prompt template with one {} (repeatable; overrides "
             "--templates)",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-tips",
        description=_wrap(
            "TIPS image-text models (Google DeepMind) on Keras 3: embeddings, "
            "zero-shot classification and segmentation, PCA pictures, "
            "conversion and SavedModel export. The Keras backend comes from "
            "the KERAS_BACKEND environment variable."
        ),
        formatter_class=_Formatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    convert = _add_command(
        commands, "convert", run_convert, preset=False,
        help="official checkpoint files -> preset folder",
        description=(
            "Convert official TIPS .npz checkpoints and tokenizer into a "
            "keras-hub preset folder, or download and convert a named preset."
        ),
        epilog=(
            "examples:\n"
            "  keras-tips convert --vision tips_v2_oss_b14_vision.npz "
            "--text tips_v2_oss_b14_text.npz \\\n"
            "      --tokenizer tokenizer.model --output tips_v2_b14\n"
            "  keras-tips convert tips_v2_b14"
        ),
    )
    convert.add_argument("preset_name", nargs="?", metavar="PRESET",
                         help="named preset to download and convert")
    convert.add_argument("--vision", help="official *_vision.npz")
    convert.add_argument("--text", help="official *_text.npz")
    convert.add_argument("--tokenizer", help="SentencePiece tokenizer.model")
    convert.add_argument("--output", help="preset folder to write (default "
                         "for a named preset: the keras-tips cache)")
    convert.add_argument("--num-heads", type=int, default=None,
                         help="attention heads, for non-released widths")
    _add_image_size(convert, "image size of the preset's converter (448)")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace an existing output folder")

    embed = _add_command(
        commands, "embed", run_embed,
        help="images or texts -> .npy embeddings",
        description=(
            "Embed images (class-token or patch embeddings) or texts and "
            "save them as a .npy array, in input order."
        ),
        epilog=(
            "examples:\n"
            "  keras-tips embed --images a.jpg b.png --output images.npy\n"
            "  keras-tips embed --texts 'a cat' 'a dog' --normalize "
            "--output texts.npy"
        ),
    )
    embed.add_argument("--images", nargs="+", metavar="IMAGE",
                       help="image files to embed")
    embed.add_argument("--texts", nargs="+", metavar="TEXT",
                       help="texts to embed")
    embed.add_argument("--texts-file", metavar="FILE",
                       help="text file with one text per line")
    embed.add_argument("--output", required=True, help=".npy file to write")
    embed.add_argument(
        "--kind", choices=("cls", "first", "second", "patch"), default="cls",
        help="image output: both class tokens (N, 2, D), the first or "
             "second (N, D), or patch embeddings (N, h, w, D)",
    )
    embed.add_argument("--normalize", action="store_true",
                       help="L2-normalise the embeddings")
    _add_image_size(embed, "resize images to this size (default: preset's)")
    embed.add_argument("--batch-size", type=int, default=8)

    classify = _add_command(
        commands, "classify", run_classify,
        help="zero-shot image classification",
        description=(
            "Rank the given labels for each image (zero-shot: the labels are "
            "embedded through prompt templates)."
        ),
        epilog=(
            "example:\n"
            "  keras-tips classify cat.jpg --labels cat dog car --top-k 2"
        ),
    )
    _add_image_files(classify)
    _add_labels(classify)
    classify.add_argument("--cls", choices=("first", "second", "both"),
                          default="first",
                          help="class token compared with the labels")
    classify.add_argument("--top-k", type=int, default=5)
    _add_image_size(classify)
    classify.add_argument("--output", help="also write the results as JSON")

    segment = _add_command(
        commands, "segment", run_segment,
        help="zero-shot segmentation -> coloured mask PNG",
        description=(
            "Label every pixel of an image with one of the given labels "
            "(zero-shot, sliding windows as the official evaluation) and "
            "write a coloured mask PNG of the image's size. Prints the "
            "legend: index, colour, coverage, label."
        ),
        epilog=(
            "example:\n"
            "  keras-tips segment street.jpg --labels road car tree sky "
            "person --output mask.png"
        ),
    )
    segment.add_argument("image", metavar="IMAGE",
                         help="image file (JPEG, PNG, ...), any size")
    _add_labels(segment)
    segment.add_argument("--output", required=True, help="mask PNG to write")
    segment.add_argument("--overlay", help="also write the mask blended "
                         "over the image (PNG)")
    segment.add_argument("--legend", help="also write the legend as JSON")
    segment.add_argument("--short-side", type=int, default=None,
                         help="resize so the short side has this length "
                              "(default: the preset's image size)")
    segment.add_argument("--no-resize", action="store_true",
                         help="keep the image resolution")
    segment.add_argument("--window", type=int, default=None,
                         help="sliding-window size (default: the preset's "
                              "image size)")
    segment.add_argument("--stride", type=int, default=None,
                         help="sliding-window step (default: 3/4 window)")
    segment.add_argument("--whole", action="store_true",
                         help="one pass over the whole image, no windows")

    pca = _add_command(
        commands, "pca", run_pca,
        help="PCA picture of patch embeddings -> PNG",
        description=(
            "Colour the patch embeddings of the images by their first three "
            "principal components (one PCA over all images, so colours "
            "agree) and write one PNG: a row per image, the image and its "
            "PCA picture."
        ),
        epilog="example:\n  keras-tips pca a.jpg b.jpg --output pca.png",
    )
    _add_image_files(pca)
    pca.add_argument("--output", required=True, help="PNG to write")
    _add_image_size(pca, "model input size (default: the preset's)")
    pca.add_argument("--pca-only", action="store_true",
                     help="leave out the input images")
    pca.add_argument("--scale", type=int, default=1,
                     help="enlarge the sheet by this integer factor")

    export = _add_command(
        commands, "export", run_export,
        help="TensorFlow SavedModel for serving",
        description=(
            "Export the preset as a TensorFlow SavedModel with signatures "
            "embed_images, embed_image_bytes, embed_texts and "
            "embed_token_ids (see keras_tips.export). Runs on the jax and "
            "tensorflow backends; on torch it re-runs itself with "
            "tensorflow."
        ),
        epilog="example:\n  keras-tips export --output tips_saved_model",
    )
    export.add_argument("--output", required=True, help="folder to write")
    _add_image_size(export, "size of embed_image_bytes (default: preset's)")
    export.add_argument("--overwrite", action="store_true")
    return parser


def main(argv=None):
    """Entry point of the `keras-tips` console script; returns the status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("keras-tips: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line for users; details on request
        if os.environ.get("KERAS_TIPS_DEBUG"):
            raise
        print(
            f"keras-tips {args.command}: error: {_one_line(error)}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
