"""Caption choice and tokenization inside the `tf.data` pipelines.

Each record carries at most one noisy caption (web alt-text) and any number
of synthetic captions; blank ones count as missing. This module picks the
caption of each kind that a training example uses
(`select_synthetic_caption`; the noisy caption is the first non-blank one,
`records.first_non_blank`) and turns a batch of captions into token ids and
padding masks (`tokenize_captions`), with zeros where a caption is missing.
For the phrase-grounding term (`PretrainConfig.phrase_text_weight`) it also
splits a list-like caption into its noun phrases (`split_phrases`) and
tokenizes them (`tokenize_phrases`).

The tokenizer runs inside `tf.data`, so it must be TF-traceable (e.g.
`keras_tips.TIPSTokenizer`). Its ids are checked in the graph: ids below 0
or at least `tokenizer.vocabulary_size()` (when the tokenizer has that
method) stop iteration with an `InvalidArgumentError` naming the problem,
instead of reaching the embedding table.

Example:

```python
caption, present = select_synthetic_caption(captions, "random", u)
dataset = dataset.batch(32).map(tokenize_captions(tokenizer, 64))
```
"""

import numbers

import tensorflow as tf

from training import records


def select_synthetic_caption(captions, sampling, u):
    """The first, or a uniformly random, non-blank synthetic caption.

    Args:
        captions: `tf.string` list of a record's synthetic captions.
        sampling: `"first"` or `"random"` (see
            `DataConfig.synthetic_caption_sampling`).
        u: float32 scalar uniform in [0, 1), the random draw.

    Returns:
        `(caption, present)`: the caption (`""` when there is none) and
        whether there is one.
    """
    captions = records.non_blank(captions)
    count = tf.size(captions)
    if sampling == "random":
        index = tf.cast(tf.floor(u * tf.cast(count, tf.float32)), tf.int32)
        index = tf.clip_by_value(index, 0, tf.maximum(count - 1, 0))
    else:
        index = 0
    caption = tf.concat([captions, [""]], 0)[index]
    return caption, count > 0


def split_phrases(caption, max_phrases):
    """The noun phrases of a list-like caption, e.g. a short synthetic one.

    A caption of the form `"A, B and C on D"` gives `["A", "B", "C", "D"]`:
    the text after the first `" on "` is one phrase (the setting, which may
    itself hold an "and": `"a sand and teal stripes background"`), and the
    text before it is split at commas and at `" and "` (runs of white
    space count as one space). A caption without
    `" on "` is split the same way throughout; blank pieces are dropped.
    This is the grammar of the scene generator's short captions (and of
    many alt-texts that list objects); other captions give phrases that may
    be whole clauses.

    Args:
        caption: `tf.string` scalar.
        max_phrases: int >= 1, the length of the result.

    Returns:
        `(phrases, present)`: `(max_phrases,)` `tf.string`, the first
        `max_phrases` phrases padded with `""`, and `(max_phrases,)` bool,
        True where there is a phrase.

    Example:
    ```python
    phrases, present = split_phrases(
        tf.constant("a red circle and a blue star on a gray background"), 4)
    # [b"a red circle", b"a blue star", b"a gray background", b""]
    ```
    """
    if (isinstance(max_phrases, bool)
            or not isinstance(max_phrases, numbers.Integral)
            or max_phrases < 1):
        raise ValueError(
            f"`max_phrases` must be an int >= 1, got {max_phrases!r}."
        )
    caption = tf.strings.regex_replace(
        tf.convert_to_tensor(caption, tf.string), r"\s+", " "
    )
    parts = tf.strings.split(caption, " on ", maxsplit=1)
    listed = tf.strings.regex_replace(parts[0], r" and |,", "\n")
    phrases = tf.concat(
        [tf.strings.split(listed, "\n"), parts[1:]], axis=0
    )
    phrases = tf.strings.strip(phrases)
    phrases = tf.boolean_mask(phrases, tf.strings.length(phrases) > 0)
    phrases = tf.concat([phrases, tf.fill([max_phrases], "")], 0)
    phrases = tf.ensure_shape(phrases[:max_phrases], [max_phrases])
    return phrases, tf.strings.length(phrases) > 0


