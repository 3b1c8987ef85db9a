"""Preset behaviour shared by the TIPS preprocessing classes."""

from keras_hub.src.utils.python_utils import classproperty


class TIPSPresetMixin:
    """`backbone_cls` and named-preset `from_preset` for keras-hub classes.

    keras-hub finds a tokenizer, image converter or preprocessor of a preset
    through its `backbone_cls`; `from_preset` also accepts the named TIPS
    presets (downloaded and converted once, see `keras_tips.presets`).
    """

    @classproperty
    def backbone_cls(cls):
        # Imported lazily: the backbone module does not depend on this one,
        # and keras-hub only needs the class for preset lookups.
        from keras_tips.backbone import TIPSBackbone

        return TIPSBackbone

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Loads from a preset directory, a keras-hub handle or a named
        TIPS preset (downloaded and converted once, see `keras_tips.presets`).
        """
        from keras_tips.presets import resolve_preset

        return super().from_preset(resolve_preset(preset), **kwargs)
