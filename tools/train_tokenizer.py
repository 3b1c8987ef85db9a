"""Train a SentencePiece model on the captions of TFRecord shards.

For pretraining on your own data with a vocabulary of its own. The model
uses the official TIPS special ids (pad 0, eos 1, unk 2, no BOS) and is
trained on lowercased text, as `TIPSTokenizer` lowercases its input.

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


def train_sentencepiece(texts, output_path, vocab_size=1000, seed=0):
    """Trains a unigram SentencePiece model; writes it atomically.

    Args:
        texts: iterable of strings (lowercased here).
        output_path: where the `.model` file goes.
        vocab_size: vocabulary size; lowered automatically when the text is
            too small to support it.
        seed: unused by SentencePiece's trainer beyond input order, kept for
            reproducible call sites.

    Returns:
        The vocabulary size actually trained.
    """
    import sentencepiece as spm

    sentences = [text.lower() for text in texts]
    if not sentences:
        raise ValueError("No captions to train a tokenizer on.")
    model = io.BytesIO()
    size = int(vocab_size)
    while True:
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=model,
                vocab_size=size,
                model_type="unigram",
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
    parser.add_argument("--vocab_size", type=int, default=1000)
    parser.add_argument("--max_records", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        size = train_sentencepiece(
            iter_captions(args.data, args.max_records),
            args.output,
            vocab_size=args.vocab_size,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote a {size}-piece SentencePiece model to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
