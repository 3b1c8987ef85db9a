"""L2 normalisation of embeddings: the one home for keras-tips and training.

* `l2_normalize` and `inverse_l2_norm` (`keras.ops`): the tasks, the
  SavedModel export and the CLI (`keras_tips`), the projection heads
  (`training.heads`) and the contrastive loss (`training.losses`);
* `l2_normalize_numpy` (NumPy): the evaluation of frozen features
  (`training.scenes.evaluation`).

Both compute `x / max(||x||, epsilon)`, as `keras.ops.normalize` and torch's
`F.normalize` do. `l2_normalize` gives the same numbers as
`keras.ops.normalize(x, axis, epsilon=epsilon)` for every vector longer
than `epsilon`, but floors the squared norm BEFORE `rsqrt` where
`keras.ops.normalize` clips `rsqrt`'s result after it: at a zero vector
(e.g. an invalid row of the contrastive loss) `keras.ops.normalize` has a
NaN gradient on JAX and torch (`0 * rsqrt'(0) = 0 * inf`), `l2_normalize` a
finite one.

Example:

```python
embeddings = l2_normalize(embeddings)            # unit rows, float32 in
inverse_norms = inverse_l2_norm(prototypes, axis=0, keepdims=False)
unit = l2_normalize_numpy(features.cls_embeddings)
```
"""

import numpy as np
from keras import ops

# Norm floor: vectors shorter than this are divided by it instead.
DEFAULT_EPSILON = 1e-6


def inverse_l2_norm(x, axis=-1, epsilon=DEFAULT_EPSILON, keepdims=True):
    """`1 / max(||x||, epsilon)` along `axis`, as `rsqrt` of the squared norm.

    Args:
        x: tensor.
        axis: int, the axis of the norm.
        epsilon: float, the norm floor.
        keepdims: bool, keep `axis` with size 1 (to broadcast against `x`).
    """
    squared_norm = ops.sum(ops.square(x), axis=axis, keepdims=keepdims)
    return ops.rsqrt(ops.maximum(squared_norm, epsilon * epsilon))


def l2_normalize(x, axis=-1, epsilon=DEFAULT_EPSILON):
    """`x / max(||x||, epsilon)` along `axis`, in `x`'s dtype.

    Zero vectors stay zero, with a finite gradient.

    Args:
        x: tensor or array.
        axis: int, the axis to normalise.
        epsilon: float, the norm floor.
    """
    x = ops.convert_to_tensor(x)
    return x * inverse_l2_norm(x, axis=axis, epsilon=epsilon)


def l2_normalize_numpy(x, axis=-1, epsilon=DEFAULT_EPSILON):
    """`x / max(||x||, epsilon)` along `axis` of a NumPy array, float32."""
    x = np.asarray(x, dtype="float32")
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, epsilon)
