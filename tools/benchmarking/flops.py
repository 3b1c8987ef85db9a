"""Analytic FLOP counts of the TIPS encoders and of one pretraining step.

Only matrix multiplications are counted, at 2 FLOPs per multiply-accumulate;
norms, softmax, biases, activations and losses are not (they are a few
percent of the total for every released size). The benchmarks divide these
counts by measured time to get achieved GFLOP/s and compare it with the
machine's matmul peak (the roofline).
"""


def transformer_block_flops(tokens, hidden_dim, ffn_macs_per_token):
    """FLOPs of one pre-norm attention block on `tokens` tokens.

    Counts the fused qkv projection, the attention scores `Q K^T` and the
    weighted sum `A V` (summed over heads: `tokens**2 * hidden_dim` MACs
    each, independent of the head count), the output projection and the
    feed-forward. Norms, softmax, biases and activations are not counted.

    Args:
        tokens: int. Sequence length.
        hidden_dim: int. Token width.
        ffn_macs_per_token: int. Multiply-accumulates of the feed-forward
            per token.
    """
    macs = (
        tokens * hidden_dim * 3 * hidden_dim  # qkv
        + tokens * tokens * hidden_dim  # Q K^T
        + tokens * tokens * hidden_dim  # A V
        + tokens * hidden_dim * hidden_dim  # output projection
        + tokens * ffn_macs_per_token  # MLP / SwiGLU
    )
    return 2 * macs


