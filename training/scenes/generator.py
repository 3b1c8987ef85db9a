"""Procedural 2D scenes with captions and segmentation masks: drawing one.

A small, fully offline stand-in for web image-text data, in the spirit of
Kubric but in 2D and with numpy + PIL only. Every scene holds 1 to 4 flat
objects (a shape, a colour, a size and a texture) on a muted background, and
comes with:

* `image`: uint8 RGB `(H, W, 3)`;
* `mask`: uint8 `(H, W)` segmentation, 0 = background, `k` = index of the
  shape in `SHAPES` plus 1 (the order of `class_names()`); later objects
  occlude earlier ones;
* `color_mask`: uint8 `(H, W)` segmentation by colour, 0 = background,
  `k` = index of the colour in `COLORS` plus 1 (the order of
  `color_class_names()`), with the same occlusion;
* `instance_mask`: uint8 `(H, W)`, 0 = background, `i + 1` = `objects[i]`;
* one NOISY caption, like web alt-text: it names only the most salient
  (largest visible) object, sometimes with a wrong colour, wrapped in filler
  (file names, shop phrases) and sometimes empty;
* several SYNTHETIC captions, like a captioning model's output, from short
  (every object with its colour, and the background) to dense (size,
  texture, position, relations between objects, background).

Generation is deterministic: scene `index` of split `split_name` with seed
`seed` always uses the random stream `scene_rng(seed, split_name, index)`, so
the bytes written do not depend on the number of shards or worker
processes. Writing scenes as TFRecord shards is `training.scenes.shards`.

Example:

```python
import numpy as np
from training.scenes import generator

config = generator.SceneConfig(image_size=112)
scene = generator.generate_scene(np.random.default_rng(0), config)
scene.image.shape, scene.mask.shape     # (112, 112, 3), (112, 112)
scene.synthetic_captions[0]
# "a yellow star, a yellow square and a green star on a sand and teal
# stripes background"
```
"""

import dataclasses
import math
import zlib

import numpy as np
from PIL import Image
from PIL import ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")

SHAPE_PLURALS = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "ring": "rings",
    "cross": "crosses",
}

# Saturated or extreme colours, far apart from each other and from the
# muted background palette below.
COLORS = {
    "red": (220, 30, 35),
    "green": (30, 170, 60),
    "blue": (35, 75, 225),
    "yellow": (245, 220, 30),
    "purple": (140, 45, 175),
    "orange": (250, 135, 15),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}

SIZES = ("small", "medium", "large")

# Object radius as a fraction of the image side, per size.
SIZE_RADIUS_FRACTION = {
    "small": (0.06, 0.09),
    "medium": (0.11, 0.15),
    "large": (0.17, 0.23),
}

TEXTURES = ("solid", "striped", "dotted")

BACKGROUND_KINDS = ("gradient", "noise", "stripes")

# Muted, low-saturation background colours, all within [60, 200] per
# channel so that white and black objects stand out.
BACKGROUND_COLORS = {
    "gray": (128, 128, 128),
    "beige": (190, 175, 150),
    "slate": (100, 115, 135),
    "olive": (125, 125, 85),
    "teal": (90, 130, 125),
    "brown": (135, 105, 85),
    "lavender": (150, 140, 170),
    "sand": (180, 165, 125),
}

_COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six")

_FILE_NAME_PATTERNS = (
    "IMG_{n4}.jpg",
    "DSC_{n4}.JPG",
    "image_{n2}.png",
    "photo-{n4}.jpeg",
    "Screenshot_{n4}.png",
    "{n4}.jpg",
)

_SHOP_PHRASES = (
    "buy now",
    "stock photo",
    "free shipping",
    "best price",
    "on sale",
    "vector illustration",
    "clipart",
    "hd wallpaper",
    "royalty free",
    "high quality",
    "png transparent",
    "sticker",
    "icon",
)

_NOISY_TEMPLATES = (
    "{object}",
    "{file} {object}",
    "{object} {shop}",
    "{shop}: {object} {shop2}",
    "{object} - {file}",
    "{file}",
    "{shop} {object} | {shop2}",
)


def class_names():
    """Segmentation class names: `["background", *SHAPES]`.

    Mask value `k` is the class `class_names()[k]`.
    """
    return ["background", *SHAPES]


