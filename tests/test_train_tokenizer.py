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


def _scene_like_captions():
    """Captions of a closed vocabulary plus file names full of numbers."""
    words = ["red", "green", "blue", "black", "orange", "olive", "circle",
             "square", "star", "left", "right", "background"]
    rng = np.random.default_rng(1)
    return [
        (f"IMG_{rng.integers(10**6)}.jpg {rng.choice(words)}",
         [" ".join(rng.choice(words, 6)), "a " + " ".join(rng.choice(words, 3))])
        for _ in range(300)
    ]


def test_bpe_with_split_digits_keeps_frequent_words_whole(tmp_path):
    _shard(tmp_path / "train-0.tfrecord", _scene_like_captions())
    texts = list(iter_captions(str(tmp_path / "train-*.tfrecord")))
    import sentencepiece as spm

    path = tmp_path / "bpe.model"
    train_sentencepiece(texts, str(path), vocab_size=1000, model_type="bpe",
                        split_digits=True)
    bpe = spm.SentencePieceProcessor(model_file=str(path))
    for word in ("red", "blue", "black", "orange", "olive", "background"):
        assert bpe.encode(word, out_type=str) == ["\u2581" + word]
    # Digits are single pieces, so numbers do not fill the vocabulary.
    assert bpe.encode("img_1234.jpg", out_type=str)[2:6] == ["1", "2", "3", "4"]
    vocabulary = [bpe.id_to_piece(i) for i in range(bpe.get_piece_size())]
    assert not [p for p in vocabulary if sum(c.isdigit() for c in p) > 1]
    with pytest.raises(ValueError, match="model_type"):
        train_sentencepiece(texts, str(tmp_path / "x.model"), model_type="word")


def test_command_reports_the_captions_a_text_length_cuts(tmp_path, capsys):
    from tools.train_tokenizer import main

    captions = [("IMG_1.jpg red", ["red " * 40, "blue circle"])] * 50
    _shard(tmp_path / "train-0.tfrecord", captions)
    model = tmp_path / "tok.model"
    assert main(["--data", str(tmp_path / "train-*.tfrecord"), "--output",
                 str(model), "--model_type", "bpe", "--split_digits",
                 "--text_length", "8"]) == 0
    out = capsys.readouterr().out
    # One caption in three ("red" x 40: 41 tokens) is longer than 8.
    assert "longest 41; 33.3% are longer than a text length of 8" in out
