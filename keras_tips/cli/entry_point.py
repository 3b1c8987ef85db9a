"""The `keras-tips` entry point: assembles the parser and runs a subcommand.

Each subcommand module (`convert`, `embed`, `zero_shot` for classify and
segment, `pca`, `export`) adds its own arguments next to its handler;
`build_parser` puts them together in the order `--help` lists them.
"""

import argparse
import os
import sys

from keras_tips.cli import convert
from keras_tips.cli import embed
from keras_tips.cli import export
from keras_tips.cli import pca
from keras_tips.cli import zero_shot
from keras_tips.cli.command import HelpFormatter
from keras_tips.cli.command import one_line
from keras_tips.cli.command import wrap


def build_parser():
    """The `keras-tips` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="keras-tips",
        description=wrap(
            "TIPS image-text models (Google DeepMind) on Keras 3: embeddings, "
            "zero-shot classification and segmentation, PCA pictures, "
            "conversion and SavedModel export. The Keras backend comes from "
            "the KERAS_BACKEND environment variable."
        ),
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    convert.add_parser(commands)
    embed.add_parser(commands)
    zero_shot.add_classify_parser(commands)
    zero_shot.add_segment_parser(commands)
    pca.add_parser(commands)
    export.add_parser(commands)
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
            f"keras-tips {args.command}: error: {one_line(error)}",
            file=sys.stderr,
        )
        return 1