def color_class_names():
    """Colour segmentation class names: `["background", *COLORS]`.

    Mask value `k` of `Scene.color_mask` is the class
    `color_class_names()[k]`.
    """
    return ["background", *COLORS]


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Settings of the scene generator.

    Args:
        image_size: side of the square image in pixels, a multiple of 14
            (the TIPS patch size) and at least 28.
        min_objects: fewest objects in a scene (at least 1).
        max_objects: most objects in a scene (at most 255).
        image_format: `"png"` (lossless, default) or `"jpeg"` for the
            encoded `image` feature. Masks are always PNG.
        jpeg_quality: JPEG quality, 1 to 100, when `image_format="jpeg"`.
        noisy_empty_prob: probability that the noisy caption is empty.
        noisy_wrong_color_prob: probability that the noisy caption names a
            wrong colour for the salient object (when it names a colour).
        noisy_color_prob: probability that the noisy caption names a colour.
        background_noise_std: standard deviation of the per-pixel noise
            added to the background (objects stay exactly their colour).
        min_visible_fraction: each object keeps at least this fraction of
            its own pixels visible after later objects are drawn; placements
            that break this are retried.
        placement_attempts: placements tried per object before the object
            is dropped (the first object always fits).
        object_scale: factor on every object radius (`SIZE_RADIUS_FRACTION`
            times the image side). Larger objects cover more patches of a
            14 px grid, so a per-patch labelling can follow them.

    Example:

    ```python
    config = SceneConfig(image_size=224, max_objects=3)
    ```
    """

    image_size: int = 112
    min_objects: int = 1
    max_objects: int = 4
    image_format: str = "png"
    jpeg_quality: int = 90
    noisy_empty_prob: float = 0.05
    noisy_wrong_color_prob: float = 0.2
    noisy_color_prob: float = 0.8
    background_noise_std: float = 5.0
    min_visible_fraction: float = 0.6
    placement_attempts: int = 20
    object_scale: float = 1.0

    def __post_init__(self):
        if not isinstance(self.image_size, int) or isinstance(
            self.image_size, bool
        ):
            raise TypeError(
                f"`image_size` must be an int, got {self.image_size!r}."
            )
        if self.image_size < 28 or self.image_size % 14:
            raise ValueError(
                "`image_size` must be a multiple of 14 and at least 28, got "
                f"{self.image_size}."
            )
        if not 1 <= self.min_objects <= self.max_objects <= 255:
            raise ValueError(
                "Need 1 <= `min_objects` <= `max_objects` <= 255, got "
                f"min_objects={self.min_objects}, "
                f"max_objects={self.max_objects}."
            )
        if self.image_format not in ("png", "jpeg"):
            raise ValueError(
                "`image_format` must be 'png' or 'jpeg', got "
                f"{self.image_format!r}."
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(
                f"`jpeg_quality` must be in [1, 100], got {self.jpeg_quality}."
            )
        for name in (
            "noisy_empty_prob",
            "noisy_wrong_color_prob",
            "noisy_color_prob",
            "min_visible_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {value}.")
        if self.background_noise_std < 0:
            raise ValueError(
                "`background_noise_std` must be >= 0, got "
                f"{self.background_noise_std}."
            )
        if not 0.1 <= self.object_scale <= 2.0:
            raise ValueError(
                f"`object_scale` must be in [0.1, 2], got {self.object_scale}."
            )
        if self.placement_attempts < 1:
            raise ValueError(
                "`placement_attempts` must be >= 1, got "
                f"{self.placement_attempts}."
            )


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One object of a scene, as drawn (visible pixels only).

    Args:
        shape: one of `SHAPES`.
        color: one of the keys of `COLORS`.
        size: one of `SIZES`.
        texture: one of `TEXTURES`.
        bbox: `(x_min, y_min, x_max, y_max)` of the visible pixels, in
            pixels, max exclusive.
        centroid: `(x, y)` mean pixel position of the visible pixels.
        area: number of visible pixels.
        position: coarse position from the centroid, e.g. `"top left"`,
            `"center"`, `"bottom"`.
    """

    shape: str
    color: str
    size: str
    texture: str
    bbox: tuple
    centroid: tuple
    area: int
    position: str

    @property
    def class_id(self):
        """Segmentation mask value of this object's shape."""
        return SHAPES.index(self.shape) + 1


