"""`from_preset` shared by every TIPS class, and the hook for its loader.

The backbone, tokenizer, image converter, preprocessor and tasks all load
presets through `TIPSPresetMixin.from_preset`, which hands the call to the
preset loader, `keras_tips.presets.load_preset`. The loader builds these
classes when it converts a checkpoint, so it comes after them: it is not
imported here but installs itself with `use_preset_loader` when the package
imports it (`import keras_tips`, which any `keras_tips.*` import runs
first).
"""

_load_preset = None


def use_preset_loader(load_preset):
    """Installs the function every TIPS `from_preset` loads presets with.

    Args:
        load_preset: `load_preset(cls, load, preset, **kwargs)`, where
            `load` is keras-hub's `from_preset` of `cls`;
            `keras_tips.presets` installs its `load_preset`.
    """
    global _load_preset
    _load_preset = load_preset


class TIPSPresetMixin:
    """`from_preset` of the TIPS classes: named presets and checkpoints too.

    Put it before the keras-hub base class (`Backbone`, `Tokenizer`,
    `ImageConverter`, `Preprocessor`, `Task`), whose `from_preset` then
    loads the resolved preset. A class that needs keyword arguments from
    the caller lists them in `required_preset_arguments`.
    """

    required_preset_arguments = ()

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Loads the class from a preset.

        `preset` is one of:
        - a named TIPS preset (`keras_tips.list_presets()`), e.g.
          `"tips_v2_b14"`: the official checkpoint is downloaded, converted
          once and cached (see `keras_tips.presets`); `"tips_tiny_scenes"`
          ships inside the package;
        - a local preset directory written by `save_to_preset` or
          `tools/convert_checkpoint.py`;
        - a Hugging Face `transformers` TIPSv2 checkpoint: a
          `Tipsv2Model.save_pretrained` directory or a Hub handle such as
          `"hf://google/tipsv2-b14"`, converted once and cached (see
          `keras_tips.transformers_checkpoint`);
        - any keras-hub handle (`kaggle://`, `hf://` of a keras-hub preset,
          ...).

        Args:
            preset: string, as above.
            **kwargs: passed to the keras-hub loader, e.g. `load_weights`
                (backbones and tasks: load the weights (True) or keep a
                random initialisation of the same architecture). Loaded
                weights are checked: a preset holding NaN or Inf raises a
                `ValueError` naming the weight.
        """
        if _load_preset is None:
            raise RuntimeError(
                "The TIPS preset loader is not installed; import keras_tips "
                "(it installs keras_tips.presets) before loading a preset."
            )
        return _load_preset(cls, super().from_preset, preset, **kwargs)
