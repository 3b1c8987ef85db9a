"""`keras-tips pca`: the PCA picture of the patch embeddings of images."""

from keras_tips.cli.command import CommandError
from keras_tips.cli.command import add_command
from keras_tips.cli.command import add_image_files
from keras_tips.cli.command import add_image_size
from keras_tips.cli.inputs import batches
from keras_tips.cli.inputs import check_images_exist
from keras_tips.cli.inputs import check_output
from keras_tips.cli.inputs import convert_images
from keras_tips.cli.inputs import load_preset
from keras_tips.cli.inputs import progress_bar
from keras_tips.cli.inputs import write_png


def add_parser(commands):
    """Adds the `pca` subcommand to `commands` (argparse subparsers)."""
    pca = add_command(
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
    add_image_files(pca)
    pca.add_argument("--output", required=True, help="PNG to write")
    add_image_size(pca, "model input size (default: the preset's)")
    pca.add_argument("--pca-only", action="store_true",
                     help="leave out the input images")
    pca.add_argument("--scale", type=int, default=1,
                     help="enlarge the sheet by this integer factor")


def run_pca(args):
    """Writes one PNG: a row per image, the image and its PCA picture."""
    import numpy as np
    from PIL import Image

    from keras_tips.visualization import pca_images

    check_output(args.output, ".png")
    check_images_exist(args.images)
    backbone, _, converter = load_preset(args.preset, image_size=args.image_size)
    height, width = (int(s) for s in converter.image_size)
    progress = progress_bar(len(args.images), "encoding")
    images, patches = [], []
    for batch in batches(args.images, 8):
        pixels = convert_images(converter, batch)
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
