"""Convert official TIPS checkpoints into a keras-hub preset directory.

Usage:
    python tools/convert_checkpoint.py \
        --vision tips_v2_oss_b14_vision.npz --text tips_v2_oss_b14_text.npz \
        --tokenizer tokenizer.model --output presets/tips_v2_b14

Architecture, position-embedding grid and SwiGLU are read from the arrays;
head counts come from the released variant of that width (`--num_heads`
overrides, for non-official checkpoints). Then
`keras_tips.TIPSBackbone.from_preset("presets/tips_v2_b14")` loads it.
"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vision", required=True, help="*_vision.npz file")
    parser.add_argument("--text", required=True, help="*_text.npz file")
    parser.add_argument("--tokenizer", required=True, help="tokenizer.model")
    parser.add_argument("--output", required=True, help="preset directory")
    parser.add_argument("--num_heads", type=int, default=None)
    parser.add_argument("--image_size", type=int, default=448)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    from keras_tips.convert import convert_to_preset

    try:
        path = convert_to_preset(
            args.vision,
            args.text,
            args.tokenizer,
            args.output,
            num_heads=args.num_heads,
            image_size=args.image_size,
            overwrite=args.overwrite,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote TIPS preset to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
