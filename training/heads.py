"""DINO / iBOT projection head used by TIPS self-distillation."""

import numbers

import keras
from keras import ops

from keras_tips.normalization import inverse_l2_norm
from keras_tips.normalization import l2_normalize


def _cosine_logits(x, prototypes, epsilon):
    """`x @ (P / max(||P||, epsilon))` per column of `P`, `(..., K)`.

    `x` is in the compute dtype, the prototypes `P` `(D, K)` in float32.

    The forward pass computes `(x @ P) * s` with `s = 1 / max(||P||,
    epsilon)` per prototype, so the matmul reads the prototypes as they are
    (XLA:CPU fuses a normalization of the matmul operand into the matmul
    and runs it slowly: written `x @ (P * s)`, the S/14 training step took
    15.2 s on JAX against 8.3 s). The gradient is written out so that
    nothing of the size of the logits is computed beyond the two matmuls
    that need them: with `G = x^T @ g` (`(D, K)`, the size of `P`),

        dP = s * G - s^3 * P * sum_d(P * G)    (where ||P|| > epsilon)
        dx = (g * s) @ P^T

    since `sum_i g_ik (x @ P)_ik = sum_d P_dk G_dk`. Autodiff of the
    forward pass instead reduces `g * (x @ P)` over every row, and on
    XLA:CPU transposes the `(rows, K)` gradient for the weight matmul.
    """
    @ops.custom_gradient
    def forward(x, prototypes):
        squared_norms = ops.sum(ops.square(prototypes), axis=0)
        scale = ops.rsqrt(ops.maximum(squared_norms, epsilon * epsilon))
        # In the compute dtype, for both matmuls (the logits' gradient
        # `upstream` has the logits' dtype, which is `x`'s).
        compute_prototypes = ops.cast(prototypes, x.dtype)
        compute_scale = ops.cast(scale, x.dtype)
        logits = ops.matmul(x, compute_prototypes) * compute_scale

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            width = ops.shape(x)[-1]
            rows = ops.reshape(x, (-1, width))
            upstream_rows = ops.reshape(upstream, (-1, ops.shape(upstream)[-1]))
            weight_gradient = ops.cast(
                ops.matmul(ops.transpose(rows), upstream_rows), "float32"
            )
            norm_gradient = ops.where(
                squared_norms > epsilon * epsilon,
                scale * scale * scale
                * ops.sum(prototypes * weight_gradient, axis=0),
                0.0,
            )
            prototypes_gradient = (
                weight_gradient * scale - prototypes * norm_gradient
            )
            x_gradient = ops.matmul(
                upstream * compute_scale, ops.transpose(compute_prototypes)
            )
            return x_gradient, prototypes_gradient

        return logits, grad

    return forward(x, prototypes)


