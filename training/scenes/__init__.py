"""The synthetic scenes: a procedural image-text dataset and its evaluation.

* `generator`: drawing a scene (shapes, colours, textures, background) with
  its segmentation masks and its noisy and synthetic captions;
* `shards`: writing scenes as TFRecord shards (`tools/make_scenes.py`);
* `evaluation`: zero-shot classification, retrieval, zero-shot and
  linear-probe segmentation of a model on held-out scene shards.

The pretraining core (`training.train`, `training.pretrainer`,
`training.pipelines`) reads scene shards like any other image-text records; only
the optional held-out evaluation imports this package.
"""