@dataclasses.dataclass(frozen=True)
class Scene:
    """A generated scene.

    Args:
        image: uint8 `(H, W, 3)` RGB image.
        mask: uint8 `(H, W)` class segmentation (see `class_names()`).
        color_mask: uint8 `(H, W)` colour segmentation (see
            `color_class_names()`).
        instance_mask: uint8 `(H, W)`, `i + 1` where `objects[i]` is visible.
        objects: tuple of `SceneObject`, in drawing order.
        background: short description of the background, e.g.
            `"beige gradient"`.
        noisy_caption: web-alt-text-like caption, possibly empty.
        noisy_color_is_wrong: whether the noisy caption names a wrong colour.
        synthetic_captions: tuple of dense captions, short to long.
        salient_index: index in `objects` of the largest visible object
            (the one the noisy caption is about).
    """

    image: np.ndarray
    mask: np.ndarray
    color_mask: np.ndarray
    instance_mask: np.ndarray
    objects: tuple
    background: str
    noisy_caption: str
    noisy_color_is_wrong: bool
    synthetic_captions: tuple
    salient_index: int


def scene_rng(seed, split_name, index):
    """The random generator of scene `index` of split `split_name`.

    Args:
        seed: non-negative int, the dataset seed.
        split_name: split name, e.g. `"train"`; different splits get
            independent streams.
        index: non-negative int, the scene index within the split.

    Returns:
        A `numpy.random.Generator`.

    Example:

    ```python
    scene = generate_scene(scene_rng(0, "train", 5), SceneConfig())
    ```
    """
    split_key = zlib.crc32(str(split_name).encode("utf-8"))
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), split_key, int(index)])
    )


# ---------------------------------------------------------------------------
# Drawing.


