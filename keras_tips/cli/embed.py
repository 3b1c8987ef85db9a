"""`keras-tips embed`: images or texts to a `.npy` file of embeddings."""

import os

from keras_tips.cli.command import CommandError
from keras_tips.cli.command import add_command
from keras_tips.cli.command import add_image_size
from keras_tips.cli.inputs import batches
from keras_tips.cli.inputs import check_images_exist
from keras_tips.cli.inputs import check_output
from keras_tips.cli.inputs import convert_images
from keras_tips.cli.inputs import load_preset
from keras_tips.cli.inputs import progress_bar
from keras_tips.cli.inputs import read_lines
from keras_tips.normalization import l2_normalize


def add_parser(commands):
    """Adds the `embed` subcommand to `commands` (argparse subparsers)."""
    embed = add_command(
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
    add_image_size(embed, "resize images to this size (default: preset's)")
    embed.add_argument("--batch-size", type=int, default=8)


def run_embed(args):
    """Embeds, writes the `.npy` file in input order."""
    import numpy as np
    from keras import ops

    from keras_tips.validation import check_text_inputs

    check_output(args.output, ".npy")
    texts = list(args.texts or [])
    if args.texts_file:
        texts += read_lines(args.texts_file, "--texts-file")
    if bool(args.images) == bool(texts):
        raise CommandError("give either --images or --texts/--texts-file")
    if args.batch_size < 1:
        raise CommandError(
            f"--batch-size must be positive; got {args.batch_size}"
        )
    backbone, tokenizer, converter = load_preset(
        args.preset, need_tokenizer=bool(texts), image_size=args.image_size
    )
    chunks = []
    if texts:
        progress = progress_bar(len(texts), "embedding texts")
        for batch in batches(texts, args.batch_size):
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
        check_images_exist(args.images)
        progress = progress_bar(len(args.images), "embedding images")
        for batch in batches(args.images, args.batch_size):
            images = convert_images(converter, batch)
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
        embeddings = ops.convert_to_numpy(
            l2_normalize(embeddings)
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.save(args.output, embeddings)
    print(f"wrote {args.output}: shape {embeddings.shape}")
    return 0