def tokenize_phrases(tokenizer, sequence_length):
    """A batch map: `"phrases"` `(B, P)` strings -> token ids.

    Replaces `"phrases"` and `"has_phrase"` (`(B, P)` bool, from
    `split_phrases`) by `"phrase_token_ids"` and `"phrase_padding_mask"`
    (`(B, P, sequence_length)` int32, zeros where there is no phrase) and
    `"has_phrase"` `(B, P)` float32.
    """

    def tokenize(batch):
        batch = dict(batch)
        phrases = batch.pop("phrases")
        present = tf.cast(batch.pop("has_phrase"), tf.bool)
        num_phrases = phrases.shape[1]
        ids, padding_mask = _tokenize(
            tokenizer,
            tf.reshape(phrases, [-1]),
            tf.reshape(present, [-1]),
            sequence_length,
        )
        shape = [-1, num_phrases, sequence_length]
        batch["phrase_token_ids"] = tf.reshape(ids, shape)
        batch["phrase_padding_mask"] = tf.reshape(padding_mask, shape)
        batch["has_phrase"] = tf.cast(present, tf.float32)
        return batch

    return tokenize


def check_tokenizer(tokenizer):
    """Raises a `TypeError` unless `tokenizer` is callable."""
    if not callable(tokenizer):
        raise TypeError(f"`tokenizer` must be callable, got {tokenizer!r}.")


def _vocabulary_size(tokenizer):
    """The tokenizer's vocabulary size if it reports one, else None."""
    size = getattr(tokenizer, "vocabulary_size", None)
    if not callable(size):
        return None
    try:
        size = size()
    except Exception:  # e.g. a tokenizer whose vocabulary loads later
        return None
    return int(size) if isinstance(size, numbers.Integral) else None


def _checked_token_ids(ids, vocabulary_size):
    """`ids` after in-graph checks that they lie in `[0, vocabulary_size)`.

    The values are only known while the pipeline runs, so an id out of range
    stops iteration with an `InvalidArgumentError` carrying this message
    (instead of reaching the embedding, where JAX returns NaN).
    """
    where = (
        f"[0, {vocabulary_size}), the vocabulary of the tokenizer"
        if vocabulary_size is not None
        else "[0, vocabulary size)"
    )
    message = (
        f"`tokenizer` produced token ids outside {where}. Use the model's "
        "TIPSTokenizer; ids of another tokenizer do not match the text "
        "encoder's embedding table."
    )
    wide = tf.cast(ids, tf.int64)  # no wrap-around of the bounds
    checks = [
        tf.debugging.assert_greater_equal(
            wide, tf.constant(0, tf.int64), message=message
        )
    ]
    if vocabulary_size is not None:
        checks.append(
            tf.debugging.assert_less(
                wide, tf.constant(vocabulary_size, tf.int64), message=message
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(ids)


def _tokenize(tokenizer, texts, present, sequence_length):
    """Token ids `(B, L)` int32 and padding mask; zeros where not present."""
    ids = tokenizer(texts)
    if isinstance(ids, tf.RaggedTensor):
        ids = ids.to_tensor(default_value=0)
    ids = tf.convert_to_tensor(ids)
    if not ids.dtype.is_integer:
        raise TypeError(
            "`tokenizer` must return integer token ids; got dtype "
            f"{ids.dtype.name}. Casting would silently truncate; fix the "
            "tokenizer (TIPSTokenizer returns int32)."
        )
    if ids.shape.rank is not None and ids.shape.rank != 2:
        raise ValueError(
            "`tokenizer` must map a (B,) string tensor to (B, sequence_length) "
            f"token ids; got rank {ids.shape.rank} output of shape {ids.shape}."
        )
    ids = tf.cast(_checked_token_ids(ids, _vocabulary_size(tokenizer)), tf.int32)
    ids = ids[:, :sequence_length]
    ids = tf.pad(ids, [[0, 0], [0, sequence_length - tf.shape(ids)[1]]])
    ids = tf.ensure_shape(ids, [None, sequence_length])
    ids = ids * tf.cast(present, tf.int32)[:, None]
    padding_mask = tf.cast(tf.not_equal(ids, 0), tf.int32)
    return ids, padding_mask


def tokenize_captions(tokenizer, sequence_length):
    """A batch map: captions -> token ids and padding masks.

    Replaces `"noisy_caption"` and `"synthetic_caption"` (`(B,)` strings)
    by `"{kind}_token_ids"` and `"{kind}_padding_mask"` (`(B,
    sequence_length)` int32, mask 1 = real token), zeros where
    `"has_{kind}_caption"` is 0. Tokenizer outputs that are shorter or
    ragged are padded (pad id 0), longer ones truncated; non-integer
    outputs raise a `TypeError` when the map is traced.
    """

    def tokenize(batch):
        batch = dict(batch)
        for kind in ("noisy", "synthetic"):
            texts = batch.pop(f"{kind}_caption")
            ids, padding_mask = _tokenize(
                tokenizer, texts, batch[f"has_{kind}_caption"] > 0, sequence_length
            )
            batch[f"{kind}_token_ids"] = ids
            batch[f"{kind}_padding_mask"] = padding_mask
        return batch

    return tokenize
