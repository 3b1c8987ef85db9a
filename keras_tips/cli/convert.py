"""`keras-tips convert`: official checkpoint files or a named preset to a
preset folder.
"""

import os

from keras_tips.cli.command import CommandError
from keras_tips.cli.command import add_command
from keras_tips.cli.command import add_image_size
from keras_tips.cli.inputs import check_image_size_option


def add_parser(commands):
    """Adds the `convert` subcommand to `commands` (argparse subparsers)."""
    parser = add_command(
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
    parser.add_argument("preset_name", nargs="?", metavar="PRESET",
                        help="named preset to download and convert")
    parser.add_argument("--vision", help="official *_vision.npz")
    parser.add_argument("--text", help="official *_text.npz")
    parser.add_argument("--tokenizer", help="SentencePiece tokenizer.model")
    parser.add_argument("--output", help="preset folder to write (default "
                        "for a named preset: the keras-tips cache)")
    parser.add_argument("--num-heads", type=int, default=None,
                        help="attention heads, for non-released widths")
    add_image_size(parser, "image size of the preset's converter (448)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output folder")


def run_convert(args):
    """Converts, prints the preset folder."""
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
        check_image_size_option(args.image_size)
        path = convert.convert_to_preset(
            args.vision, args.text, args.tokenizer, args.output,
            num_heads=args.num_heads, image_size=args.image_size or 448,
            overwrite=args.overwrite,
        )
    print(path)
    return 0