@keras.saving.register_keras_serializable(package="keras_tips")
class ProjectionHead(keras.layers.Layer):
    """DINO projection head: MLP, L2 norm, weight-normalized prototypes.

    The head maps backbone features to `num_prototypes` logits:

    1. an MLP of `num_layers` Dense layers, `input_dim -> hidden_dim -> ... ->
       bottleneck_dim`, with exact GELU between layers and none after the last
       (with `num_layers=1` it is a single Dense to `bottleneck_dim`);
    2. L2 normalization of the bottleneck vector;
    3. a linear layer without bias onto the prototypes, weight-normalized:
       each prototype (column of the `prototypes` weight, shape
       `(bottleneck_dim, num_prototypes)`) is divided by its L2 norm and the
       weight-norm gain is fixed to 1. (DINO v1 freezes `weight_g` at 1 with
       `norm_last_layer=True`; DINOv2 only initialises it to 1 and trains it.)

    Steps 2 and 3 make every logit a cosine similarity in [-1, 1]. Gradients
    reach the raw `prototypes` weight through the normalization, exactly like
    `torch.nn.utils.weight_norm` with a frozen gain.

    The head acts on the last axis, so one instance accepts CLS features
    `(B, D)` (DINO) and patch features `(B, N, D)` (iBOT). Use separate
    instances for the CLS and patch heads when they should not share weights.

    The normalizations run in float32; the Dense layers and the final matmul
    use the layer's compute dtype (so a mixed-precision policy applies).

    Args:
        num_prototypes: int. Number of output logits (prototypes). DINOv2
            uses 65536; TIPS' patch head 32768.
        hidden_dim: int. Width of the hidden MLP layers. Defaults to 2048.
        bottleneck_dim: int. Width of the MLP output. Defaults to 256.
        num_layers: int >= 1. Number of Dense layers in the MLP. Defaults
            to 3.
        use_bias: bool. Whether the MLP Dense layers have biases. Defaults
            to `True`.
        epsilon: float. Norm floor of the two L2 normalizations. Defaults to
            1e-6.
        kernel_initializer: initializer of the Dense kernels and of the
            prototypes. Defaults to a truncated normal with stddev 0.02 (as
            DINOv2).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    cls_head = ProjectionHead(num_prototypes=65536)
    patch_head = ProjectionHead(num_prototypes=32768)
    cls_logits = cls_head(np.zeros((8, 768), "float32"))  # (8, 65536)
    patch_logits = patch_head(np.zeros((8, 256, 768), "float32"))
    ```
    """

    def __init__(
        self,
        num_prototypes=65536,
        hidden_dim=2048,
        bottleneck_dim=256,
        num_layers=3,
        use_bias=True,
        epsilon=1e-6,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg_name, value in (
            ("num_prototypes", num_prototypes),
            ("hidden_dim", hidden_dim),
            ("bottleneck_dim", bottleneck_dim),
            ("num_layers", num_layers),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Integral)
                or value < 1
            ):
                raise ValueError(
                    f"`{arg_name}` must be a positive integer. Received: "
                    f"{value!r}."
                )
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be > 0. Received: {epsilon!r}.")
        self.num_prototypes = int(num_prototypes)
        self.hidden_dim = int(hidden_dim)
        self.bottleneck_dim = int(bottleneck_dim)
        self.num_layers = int(num_layers)
        self.use_bias = bool(use_bias)
        self.epsilon = float(epsilon)
        if kernel_initializer is None:
            kernel_initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

        widths = [self.hidden_dim] * (self.num_layers - 1) + [
            self.bottleneck_dim
        ]
        self.mlp_layers = [
            keras.layers.Dense(
                width,
                use_bias=self.use_bias,
                kernel_initializer=self.kernel_initializer,
                bias_initializer="zeros",
                dtype=self.dtype_policy,
                name=f"mlp_{index}",
            )
            for index, width in enumerate(widths)
        ]
        self.prototypes = None

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(
                "The last axis of the `ProjectionHead` input must be known. "
                f"Received input shape {tuple(input_shape)}."
            )
        shape = tuple(input_shape)
        for layer in self.mlp_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.prototypes = self.add_weight(
            name="prototypes",
            shape=(self.bottleneck_dim, self.num_prototypes),
            initializer=self.kernel_initializer,
            trainable=True,
        )
        self.built = True

    def normalized_prototypes(self):
        """Prototypes with unit L2 norm each, `(bottleneck_dim, K)` float32."""
        prototypes = ops.cast(self.prototypes, "float32")
        return prototypes * inverse_l2_norm(
            prototypes, axis=0, epsilon=self.epsilon
        )

    def call(self, inputs):
        x = inputs
        for index, layer in enumerate(self.mlp_layers):
            x = layer(x)
            if index < self.num_layers - 1:
                x = ops.gelu(x, approximate=False)
        x = l2_normalize(ops.cast(x, "float32"), axis=-1, epsilon=self.epsilon)
        return _cosine_logits(
            ops.cast(x, self.compute_dtype),
            ops.cast(self.prototypes, "float32"),
            self.epsilon,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_prototypes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_prototypes": self.num_prototypes,
                "hidden_dim": self.hidden_dim,
                "bottleneck_dim": self.bottleneck_dim,
                "num_layers": self.num_layers,
                "use_bias": self.use_bias,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
