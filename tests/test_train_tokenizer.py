"""Training a SentencePiece model on caption shards for TIPSTokenizer."""

import numpy as np
import pytest
import tensorflow as tf

import keras_tips
from tools.train_tokenizer import iter_captions
from tools.train_tokenizer import train_sentencepiece

pytestmark = pytest.mark.backend_independent


def _shard(path, captions):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for noisy, synthetic in captions:
            feature = {"caption_synthetic": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[s.encode() for s in synthetic]))}
            if noisy is not None:
                feature["caption_noisy"] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[noisy.encode()]))
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())


def test_trained_model_has_official_special_ids(tmp_path):
    words = ["red", "green", "blue", "circle", "square", "star", "left", "right"]
    rng = np.random.default_rng(0)
    captions = [
        (None if i % 5 == 0 else f"IMG_{i}.jpg {rng.choice(words)}",
         [" ".join(rng.choice(words, 6)), "A " + " ".join(rng.choice(words, 3))])
        for i in range(200)
    ]
    _shard(tmp_path / "train-0.tfrecord", captions)
    texts = list(iter_captions(str(tmp_path / "train-*.tfrecord")))
    assert len(texts) == 200 * 2 + 160
    model = tmp_path / "tok.model"
    size = train_sentencepiece(texts, str(model), vocab_size=5000)
    assert 16 <= size < 5000  # lowered to what the text supports
    tokenizer = keras_tips.TIPSTokenizer(proto=str(model), sequence_length=8,
                                         official_padding_mask=False)
    out = tokenizer.tokenize_with_padding_mask(["Red circle", ""])
    ids = np.asarray(out["token_ids"])
    assert ids.shape == (2, 8) and (ids[1] == 0).all() and (ids[0, :1] > 2).all()
    assert list(tmp_path.glob("*.partial")) == []


def test_empty_glob_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        list(iter_captions(str(tmp_path / "nothing-here-*.tfrecord")))
