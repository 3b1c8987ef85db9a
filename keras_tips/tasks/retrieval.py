"""Image-text retrieval over batches of TIPS embeddings, and recall@k.

All functions take embeddings of any scale (they are L2-normalised here),
as NumPy arrays or backend tensors, and return NumPy arrays.

Example:
```python
images = backbone.encode_images(pixels)["cls_embeddings"][:, 0]
texts = backbone.encode_texts(**tokenizer.tokenize_with_padding_mask(captions))
scores, indices = image_to_text_retrieval(images, texts, k=5)
recall_at_k(cosine_similarity_matrix(images, texts), np.arange(len(images)))
# {1: 0.62, 5: 0.88, 10: 0.94}
```
"""

import numpy as np
from keras import ops
from keras_tips.normalization import l2_normalize


def _as_embeddings(x, name):
    x = ops.convert_to_numpy(x) if not isinstance(x, np.ndarray) else x
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2D (count, dim) array of embeddings; "
            f"received shape {x.shape}."
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"`{name}` must be float; received dtype {x.dtype}.")
    if not np.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or Inf values.")
    return x.astype("float32")


def cosine_similarity_matrix(queries, gallery):
    """Cosine similarity of every query with every gallery item.

    Args:
        queries: `(Q, D)` embeddings.
        gallery: `(G, D)` embeddings.

    Returns:
        float32 `(Q, G)` array.
    """
    queries = _as_embeddings(queries, "queries")
    gallery = _as_embeddings(gallery, "gallery")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"Embedding widths differ: queries {queries.shape[1]}, gallery "
            f"{gallery.shape[1]}."
        )
    queries = ops.convert_to_numpy(l2_normalize(queries))
    gallery = ops.convert_to_numpy(l2_normalize(gallery))
    return queries @ gallery.T


def _check_k(k, gallery_size):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive int; received {k!r}.")
    if k > gallery_size:
        raise ValueError(
            f"`k`={k} is larger than the gallery ({gallery_size} items)."
        )
    return int(k)


def top_k_retrieval(queries, gallery, k=5):
    """The `k` most similar gallery items of each query (cosine).

    Ties are broken by the lower gallery index.

    Args:
        queries: `(Q, D)` embeddings.
        gallery: `(G, D)` embeddings.
        k: int, at most `G`.

    Returns:
        `(scores, indices)`: float32 `(Q, k)` cosine similarities, highest
        first, and int64 `(Q, k)` gallery indices.
    """
    similarity = cosine_similarity_matrix(queries, gallery)
    k = _check_k(k, similarity.shape[1])
    indices = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(similarity, indices, axis=1)
    return scores, indices.astype("int64")


def image_to_text_retrieval(image_embeddings, text_embeddings, k=5):
    """For each image, the `k` best texts: `(scores, indices)` `(I, k)`."""
    return top_k_retrieval(image_embeddings, text_embeddings, k)


def text_to_image_retrieval(text_embeddings, image_embeddings, k=5):
    """For each text, the `k` best images: `(scores, indices)` `(T, k)`."""
    return top_k_retrieval(text_embeddings, image_embeddings, k)


def _positive_mask(positives, num_queries, gallery_size):
    """Boolean `(Q, G)` mask of correct gallery items."""
    if isinstance(positives, np.ndarray) and positives.dtype == bool:
        if positives.shape != (num_queries, gallery_size):
            raise ValueError(
                f"A boolean `positives` mask must have shape "
                f"{(num_queries, gallery_size)}; received {positives.shape}."
            )
        mask = positives
    else:
        array = None
        if not isinstance(positives, (list, tuple)) or all(
            isinstance(p, (int, np.integer)) for p in positives
        ):
            array = np.asarray(positives)
            if array.size and array.dtype.kind not in "iu":
                raise TypeError(
                    "`positives` must hold integer gallery indices (or be a "
                    f"boolean (Q, G) mask); received dtype {array.dtype}."
                )
        if array is not None and array.ndim == 1:
            if len(array) != num_queries:
                raise ValueError(
                    f"`positives` has {len(array)} entries for {num_queries} "
                    "queries."
                )
            groups = [[int(i)] for i in array]
        else:
            groups = []
            for row, group in enumerate(positives):
                if isinstance(group, (int, np.integer)):
                    group = [group]
                elif not isinstance(group, (list, tuple, set, range,
                                            np.ndarray)):
                    raise TypeError(
                        f"`positives` entry {row} must be an int gallery "
                        "index or a list of them; received "
                        f"{type(group).__name__} {group!r}."
                    )
                groups.append(list(group))
            if len(groups) != num_queries:
                raise ValueError(
                    f"`positives` has {len(groups)} entries for "
                    f"{num_queries} queries."
                )
        mask = np.zeros((num_queries, gallery_size), dtype=bool)
        for row, group in enumerate(groups):
            for index in group:
                if isinstance(index, bool) or not isinstance(
                    index, (int, np.integer)
                ):
                    raise TypeError(
                        f"`positives` of query {row} must be integer gallery "
                        f"indices; received {index!r}."
                    )
                if not 0 <= int(index) < gallery_size:
                    raise ValueError(
                        f"`positives` index {index} of query {row} is outside "
                        f"the gallery [0, {gallery_size})."
                    )
                mask[row, int(index)] = True
    empty = np.flatnonzero(~mask.any(axis=1))
    if len(empty):
        raise ValueError(
            f"Queries {empty[:10].tolist()} have no correct gallery item."
        )
    return mask


def recall_at_k(similarity, positives, ks=(1, 5, 10)):
    """Fraction of queries with a correct item among their top `k`.

    Args:
        similarity: `(Q, G)` scores, higher is better (e.g.
            `cosine_similarity_matrix(queries, gallery)`).
        positives: the correct gallery items of each query: an int array
            `(Q,)` (one each), a list of index lists (several each, e.g. five
            captions per image), or a boolean `(Q, G)` mask.
        ks: int or ints. Cut-offs; each at most `G`.

    Returns:
        `{k: recall}` with float recalls in `[0, 1]`. Ties are broken by
        the lower gallery index, as in `top_k_retrieval`. Zero queries or
        a non-finite similarity raise a `ValueError`.
    """
    similarity = np.asarray(ops.convert_to_numpy(similarity), dtype="float32")
    if similarity.ndim != 2:
        raise ValueError(
            f"`similarity` must be (queries, gallery); received shape "
            f"{similarity.shape}."
        )
    num_queries, gallery_size = similarity.shape
    if num_queries == 0:
        raise ValueError(
            "`similarity` has no queries (shape "
            f"{similarity.shape}); recall over zero queries is undefined. "
            "Pass at least one query."
        )
    if not np.isfinite(similarity).all():
        raise ValueError(
            "`similarity` contains NaN or Inf values, which have no rank; "
            "check the embeddings that produced it."
        )
    mask = _positive_mask(positives, num_queries, gallery_size)
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(mask, order, axis=1)
    first_hit = hits.argmax(axis=1)  # rank of the best-ranked positive
    return {
        _check_k(k, gallery_size): float(np.mean(first_hit < k)) for k in ks
    }
