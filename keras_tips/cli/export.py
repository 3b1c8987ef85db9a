"""`keras-tips export`: a TensorFlow SavedModel of a preset, for serving."""

import os

from keras_tips.cli.command import CommandError
from keras_tips.cli.command import add_command
from keras_tips.cli.command import add_image_size
from keras_tips.cli.inputs import check_image_size_option
from keras_tips.cli.inputs import load_preset


def add_parser(commands):
    """Adds the `export` subcommand to `commands` (argparse subparsers)."""
    export = add_command(
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
    add_image_size(export, "size of embed_image_bytes (default: preset's)")
    export.add_argument("--overwrite", action="store_true")


def run_export(args):
    """Writes the SavedModel (see `keras_tips.export`)."""
    from keras_tips.export import export_saved_model

    if os.path.exists(args.output) and os.listdir(args.output):
        if not args.overwrite:
            raise CommandError(
                f"{args.output} exists and is not empty; pass --overwrite"
            )
    check_image_size_option(args.image_size)
    backbone, tokenizer, converter = load_preset(args.preset)
    export_saved_model(
        backbone,
        args.output,
        tokenizer=tokenizer,
        image_converter=converter,
        image_size=args.image_size,
    )
    print(f"wrote SavedModel {args.output}")
    return 0
