"""Train a SentencePiece model on the captions of TFRecord shards.

For pretraining on your own data with a vocabulary of its own. The model
uses the official TIPS special ids (pad 0, eos 1, unk 2, no BOS) and is
trained on lowercased text, as `TIPSTokenizer` lowercases its input.

By default it is a unigram model. On small caption sets with file names
in them (like the synthetic scenes' noisy captions, "IMG_1234.jpg") the
unigram model spends its vocabulary on number fragments ("_12", "34.")
and splits even frequent words into shared fragments ("red" -> "r" +
"ed", "blue" -> "bl" + "u" + "e", "black" -> "bl" + "ack"), so captions
take more tokens; `--model_type bpe --split_digits` keeps frequent words
whole. The tool prints how many tokens the captions take, and which
share of them a text length would cut (`--text_length`).

Usage:
    python -m tools.train_tokenizer --data 'data/train-*.tfrecord' \
        --vocab_size 1000 --output tokenizer.model
"""

import argparse
import glob
import io
import os
import sys
import tempfile

CAPTION_FEATURES = ("caption_noisy", "caption_synthetic")


def iter_captions(file_pattern, max_records=None):
    """Yields every caption string of the shards matching `file_pattern`."""
    import tensorflow as tf

    files = sorted(glob.glob(file_pattern))
    if not files:
        raise FileNotFoundError(f"No files match {file_pattern!r}.")
    count = 0
    for record in tf.data.TFRecordDataset(files):
        example = tf.train.Example.FromString(record.numpy())
        for name in CAPTION_FEATURES:
            feature = example.features.feature.get(name)
            if feature is None:
                continue
            for value in feature.bytes_list.value:
                text = value.decode("utf-8", errors="replace").strip()
                if text:
                    yield text
        count += 1
        if max_records and count >= max_records:
            return


MODEL_TYPES = ("bpe", "unigram")


def train_sentencepiece(texts, output_path, vocab_size=1000, seed=0,
                        model_type="unigram", split_digits=False):
    """Trains a SentencePiece model; writes it atomically.

    Args:
        texts: iterable of strings (lowercased here).
        output_path: where the `.model` file goes.
        vocab_size: vocabulary size; lowered automatically (by factors of
            0.8) when the text is too small to support it.
        seed: unused by SentencePiece's trainer beyond input order, kept for
            reproducible call sites.
        model_type: `"unigram"` (default) or `"bpe"`.
        split_digits: every digit its own piece, so that numbers do not
            take up the vocabulary.

    Returns:
        The vocabulary size actually trained.
    """
    import sentencepiece as spm

    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"`model_type` must be one of {MODEL_TYPES}; received "
            f"{model_type!r}."
        )
    sentences = [text.lower() for text in texts]
    if not sentences:
        raise ValueError("No captions to train a tokenizer on.")
    # Only a non-default option goes to the trainer (it is recorded in the
    # model file, which otherwise stays byte for byte what it was).
    options = {"split_digits": True} if split_digits else {}
    model = io.BytesIO()
    size = int(vocab_size)
    while True:
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=model,
                vocab_size=size,
                model_type=model_type,
                **options,
                pad_id=0,
                eos_id=1,
                unk_id=2,
                bos_id=-1,
                character_coverage=1.0,
                num_threads=1,
                minloglevel=2,
            )
            break
        except RuntimeError as error:
            # "Vocabulary size too high": retry below the supported maximum.
            message = str(error)
            if "Vocabulary size too high" not in message or size <= 16:
                raise
            size = max(16, int(size * 0.8))
            model = io.BytesIO()
    directory = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(directory, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=".partial", dir=directory)
    with os.fdopen(handle, "wb") as file:
        file.write(model.getvalue())
    os.replace(partial, output_path)
    return size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="TFRecord glob")
    parser.add_argument("--output", required=True, help="tokenizer.model path")
    parser.add_argument("--vocab_size", type=int, default=1000,
                        help="vocabulary size, lowered when the text "
                             "supports no more (default 1000)")
    parser.add_argument("--model_type", choices=MODEL_TYPES,
                        default="unigram")
    parser.add_argument("--split_digits", action="store_true",
                        help="every digit its own piece")
    parser.add_argument("--text_length", type=int, default=32,
                        help="the text encoder's length, for the report of "
                             "captions it would cut (default 32, as "
                             "configs/tiny_scenes.json)")
    parser.add_argument("--max_records", type=int, default=None)
    args = parser.parse_args(argv)
    if args.vocab_size < 16:
        parser.error(f"--vocab_size must be at least 16; got {args.vocab_size}")
    if args.text_length < 2:
        parser.error(f"--text_length must be at least 2; got {args.text_length}")
    try:
        captions = list(iter_captions(args.data, args.max_records))
        size = train_sentencepiece(
            captions,
            args.output,
            vocab_size=args.vocab_size,
            model_type=args.model_type,
            split_digits=args.split_digits,
        )
    except (OSError, ValueError, RuntimeError) as error:
        # SentencePiece's trainer raises RuntimeError on what it refuses.
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote a {size}-piece SentencePiece model to {args.output}")
    print(caption_length_report(args.output, captions, args.text_length))
    return 0


def caption_length_report(model_path, captions, text_length):
    """How many tokens the captions take, and how many `text_length` cuts.

    A caption's tokens plus its end-of-sequence token must fit in
    `text_length`; longer ones lose their end (`TIPSTokenizer` truncates).
    """
    import numpy as np
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=model_path)
    lengths = np.array([
        len(processor.encode(caption.lower())) + 1 for caption in captions])
    cut = float(np.mean(lengths > text_length))
    return (
        f"Captions: {len(lengths)}, {lengths.mean():.1f} tokens on average "
        f"(end token included), longest {lengths.max()}; {100 * cut:.1f}% "
        f"are longer than a text length of {text_length} and would be cut."
    )


if __name__ == "__main__":
    sys.exit(main())
