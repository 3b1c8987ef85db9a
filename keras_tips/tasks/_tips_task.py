"""What every TIPS task shares: the backbone check, image samples, presets."""

import keras
from keras_hub.models import Task

from keras_tips.backbone import TIPSBackbone
from keras_tips.empty_batch import EmptyBatchMixin
from keras_tips.preprocessor import TIPSPreprocessor
from keras_tips.preset_mixin import TIPSPresetMixin
from keras_tips.tasks.array_batches import array_batches
from keras_tips.tasks.array_batches import is_array_data
from keras_tips.tasks.array_batches import split_for_validation
from keras_tips.validation import check_encoder_images


def check_backbone(backbone):
    """Returns `backbone` if it is a `keras_tips.TIPSBackbone`, else raises."""
    if not isinstance(backbone, TIPSBackbone):
        raise TypeError(
            "`backbone` must be a keras_tips.TIPSBackbone. Received: "
            f"{type(backbone).__name__}"
        )
    return backbone


class TIPSImageTaskMixin(TIPSPresetMixin):
    """What a keras-hub `Task` on TIPS images needs: classes, samples, presets.

    A plain mixin, for tasks that derive from another keras-hub task class
    (e.g. `ImageClassifier`; deriving from both it and `TIPSImageTask`
    would repeat `Task` in the bases, which Keras' functional models do not
    allow); other tasks derive from `TIPSImageTask`. Calling the task
    checks model-ready images as `TIPSVisionEncoder` does; `from_preset`
    (`TIPSPresetMixin`) also takes the named TIPS presets, and checks the
    loaded weights of the backbone and the task for NaN or Inf;
    `quantize` quantizes the backbone (its dense and embedding layers);
    the head and the preprocessor stay as they are.

    Example:
    ```python
    class MyClassifier(TIPSImageTaskMixin, keras_hub.models.ImageClassifier):
        ...
    ```
    """

    backbone_cls = TIPSBackbone
    preprocessor_cls = TIPSPreprocessor

    def __call__(self, inputs, *args, **kwargs):
        # Model-ready images are checked as the vision encoder checks them
        # (values too when concrete); an empty batch gives empty outputs.
        images = inputs.get("images") if isinstance(inputs, dict) else inputs
        backbone = getattr(self, "backbone", None)
        if backbone is not None and not isinstance(images, keras.KerasTensor):
            training = kwargs.get("training", args[0] if args else None)
            check_encoder_images(
                images, backbone.vision_encoder.patch_size,
                values=not training,
            )
        return super().__call__(inputs, *args, **kwargs)

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Quantizes the backbone's dense and embedding layers.

        The head stays float: it is small, and a float head keeps the
        task's config and weights round-tripping through `save_to_preset`
        and `class_names` able to set it. (Keras' `Model.quantize` on the
        whole task also failed on the preprocessor's unbuilt layers.)

        Args:
            mode: e.g. `"int8"`, as for `keras.Model.quantize`.
            config: optional `keras.quantizers.QuantizationConfig`.
            filters: optional regex, list of regexes or callable further
                restricting the backbone's layers.
            **kwargs: passed to `keras.Model.quantize`.

        Example:
        ```python
        classifier.quantize("int8")
        ```
        """
        self.backbone.quantize(mode, config=config, filters=filters, **kwargs)
        # What `keras.Model.quantize` does after quantizing a model's
        # layers: drop the compiled functions and, on torch, re-track the
        # variables so the dropped float weights are not kept.
        self.train_function = None
        self.test_function = None
        self.predict_function = None
        self._post_quantize(mode, **kwargs)

    def fit(self, x=None, y=None, batch_size=None, sample_weight=None,
            validation_data=None, validation_split=None, shuffle=True,
            **kwargs):
        """`keras.Model.fit`, with `shuffle` honoured for in-memory arrays.

        keras-hub's `Task.fit` batches arrays in their given order and
        Keras ignores `shuffle` for the dataset it makes of them; here
        arrays (and tensors) are batched in a new random order every epoch
        when `shuffle` is true (Keras' default), as `keras.Model.fit`
        does. `validation_split` takes the last samples before shuffling,
        as in Keras. Datasets are passed on as they are.

        Example:
        ```python
        classifier.fit(images, labels, batch_size=16, epochs=3)
        ```
        """
        if not is_array_data(x):
            return super().fit(
                x=x, y=y, batch_size=batch_size, sample_weight=sample_weight,
                validation_data=validation_data,
                validation_split=validation_split, shuffle=shuffle, **kwargs)
        if validation_split and validation_data is None:
            (x, y, sample_weight), validation_data = split_for_validation(
                (x, y, sample_weight), validation_split)
        validation_batch_size = kwargs.pop("validation_batch_size", None)
        if validation_data is not None:
            validation = keras.utils.unpack_x_y_sample_weight(validation_data)
            if is_array_data(validation[0]) and all(
                    part is None or is_array_data(part)
                    for part in validation[1:]):
                # In order, at the validation (else the fit's) batch size.
                validation_data = array_batches(
                    *validation,
                    batch_size=validation_batch_size or batch_size)
        batches = array_batches(x, y, sample_weight, batch_size=batch_size,
                                shuffle=bool(shuffle))
        # Shuffled here: Keras would only warn that it ignores `shuffle`.
        return super().fit(x=batches, validation_data=validation_data,
                           shuffle=False, **kwargs)

    def preprocess_samples(self, x, y=None, sample_weight=None):
        # Images may come bare or under "images"; the model takes a tensor.
        if isinstance(x, dict):
            x = x["images"]
        if self.preprocessor is not None:
            x = self.preprocessor({"images": x})["images"]
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)


class TIPSImageTask(EmptyBatchMixin, TIPSImageTaskMixin, Task):
    """A keras-hub `Task` on TIPS images: classes, samples and presets.

    Samples are images, bare or under `"images"`, put through the image
    converter of the `preprocessor` when there is one; `from_preset` also
    takes the names of the official TIPS presets. Calling the task checks
    model-ready images as `TIPSVisionEncoder` does; an empty batch gives
    empty outputs from `__call__`, `predict` and `predict_on_batch`.

    Example:
    ```python
    class MyTask(TIPSImageTask):
        def __init__(self, backbone, preprocessor=None, **kwargs):
            self.backbone = check_backbone(backbone)
            self.preprocessor = preprocessor
            images = keras.Input(shape=(224, 224, 3), name="images")
            outputs = backbone.vision_encoder(images)["cls_embeddings"]
            super().__init__(inputs=images, outputs=outputs, **kwargs)
    ```
    """
