"""How a `keras-tips` subcommand is declared and how it reports errors.

A subcommand module adds its parser with `add_command` (which gives it
`--preset`, the help layout and its handler) and the shared arguments
below; its handler raises `CommandError` for a bad input, which `main`
prints as one line with exit status 1.
"""

import argparse
import os
import textwrap

DEFAULT_PRESET = "tips_v2_b14"


class CommandError(Exception):
    """A bad input reported as one line, exit status 1."""


def one_line(error):
    """The message of `error` on one line."""
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
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


def wrap(text):
    """`text` as a paragraph of at most 78 columns."""
    return textwrap.fill(" ".join(text.split()), width=78)


def add_command(commands, name, handler, help, description, epilog,
                preset=True):
    """A subcommand's parser, with `--preset` unless `preset=False`."""
    parser = commands.add_parser(
        name, formatter_class=HelpFormatter, help=help,
        description=wrap(description), epilog=epilog,
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


def add_image_files(parser):
    """The positional image files."""
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (JPEG, PNG, ...)")


def add_image_size(parser, help=None):
    """`--image-size`, checked by `inputs.check_image_size_option`."""
    parser.add_argument("--image-size", type=int, default=None, help=help)
