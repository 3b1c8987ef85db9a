"""Official TIPSv2 DPT checkpoints: the weight-name map and the loader.

Maps every variable of a `DPTDecoder` to its name and layout in the
official PyTorch `state_dict` and loads such weights (a dict or an `.npz`
file) after checking every key, shape and value.
"""

import numpy as np

from keras_tips.validation import check_finite_arrays


def dpt_weight_map(decoder):
    """`(variable, key, transform)` for every weight, official PyTorch names.

    The keys are those of the official decoders' `state_dict`
    (`dpt.reassemble.out_projections.0.weight`, ..., `head.weight`).
    """

    def conv(layer, key, bias=True):
        entries = [
            (layer.kernel, key + ".weight",
             lambda w: np.transpose(w, (2, 3, 1, 0)))
        ]
        if bias:
            entries.append((layer.bias, key + ".bias", None))
        return entries

    def conv_transpose(layer, key):
        # PyTorch (in, out, kh, kw) -> Keras (kh, kw, out, in).
        return [
            (layer.kernel, key + ".weight",
             lambda w: np.transpose(w, (2, 3, 1, 0))),
            (layer.bias, key + ".bias", None),
        ]

    def dense(layer, key):
        return [
            (layer.kernel, key + ".weight", np.transpose),
            (layer.bias, key + ".bias", None),
        ]

    r = decoder.reassemble
    p = "dpt.reassemble"
    entries = []
    for i in range(4):
        entries += conv(r.out_projections[i], f"{p}.out_projections.{i}")
        if r.readout_projects:
            entries += dense(r.readout_projects[i], f"{p}.readout_projects.{i}")
    entries += conv_transpose(r.upsample_4x, f"{p}.resize_layers.0")
    entries += conv_transpose(r.upsample_2x, f"{p}.resize_layers.1")
    entries += conv(r.downsample_2x, f"{p}.resize_layers.3")
    for i, layer in enumerate(decoder.convs):
        entries += conv(layer, f"dpt.convs.{i}", bias=False)
    for i, block in enumerate(decoder.fusion_blocks):
        q = f"dpt.fusion_blocks.{i}"
        units = [("main_unit", block.main_unit)]
        if block.has_residual:
            units.append(("residual_unit", block.residual_unit))
        for unit_name, unit in units:
            entries += conv(unit.conv1, f"{q}.{unit_name}.conv1", bias=False)
            entries += conv(unit.conv2, f"{q}.{unit_name}.conv2", bias=False)
        entries += conv(block.out_conv, f"{q}.out_conv")
    entries += conv(decoder.project, "dpt.project")
    entries += dense(decoder.head, "head")
    return entries


def load_dpt_weights(decoder, weights):
    """Loads official PyTorch-layout DPT weights into a built `DPTDecoder`.

    Every key, shape and value (no NaN or Inf) is checked before anything
    is assigned.

    Args:
        decoder: a built `DPTDecoder` of the checkpoint's architecture.
        weights: a dict of arrays with the official `state_dict` names, or
            the path of an `.npz` file holding them. A `bin_centers` array
            (depth decoders) is accepted and ignored.
    """
    path = "weights"
    if not isinstance(weights, dict):
        path = str(weights)
        with np.load(weights, allow_pickle=False) as data:
            weights = {key: data[key] for key in data.files}
    if not decoder.built:
        raise ValueError(
            "Build the decoder first (call it on features, or build the "
            "TIPSDensePredictor that holds it)."
        )
    entries = dpt_weight_map(decoder)
    staged = []
    for variable, key, transform in entries:
        if key not in weights:
            raise ValueError(f"{path}: missing DPT weight '{key}'.")
        value = np.asarray(weights[key])
        if transform is not None:
            value = transform(value)
        check_finite_arrays({key: value}, path)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{path}: '{key}' has shape {np.shape(weights[key])}, which "
                f"gives {value.shape}; the decoder expects "
                f"{tuple(variable.shape)}."
            )
        staged.append((variable, value))
    extra = sorted(
        set(weights) - {key for _, key, _ in entries} - {"bin_centers"}
    )
    if extra:
        raise ValueError(
            f"{path}: unexpected DPT weight(s) {extra[:10]}; the checkpoint "
            "does not match this decoder."
        )
    for variable, value in staged:
        variable.assign(value.astype(variable.dtype))