def _background(rng, size, noise_std):
    """Muted background image and its description."""
    names = list(BACKGROUND_COLORS)
    kind = BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))]
    first, second = rng.choice(len(names), size=2, replace=False)
    color_a = np.asarray(BACKGROUND_COLORS[names[first]], np.float32)
    color_b = np.asarray(BACKGROUND_COLORS[names[second]], np.float32)
    color_a = color_a + rng.uniform(-12, 12, size=3)
    color_b = color_b + rng.uniform(-12, 12, size=3)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == "noise":
        cells = int(rng.integers(3, 7))
        low_res = rng.uniform(0, 1, size=(cells, cells)).astype(np.float32)
        t = np.asarray(
            Image.fromarray(low_res, mode="F").resize(
                (size, size), Image.BILINEAR
            ),
            np.float32,
        )
    else:
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(0.08, 0.25)
        t = xs * np.cos(angle) + ys * np.sin(angle)
        t = ((t / period) % 1.0 < 0.5).astype(np.float32)
    t = t[..., None]
    image = color_a * (1.0 - t) + color_b * t
    if noise_std > 0:
        image = image + rng.normal(0.0, noise_std, size=image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    description = f"{names[first]} {kind}"
    if kind != "noise":
        description = f"{names[first]} and {names[second]} {kind}"
    return image, description


def _rotate(points, center, angle):
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = center
    return [
        (cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points
    ]


def _shape_mask(shape, center, radius, angle, size):
    """Boolean `(size, size)` mask of one shape (no anti-aliasing)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = center
    r = radius
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
        inner = 0.55 * r
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif shape == "square":
        h = 0.8 * r
        corners = [(-h, -h), (h, -h), (h, h), (-h, h)]
        draw.polygon(_rotate(corners, center, angle), fill=1)
    elif shape == "triangle":
        corners = [
            (r * math.cos(a), r * math.sin(a))
            for a in (-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))
        ]
        draw.polygon(_rotate(corners, center, angle), fill=1)
    elif shape == "star":
        corners = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rk = r if k % 2 == 0 else 0.45 * r
            corners.append((rk * math.cos(a), rk * math.sin(a)))
        draw.polygon(_rotate(corners, center, angle), fill=1)
    elif shape == "cross":
        w = 0.3 * r
        corners = [
            (-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w),
            (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w),
        ]  # fmt: skip
        draw.polygon(_rotate(corners, center, angle), fill=1)
    else:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")
    return np.asarray(canvas, dtype=bool)


def _shade(color):
    """Secondary colour for stripes and dots: darker for light colours,
    lighter for dark ones."""
    color = np.asarray(color, np.float32)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    if luminance > 110:
        shaded = color * 0.6
    else:
        shaded = color + (255.0 - color) * 0.45
    return np.rint(shaded).astype(np.uint8)


def _texture_pattern(rng, texture, size):
    """Boolean `(size, size)` map of where the secondary shade goes."""
    if texture == "solid":
        return None
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    if texture == "striped":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5.0, 8.0) * size / 112.0
        t = xs * np.cos(angle) + ys * np.sin(angle)
        return (t / period) % 1.0 < 0.35
    period = rng.uniform(6.0, 9.0) * size / 112.0
    offset = rng.uniform(0, period, size=2)
    dx = (xs + offset[0]) % period - period / 2
    dy = (ys + offset[1]) % period - period / 2
    return dx * dx + dy * dy < (0.22 * period) ** 2


def _position_name(centroid, size):
    x, y = centroid
    col = min(int(3 * x / size), 2)
    row = min(int(3 * y / size), 2)
    vertical = ("top", "", "bottom")[row]
    horizontal = ("left", "", "right")[col]
    name = " ".join(part for part in (vertical, horizontal) if part)
    return name or "center"


def _position_phrase(position):
    if position == "center":
        return "in the center"
    if position in ("top", "bottom"):
        return f"at the {position}"
    if position in ("left", "right"):
        return f"on the {position}"
    return f"in the {position}"


# ---------------------------------------------------------------------------
# Captions.


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(color, shape):
    return f"{_article(color)} {color} {shape}"


def _join(phrases):
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _relation(obj, other, other_index, obj_index, overlaps, size):
    """How `obj` relates to `other` (relations read `obj REL other`)."""
    dx = obj.centroid[0] - other.centroid[0]
    dy = obj.centroid[1] - other.centroid[1]
    threshold = 0.12 * size
    parts = []
    if dy < -threshold:
        parts.append("above")
    elif dy > threshold:
        parts.append("below")
    if dx < -threshold:
        parts.append("to the left of")
    elif dx > threshold:
        parts.append("to the right of")
    if overlaps:
        # Later objects are drawn over earlier ones.
        parts.append("in front of" if obj_index > other_index else "behind")
    if not parts:
        parts.append("next to")
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _short_caption(objects, order, background):
    """Every object with its colour, grouping identical ones, then the
    background."""
    groups = {}
    for i in order:
        key = (objects[i].color, objects[i].shape)
        groups[key] = groups.get(key, 0) + 1
    phrases = []
    for (color, shape), count in groups.items():
        if count == 1:
            phrases.append(_noun_phrase(color, shape))
        else:
            phrases.append(
                f"{_COUNT_WORDS[count]} {color} {SHAPE_PLURALS[shape]}"
            )
    return (
        f"{_join(phrases)} on {_article(background)} {background} background"
    )


def _positional_caption(objects, order):
    phrases = [
        f"{_noun_phrase(objects[i].color, objects[i].shape)} "
        f"{_position_phrase(objects[i].position)}"
        for i in order
    ]
    return _join(phrases)


def _describe(obj):
    words = [obj.size, obj.color]
    if obj.texture != "solid":
        words.append(obj.texture)
    words.append(obj.shape)
    return " ".join(words)


def _dense_caption(objects, order, background, overlaps, size):
    count = len(objects)
    noun = "object" if count == 1 else "objects"
    sentences = [
        f"{_COUNT_WORDS[count].capitalize()} {noun} on "
        f"{_article(background)} {background} background."
    ]
    anchor = order[0]
    first = objects[anchor]
    sentences.append(
        f"{_article(first.size).capitalize()} {_describe(first)} is "
        f"{_position_phrase(first.position)}."
    )
    for i in order[1:]:
        obj = objects[i]
        relation = _relation(
            obj, first, anchor, i, overlaps[i][anchor], size
        )
        sentences.append(
            f"{_article(obj.size).capitalize()} {_describe(obj)} is "
            f"{_position_phrase(obj.position)}, {relation} the "
            f"{first.color} {first.shape}."
        )
    return " ".join(sentences)


def _noisy_caption(rng, salient, config):
    """Alt-text-like caption about the salient object only."""
    if rng.uniform() < config.noisy_empty_prob:
        return "", False
    color = salient.color
    wrong = False
    with_color = rng.uniform() < config.noisy_color_prob
    if with_color and rng.uniform() < config.noisy_wrong_color_prob:
        others = [name for name in COLORS if name != salient.color]
        color = others[rng.integers(len(others))]
        wrong = True
    obj = f"{color} {salient.shape}" if with_color else salient.shape
    template = _NOISY_TEMPLATES[rng.integers(len(_NOISY_TEMPLATES))]
    if "{object}" not in template:
        # A bare file name alone would not name the object: append it.
        template = template + " " + "{object}"
    pattern = _FILE_NAME_PATTERNS[rng.integers(len(_FILE_NAME_PATTERNS))]
    file_name = pattern.format(
        n4=f"{rng.integers(10000):04d}", n2=f"{rng.integers(100):02d}"
    )
    shop, shop2 = rng.choice(len(_SHOP_PHRASES), size=2, replace=False)
    caption = template.format(
        object=obj,
        file=file_name,
        shop=_SHOP_PHRASES[shop],
        shop2=_SHOP_PHRASES[shop2],
    )
    style = rng.uniform()
    if style < 0.15:
        caption = caption.upper()
    elif style < 0.4:
        caption = caption[0].upper() + caption[1:]
    return caption, wrong


# ---------------------------------------------------------------------------
# Scenes.


def generate_scene(rng, config=None):
    """Draws one random scene.

    Args:
        rng: a `numpy.random.Generator`; the scene is a pure function of its
            state (see `scene_rng`).
        config: a `SceneConfig` (default `SceneConfig()`).

    Returns:
        A `Scene`.

    Example:

    ```python
    scene = generate_scene(np.random.default_rng(0), SceneConfig())
    ```
    """
    if config is None:
        config = SceneConfig()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "`rng` must be a numpy.random.Generator, got "
            f"{type(rng).__name__}."
        )
    if not isinstance(config, SceneConfig):
        raise TypeError(
            f"`config` must be a SceneConfig, got {type(config).__name__}."
        )
    size = config.image_size
    image, background = _background(rng, size, config.background_noise_std)
    num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    color_names = list(COLORS)

    instance = np.zeros((size, size), np.uint8)
    full_masks = []
    specs = []
    for _ in range(num_objects):
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = color_names[rng.integers(len(color_names))]
        size_name = SIZES[rng.integers(len(SIZES))]
        texture = TEXTURES[rng.integers(len(TEXTURES))]
        low, high = SIZE_RADIUS_FRACTION[size_name]
        radius = rng.uniform(low, high) * size * config.object_scale
        angle = rng.uniform(0, 2 * np.pi)
        placed = None
        for _attempt in range(config.placement_attempts):
            margin = radius + 1.0
            center = (
                rng.uniform(margin, size - margin),
                rng.uniform(margin, size - margin),
            )
            shape_mask = _shape_mask(shape, center, radius, angle, size)
            if not shape_mask.any():
                continue
            candidate = instance.copy()
            candidate[shape_mask] = len(specs) + 1
            keeps_visible = all(
                np.count_nonzero(candidate == j + 1)
                >= config.min_visible_fraction * np.count_nonzero(full_masks[j])
                for j in range(len(specs))
            )
            if keeps_visible:
                placed = (shape_mask, candidate)
                break
        if placed is None:
            continue
        shape_mask, instance = placed
        full_masks.append(shape_mask)
        specs.append((shape, color, size_name, texture))
        pattern = _texture_pattern(rng, texture, size)
        image[shape_mask] = COLORS[color]
        if pattern is not None:
            image[shape_mask & pattern] = _shade(COLORS[color])

    class_lookup = np.zeros(len(specs) + 1, np.uint8)
    color_lookup = np.zeros(len(specs) + 1, np.uint8)
    objects = []
    for j, (shape, color, size_name, texture) in enumerate(specs):
        class_lookup[j + 1] = SHAPES.index(shape) + 1
        color_lookup[j + 1] = color_names.index(color) + 1
        ys, xs = np.nonzero(instance == j + 1)
        centroid = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
        objects.append(
            SceneObject(
                shape=shape,
                color=color,
                size=size_name,
                texture=texture,
                bbox=(
                    int(xs.min()),
                    int(ys.min()),
                    int(xs.max()) + 1,
                    int(ys.max()) + 1,
                ),
                centroid=centroid,
                area=int(xs.size),
                position=_position_name(centroid, size),
            )
        )
    mask = class_lookup[instance]
    color_mask = color_lookup[instance]
    # Most salient first: largest visible area, ties by drawing order.
    order = sorted(range(len(objects)), key=lambda i: (-objects[i].area, i))
    overlaps = [
        [bool(np.any(full_masks[i] & full_masks[j])) for j in range(len(objects))]
        for i in range(len(objects))
    ]
    synthetic = (
        _short_caption(objects, order, background),
        _positional_caption(objects, order),
        _dense_caption(objects, order, background, overlaps, size),
    )
    noisy, wrong = _noisy_caption(rng, objects[order[0]], config)
    return Scene(
        image=image,
        mask=mask,
        color_mask=color_mask,
        instance_mask=instance,
        objects=tuple(objects),
        background=background,
        noisy_caption=noisy,
        noisy_color_is_wrong=wrong,
        synthetic_captions=synthetic,
        salient_index=order[0],
    )
