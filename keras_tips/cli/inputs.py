"""What the `keras-tips` subcommands read and write: files, images, presets.

Each check raises `CommandError` with the one-line message the user sees.
"""

import os
import sys

from keras_tips.cli.command import CommandError
from keras_tips.cli.command import one_line


def progress_bar(total, description):
    """A tqdm progress bar on stderr (shown on terminals only)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with keras-hub
        return NoProgress()
    return tqdm(
        total=total, desc=description, unit="step", file=sys.stderr,
        disable=None, leave=False,
    )


class NoProgress:
    """What `progress_bar` returns without tqdm: a bar that shows nothing."""

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
    """Writes a uint8 array as a PNG, creating its folder."""
    from PIL import Image

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def check_output(path, suffix):
    """`--output`-like `path` if it ends with `suffix` and can be written."""
    if not path.lower().endswith(suffix):
        raise CommandError(f"--output must end with {suffix}: {path}")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CommandError(f"cannot write {path}: {directory} is not a folder")
    return path


def load_preset(preset, need_tokenizer=False, image_size=None):
    """Backbone, tokenizer and image converter of `--preset`.

    `image_size` (`--image-size`, checked here) replaces the converter's.
    """
    from keras_tips.image_converter import TIPSImageConverter
    from keras_tips.presets import load_preset_components

    check_image_size_option(image_size)
    if not isinstance(preset, str) or not preset:
        raise CommandError("--preset is empty")
    try:
        backbone, tokenizer, converter = load_preset_components(preset)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise CommandError(f"cannot load preset {preset!r}: {one_line(error)}")
    if need_tokenizer and tokenizer is None:
        raise CommandError(f"preset {preset!r} has no tokenizer")
    if image_size is not None:
        converter = TIPSImageConverter(image_size=(image_size, image_size))
    elif converter is None or converter.image_size is None:
        converter = TIPSImageConverter(image_size=(448, 448))
    return backbone, tokenizer, converter


def check_image_size_option(value):
    """`--image-size`: None, or a side accepted by `check_image_size`."""
    from keras_tips.validation import check_image_size

    if value is None:
        return None
    try:
        check_image_size(value)
    except ValueError:
        raise CommandError(
            f"--image-size must be a positive multiple of 14; got {value}"
        )
    return value


def check_images_exist(paths):
    """Raises `CommandError` for the first path that is not a file."""
    for path in paths:
        if not os.path.isfile(path):
            raise CommandError(f"image not found: {path}")


def read_lines(path, option):
    """The non-empty, stripped lines of the file given to `option`."""
    if not os.path.isfile(path):
        raise CommandError(f"{option} not found: {path}")
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    lines = [line for line in lines if line]
    if not lines:
        raise CommandError(f"{option} {path} has no non-empty lines")
    return lines


def convert_images(converter, paths, progress=None):
    """Images at `paths` through the image converter, as one float batch."""
    import numpy as np
    from keras import ops

    batch = []
    for path in paths:
        batch.append(ops.convert_to_numpy(converter(read_image(path))))
        if progress is not None:
            progress.update(1)
    return np.stack(batch)


def batches(items, size):
    """Consecutive slices of `items` of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
