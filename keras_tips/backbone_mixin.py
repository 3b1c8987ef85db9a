"""LoRA targets and quantization shared by the TIPS backbones."""

from keras_tips.quantization import DenseQuantizationMixin


class TIPSBackboneMixin(DenseQuantizationMixin):
    """keras-hub `Backbone` behaviour that fits the TIPS architecture.

    - `enable_lora(rank)` trains the low-rank adapters alone (biases
      included in the frozen weights, so `save_lora_weights` keeps all that
      training changed). Without names it puts LoRA on the attention
      projections of every block: the fused `qkv` projection and the
      attention output projection (`proj` in the vision blocks, `out_proj`
      in the text blocks; the text MLP's `proj` is left alone). Names that
      match no LoRA-capable layer raise an error instead of freezing the
      whole model with nothing left to train.
    - `quantize(mode)` quantizes the dense and embedding layers
      (`DenseQuantizationMixin`).

    A class using it defines `_lora_attention_layers()`, the list of the
    default LoRA target layers.
    """

    def _lora_attention_layers(self):
        raise NotImplementedError

    def default_lora_layer_names(self):
        """Names of the default LoRA targets (see `enable_lora`)."""
        return sorted({layer.name for layer in self._lora_attention_layers()})

    def enable_lora(self, rank, target_layer_names=None):
        """Freezes the backbone and adds LoRA weights to some layers.

        Args:
            rank: int. Rank of the LoRA factorisation.
            target_layer_names: `None` (default) for the attention
                projections of every block, or a list of layer names (e.g.
                `["qkv"]`); every name must match at least one layer that
                supports LoRA (`Dense` and `EinsumDense` layers).

        Example:
        ```python
        backbone.enable_lora(4)
        backbone.save_lora_weights("adapter.lora.h5")
        ```
        """
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(
                f"`rank` must be a positive integer. Received: rank={rank!r}"
            )
        layers = [
            layer
            for layer in self._flatten_layers(include_self=False)
            if layer.weights
        ]
        if target_layer_names is None:
            targets = {id(layer) for layer in self._lora_attention_layers()}
        else:
            if isinstance(target_layer_names, str):
                target_layer_names = [target_layer_names]
            names = list(target_layer_names)
            capable = [
                layer for layer in layers if hasattr(layer, "enable_lora")
            ]
            unmatched = [
                name
                for name in names
                if not any(layer.name == name for layer in capable)
            ]
            if unmatched:
                available = sorted({layer.name for layer in capable})
                raise ValueError(
                    f"`target_layer_names` {unmatched} match no layer of "
                    f"{self.name} that supports LoRA; the names are "
                    f"{available}. Received: target_layer_names={names}"
                )
            targets = {id(layer) for layer in capable if layer.name in names}
        self.trainable = True
        self._lora_enabled_layers = []
        self._lora_rank = rank
        for layer in self._flatten_layers(include_self=False):
            layer.trainable = False
        # Indexed like keras-hub's `save_lora_weights`: layers with weights,
        # in `_flatten_layers` order.
        for index, layer in enumerate(layers):
            if id(layer) in targets:
                layer.trainable = True
                layer.enable_lora(rank)
                # Only the adapter trains, so that `save_lora_weights`
                # (which stores the adapter alone) keeps everything learned.
                bias = getattr(layer, "bias", None)
                if bias is not None:
                    bias.trainable = False
                self._lora_enabled_layers.append(index)
