"""LoRA targets and int8 quantization shared by the TIPS backbones."""

import contextlib
import gc

import keras
from keras.src.quantizers.utils import should_quantize_layer

# The layers whose weights `quantize` replaces; the others (LayerNorms,
# the patch convolution, LayerScales, position tables) stay as they are.
_QUANTIZABLE_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Embedding,
)


class TIPSBackboneMixin:
    """keras-hub `Backbone` behaviour that fits the TIPS architecture.

    - `enable_lora(rank)` trains the low-rank adapters alone (biases
      included in the frozen weights, so `save_lora_weights` keeps all that
      training changed). Without names it puts LoRA on the attention
      projections of every block: the fused `qkv` projection and the
      attention output projection (`proj` in the vision blocks, `out_proj`
      in the text blocks; the text MLP's `proj` is left alone). Names that
      match no LoRA-capable layer raise an error instead of freezing the
      whole model with nothing left to train.
    - `quantize(mode)` quantizes the dense and embedding layers and skips
      the layers that have nothing to quantize, without a warning for each.
      Keras runs a full garbage collection for each float weight it drops;
      with the objects that already exist frozen meanwhile, each pass is
      short (B/14 int8 on a 2-core CPU: 29-41 s -> 2-3 s).

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

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Quantizes the dense and embedding layers' weights.

        Args:
            mode: e.g. `"int8"`, as for `keras.Model.quantize`.
            config: optional `keras.quantizers.QuantizationConfig`.
            filters: optional regex, list of regexes or callable further
                restricting the layers, as for `keras.Model.quantize`.
            **kwargs: passed to `keras.Model.quantize`.

        Example:
        ```python
        backbone.quantize("int8")
        ```
        """

        def selected(layer):
            if not isinstance(layer, _QUANTIZABLE_LAYERS):
                return False
            return filters is None or should_quantize_layer(layer, filters)

        with _existing_objects_frozen():
            return super().quantize(
                mode, config=config, filters=selected, **kwargs)


@contextlib.contextmanager
def _existing_objects_frozen():
    """Leaves the objects that exist now out of garbage collections.

    `gc.freeze()` until the block ends, then `gc.unfreeze()` and one full
    collection: collections inside the block only walk what was made inside
    it, and the last one frees what the block dropped. Does nothing when
    objects are frozen already (the caller's freeze is left alone).
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()  # what was dropped in the block, at once