def vision_encoder_flops(
    hidden_dim,
    num_layers,
    mlp_dim,
    ffn_layer="mlp",
    patch_size=14,
    image_size=(224, 224),
    batch_size=1,
    num_prefix_tokens=2,
    **unused_config,
):
    """Forward FLOPs of `TIPSVisionEncoder` (or a DINOv2 of the same shape).

    Patch embedding (a `patch_size`-strided convolution, i.e. one
    `(3 p^2) x D` matmul per patch) plus `num_layers` blocks on
    `num_prefix_tokens + patches` tokens (CLS and register token for TIPS).

    Args:
        hidden_dim, num_layers, mlp_dim, ffn_layer, patch_size: the encoder
            architecture (`keras_tips.variants.vision_config(...)` can be
            passed with `**`; other keys are ignored).
        image_size: `(height, width)` in pixels.
        batch_size: int. Images per batch.
        num_prefix_tokens: int. Tokens before the patches.

    Returns:
        int, FLOPs for the whole batch.

    Example:
    ```python
    from keras_tips.variants import vision_config
    vision_encoder_flops(**vision_config("B"), image_size=(224, 224))
    # 4.4e10 FLOPs per image
    ```
    """
    from keras_tips.layers.feed_forward import swiglu_hidden_dim

    if ffn_layer not in ("mlp", "swiglu"):
        raise ValueError(
            f"`ffn_layer` must be 'mlp' or 'swiglu'. Received: {ffn_layer!r}"
        )
    height, width = image_size
    patches = (height // patch_size) * (width // patch_size)
    tokens = num_prefix_tokens + patches
    if ffn_layer == "mlp":
        ffn_macs = 2 * hidden_dim * mlp_dim
    else:
        inner = swiglu_hidden_dim(mlp_dim)
        ffn_macs = hidden_dim * 2 * inner + inner * hidden_dim
    patch_embed = 2 * patches * (3 * patch_size * patch_size) * hidden_dim
    blocks = num_layers * transformer_block_flops(tokens, hidden_dim, ffn_macs)
    return batch_size * (patch_embed + blocks)


def text_encoder_flops(
    hidden_dim, num_layers, mlp_dim, sequence_length, batch_size=1,
    **unused_config,
):
    """Forward FLOPs of `TIPSTextEncoder` on padded `sequence_length` tokens.

    The embedding lookup and mean pooling are not matmuls and not counted.

    Args:
        hidden_dim, num_layers, mlp_dim: the text architecture
            (`keras_tips.variants.text_config(...)` can be passed with `**`).
        sequence_length: int. Padded token count.
        batch_size: int. Texts per batch.

    Returns:
        int, FLOPs for the whole batch.
    """
    block = transformer_block_flops(
        sequence_length, hidden_dim, 2 * hidden_dim * mlp_dim
    )
    return batch_size * num_layers * block


def projection_head_flops(input_dim, hidden_dim, bottleneck_dim, num_layers,
                          num_prototypes, tokens=1):
    """Forward FLOPs of `training.heads.ProjectionHead` on `tokens` tokens.

    An MLP of `num_layers` Dense layers (`input_dim -> hidden_dim -> ... ->
    bottleneck_dim`) and the product with the `bottleneck_dim x
    num_prototypes` prototype matrix.

    Args:
        input_dim: int. Width of the head's input (the encoder width).
        hidden_dim: int. Width of the hidden MLP layers.
        bottleneck_dim: int. Width of the last MLP layer.
        num_layers: int >= 1. Dense layers in the MLP.
        num_prototypes: int. Output logits per token.
        tokens: int. Tokens the head runs on.

    Returns:
        int, FLOPs for all `tokens`.
    """
    widths = [input_dim] + [hidden_dim] * (num_layers - 1) + [bottleneck_dim]
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    macs += bottleneck_dim * num_prototypes
    return 2 * tokens * macs


def pretraining_step_flops(vision_config, text_config, config, batch_size,
                           contrastive_on_masked_view=False):
    """FLOPs of one `TIPSPretrainer` step (forward and backward).

    Per example the step runs, with gradients, the student vision encoder
    on the (masked) global crop and on every local crop, the text encoder on
    the noisy and the synthetic caption, the CLS head on the local crops'
    CLS tokens and the patch head on the global crop's patch tokens (plus
    an unmasked global pass for the contrastive loss unless
    `contrastive_on_masked_view`); and, without gradients, the EMA teacher's
    vision encoder on the global crop (none with `head_only_ema` when the
    unmasked student pass serves as the teacher's) and its CLS and patch
    heads. A backward pass costs twice its forward
    (gradients of the inputs and of the weights), so the trained parts
    count 3x their forward FLOPs and the teacher 1x.

    Args:
        vision_config: dict. The vision encoder's `get_config()` (or
            `keras_tips.variants.vision_config(...)`).
        text_config: dict. The text encoder's `get_config()`.
        config: `training.config.PretrainConfig`.
        batch_size: int. Examples per step.
        contrastive_on_masked_view: bool. As in `TIPSPretrainer`.

    Returns:
        int, FLOPs of the whole step.

    Example:
    ```python
    from training.config import PretrainConfig
    from keras_tips import variants
    config = PretrainConfig.for_recipe("tips", model_variant="S/14")
    pretraining_step_flops(variants.vision_config("S"),
                           variants.text_config("S"), config, batch_size=1)
    # about 1.3e11 FLOPs per example
    ```
    """
    vision = {
        key: vision_config[key]
        for key in ("hidden_dim", "num_layers", "mlp_dim", "ffn_layer",
                    "patch_size")
        if key in vision_config
    }
    width = vision["hidden_dim"]
    patch_size = vision.get("patch_size", 14)
    global_size = config.global_crop_size
    local_size = config.local_crop_size
    patches = (global_size // patch_size) ** 2

    def encoder(size):
        return vision_encoder_flops(**vision, image_size=(size, size))

    def head(num_prototypes, tokens):
        return projection_head_flops(
            width, config.head_hidden_dim, config.head_bottleneck_dim,
            config.head_num_layers, num_prototypes, tokens,
        )

    patch_prototypes = (
        config.patch_num_prototypes if config.separate_patch_head
        else config.cls_num_prototypes
    )
    student = (
        encoder(global_size)
        + config.num_local_crops * encoder(local_size)
        + text_encoder_flops(
            text_config["hidden_dim"], text_config["num_layers"],
            text_config["mlp_dim"], config.text_max_length, batch_size=2,
        )
        + head(config.cls_num_prototypes, config.num_local_crops)
        + head(patch_prototypes, patches)
    )
    if not contrastive_on_masked_view:
        student += encoder(global_size)
    teacher_encoder = encoder(global_size)
    if config.head_only_ema and not contrastive_on_masked_view:
        teacher_encoder = 0
    teacher = (
        teacher_encoder
        + head(config.cls_num_prototypes, 1)
        + head(patch_prototypes, patches)
    )
    return batch_size * (3 * student + teacher)
