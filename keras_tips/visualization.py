"""PCA pictures of TIPS patch embeddings: three principal components as RGB.

The visualisation of the TIPS paper and demo: the patch embeddings of one
or more images are projected onto their first three principal components
(fitted jointly, so colours mean the same thing across the batch),
whitened and squashed with `sigmoid(2 x)` into `[0, 1]`. Regions the model
considers alike get similar colours.

Example:
```python
patches = backbone.encode_images(images)["patch_embeddings"]  # (B, h, w, D)
rgb = keras_tips.visualization.pca_rgb(patches)               # (B, h, w, 3)
pictures = keras_tips.visualization.pca_images(patches, (448, 448))  # uint8
```
"""

import numpy as np
from keras import ops


def _as_features(features, name="patch_embeddings"):
    if not isinstance(features, np.ndarray):
        features = ops.convert_to_numpy(features)
    features = np.asarray(features)
    if features.ndim < 2:
        raise ValueError(
            f"`{name}` must have shape (..., D); received {features.shape}."
        )
    if not np.issubdtype(features.dtype, np.floating):
        raise TypeError(f"`{name}` must be float; received {features.dtype}.")
    if not np.isfinite(features).all():
        raise ValueError(f"`{name}` contain NaN or Inf values.")
    return features.astype("float64")


class PatchPCA:
    """Principal components of feature vectors, for colouring patches.

    `fit` centres the vectors and takes the top right-singular vectors;
    each component's sign is fixed so that its largest-magnitude loading is
    positive, so results do not flip between runs or backends.

    Args:
        num_components: int. Components kept (3 for RGB).
        whiten: bool. Divide projections by the components' standard
            deviations.
        max_samples: int. Vectors used for fitting at most (a seeded random
            subset beyond that).
        seed: int. Seed of that subset.

    Example:
    ```python
    pca = PatchPCA().fit(patches_of_many_images)
    rgb = pca.to_rgb(patches_of_one_image)
    ```
    """

    def __init__(self, num_components=3, whiten=True, max_samples=100_000,
                 seed=0):
        if num_components < 1:
            raise ValueError("`num_components` must be at least 1.")
        self.num_components = int(num_components)
        self.whiten = bool(whiten)
        self.max_samples = int(max_samples)
        self.seed = seed
        self.mean = None
        self.components = None
        self.explained_variance = None

    def fit(self, features):
        """Fits on `(..., D)` features; returns `self`."""
        features = _as_features(features)
        vectors = features.reshape(-1, features.shape[-1])
        if vectors.shape[0] > self.max_samples:
            rng = np.random.default_rng(self.seed)
            keep = rng.choice(vectors.shape[0], self.max_samples, replace=False)
            vectors = vectors[np.sort(keep)]
        if vectors.shape[0] < 2:
            raise ValueError(
                "PCA needs at least 2 feature vectors; received "
                f"{vectors.shape[0]}."
            )
        if self.num_components > min(vectors.shape):
            raise ValueError(
                f"Cannot keep {self.num_components} components of "
                f"{vectors.shape[0]} vectors of width {vectors.shape[1]}."
            )
        self.mean = vectors.mean(axis=0)
        centered = vectors - self.mean
        _, singular, rows = np.linalg.svd(centered, full_matrices=False)
        components = rows[: self.num_components]
        largest = np.argmax(np.abs(components), axis=1)
        signs = np.sign(components[np.arange(len(components)), largest])
        self.components = components * signs[:, None]
        variance = singular[: self.num_components] ** 2 / (vectors.shape[0] - 1)
        self.explained_variance = variance
        return self

    def transform(self, features):
        """Projects `(..., D)` features to `(..., num_components)`."""
        if self.components is None:
            raise ValueError("Call `fit` before `transform`.")
        features = _as_features(features)
        if features.shape[-1] != self.components.shape[1]:
            raise ValueError(
                f"Features have width {features.shape[-1]}; the PCA was fitted "
                f"on width {self.components.shape[1]}."
            )
        projected = (features - self.mean) @ self.components.T
        if self.whiten:
            projected = projected / np.sqrt(
                np.maximum(self.explained_variance, 1e-12)
            )
        return projected

    def to_rgb(self, features):
        """`sigmoid(2 * projection)`: float32 `(..., 3)` in `(0, 1)`."""
        if self.num_components != 3:
            raise ValueError("RGB output needs num_components=3.")
        return (1.0 / (1.0 + np.exp(-2.0 * self.transform(features)))).astype(
            "float32"
        )


def pca_rgb(patch_embeddings, whiten=True):
    """Colours patch embeddings by their first three principal components.

    The PCA is fitted on all patches of all images given, so the colours
    are consistent across the batch.

    Args:
        patch_embeddings: `(B, h, w, D)` or `(h, w, D)` features (e.g. the
            backbone's `"patch_embeddings"`).
        whiten: bool. Whiten the components (as the TIPS demo).

    Returns:
        float32 NumPy array `(..., h, w, 3)` in `(0, 1)`.
    """
    features = _as_features(patch_embeddings)
    if features.ndim not in (3, 4):
        raise ValueError(
            "`patch_embeddings` must be (h, w, D) or (B, h, w, D); received "
            f"shape {features.shape}."
        )
    return PatchPCA(whiten=whiten).fit(features).to_rgb(features)


def pca_images(patch_embeddings, image_size=None, whiten=True,
               resample="nearest"):
    """PCA pictures as uint8 RGB images, optionally enlarged.

    Args:
        patch_embeddings: `(B, h, w, D)` or `(h, w, D)`.
        image_size: optional `(height, width)` to resize each picture to.
        whiten: bool. See `pca_rgb`.
        resample: `"nearest"` (crisp patches) or `"bilinear"`.

    Returns:
        uint8 NumPy `(B, H, W, 3)` (or `(H, W, 3)` for one image).
    """
    from PIL import Image

    if resample not in ("nearest", "bilinear"):
        raise ValueError(
            f"`resample` must be 'nearest' or 'bilinear'; got {resample!r}."
        )
    rgb = pca_rgb(patch_embeddings, whiten=whiten)
    single = rgb.ndim == 3
    if single:
        rgb = rgb[None]
    pictures = np.clip(np.round(rgb * 255.0), 0, 255).astype("uint8")
    if image_size is not None:
        height, width = int(image_size[0]), int(image_size[1])
        method = (
            Image.Resampling.NEAREST
            if resample == "nearest"
            else Image.Resampling.BILINEAR
        )
        pictures = np.stack(
            [
                np.asarray(Image.fromarray(p).resize((width, height), method))
                for p in pictures
            ]
        )
    return pictures[0] if single else pictures
