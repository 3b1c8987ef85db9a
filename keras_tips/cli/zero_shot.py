"""`keras-tips classify` and `keras-tips segment`: zero-shot tasks on labels.

Both embed the given labels through prompt templates (`--templates`,
`--template`); `classify` ranks them per image, `segment` labels every
pixel and writes a coloured mask.
"""

import colorsys
import json
import os

from keras_tips.cli.command import CommandError
from keras_tips.cli.command import add_command
from keras_tips.cli.command import add_image_files
from keras_tips.cli.command import add_image_size
from keras_tips.cli.command import one_line
from keras_tips.cli.inputs import check_images_exist
from keras_tips.cli.inputs import check_output
from keras_tips.cli.inputs import convert_images
from keras_tips.cli.inputs import load_preset
from keras_tips.cli.inputs import progress_bar
from keras_tips.cli.inputs import read_image
from keras_tips.cli.inputs import read_lines
from keras_tips.cli.inputs import write_png

TEMPLATE_SETS = ("imagenet", "tcl", "single")


def add_label_arguments(parser):
    """`--labels`, `--labels-file` and the prompt template options."""
    parser.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="class names; 'sky|clouds' names one class by "
                             "synonyms, scored by the best of them")
    parser.add_argument("--labels-file", metavar="FILE",
                        help="text file with one class name (or "
                             "'|'-separated synonyms) per line")
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


def labels_of(args):
    """The class names of `--labels` and `--labels-file`."""
    labels = list(args.labels or [])
    if args.labels_file:
        labels += read_lines(args.labels_file, "--labels-file")
    if not labels:
        raise CommandError("give class names with --labels or --labels-file")
    return labels


def label_groups(labels):
    """The tasks' `class_names` for `labels`: 'a|b' is a class named a or b."""
    groups = []
    for label in labels:
        names = [name.strip() for name in label.split("|")]
        if not all(names):
            raise CommandError(f"label {label!r} has an empty synonym")
        groups.append(names if len(names) > 1 else names[0])
    return groups


def templates_of(args, default):
    """The prompt templates of `--template` or `--templates`."""
    from keras_tips.tasks import zero_shot

    if args.template:
        return tuple(args.template)
    name = args.templates or default
    return {
        "imagenet": zero_shot.IMAGENET_PROMPT_TEMPLATES,
        "tcl": zero_shot.TCL_PROMPT_TEMPLATES,
        "single": zero_shot.SINGLE_PROMPT_TEMPLATE,
    }[name]


def zero_shot_task(task_class, args, default_templates, backbone, tokenizer,
                   labels, **kwargs):
    """A zero-shot task on `labels`, with the prompts of `--template(s)`."""
    from keras_tips.tasks.zero_shot import check_class_name_groups
    from keras_tips.tasks.zero_shot import class_text_embeddings
    from keras_tips.tasks.zero_shot import flat_class_names

    templates = templates_of(args, default_templates)
    try:
        groups = check_class_name_groups(label_groups(labels))
        embeddings = class_text_embeddings(
            backbone, tokenizer, flat_class_names(groups), templates
        )
    except (TypeError, ValueError) as error:
        raise CommandError(one_line(error))
    return task_class(backbone, groups, prompt_templates=templates,
                      class_embeddings=embeddings, **kwargs)


def add_classify_parser(commands):
    """Adds the `classify` subcommand to `commands` (argparse subparsers)."""
    classify = add_command(
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
    add_image_files(classify)
    add_label_arguments(classify)
    classify.add_argument("--cls", choices=("first", "second", "both"),
                          default="first",
                          help="class token compared with the labels")
    classify.add_argument("--top-k", type=int, default=5)
    add_image_size(classify)
    classify.add_argument("--output", help="also write the results as JSON")


def run_classify(args):
    """Prints the top labels per image; optionally writes them as JSON."""
    from keras_tips.tasks.zero_shot import TIPSZeroShotClassifier
    from keras_tips.tasks.zero_shot import display_class_name

    if args.output:
        check_output(args.output, ".json")
    if args.top_k < 1:
        raise CommandError(f"--top-k must be positive; got {args.top_k}")
    check_images_exist(args.images)
    labels = labels_of(args)
    backbone, tokenizer, converter = load_preset(
        args.preset, need_tokenizer=True, image_size=args.image_size
    )
    classifier = zero_shot_task(
        TIPSZeroShotClassifier, args, "imagenet", backbone, tokenizer, labels,
        cls_token=args.cls,
    )
    # `classify` names a class of synonyms by its first name; report the
    # label as it was given.
    given = {
        display_class_name(group): label
        for group, label in zip(classifier.class_names, labels)
    }
    results = []
    progress = progress_bar(len(args.images), "classifying")
    for path in args.images:
        images = convert_images(converter, [path])
        top = classifier.classify(images, top_k=args.top_k)[0]
        results.append(
            {
                "image": path,
                "labels": [
                    {"label": given[name], "probability": round(p, 6)}
                    for name, p in top
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


def add_segment_parser(commands):
    """Adds the `segment` subcommand to `commands` (argparse subparsers)."""
    segment = add_command(
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
    add_label_arguments(segment)
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


def run_segment(args):
    """Writes the mask (and overlay, legend); prints the legend."""
    import numpy as np

    from keras_tips.tasks.segmentation import TIPSZeroShotSegmenter

    check_output(args.output, ".png")
    if args.overlay:
        check_output(args.overlay, ".png")
    if args.legend:
        check_output(args.legend, ".json")
    labels = labels_of(args)
    image = read_image(args.image)
    backbone, tokenizer, converter = load_preset(args.preset, need_tokenizer=True)
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
    segmenter = zero_shot_task(
        TIPSZeroShotSegmenter, args, "tcl", backbone, tokenizer, labels
    )
    progress = progress_bar(None, "segmenting")

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
