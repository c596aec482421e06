"""TimeSformer video classification and embedding, its video decoder and its batch jobs, usable without Towhee.

Nothing here imports Towhee: the decoder gives RGB uint8 arrays with their times (and imports neither Towhee nor
torch); the Towhee operator `video_decode/` wraps them as `towhee.types.VideoFrame`s.

    from timesformer_video import ActionClassifier, VideoDecoder
    classify = ActionClassifier('timesformer_k400_8x224', weights='TimeSformer_divST_8x32_224_K400.pyth')
    labels, scores, feature = classify(VideoDecoder().frames('archery.mp4'))

Modules, one concept each: `zoo` (a model's record: architecture, weights, transform, labels), `model` (the network),
`checkpoints` (reading every released format), `build` (record -> ready model), `sampling` (which frames make a
clip), `transform` (frames -> clip views),
`classifier` (frames -> labels, scores, feature), `decode` (video -> lazy frames), `frames` (the lazy-frames
protocol), `display` (lazy frames as thumbnails in notebooks), `timing` and `windows` (which frames a time range
holds; sliding windows over long videos), `explain` (attention maps: where the model looked), `export`, `timeline`,
`errors`, `synthetic` (test videos whose frames carry their index); `jobs` is the batch tool (`timesformer-videos`).
The Towhee operators at the repository root (`timesformer.py`, `video_decode/`) are thin glue around
`ActionClassifier` and `VideoDecoder`.

Names below are imported on first use, so `import timesformer_video.jobs` stays cheap (no torch) for Ray workers.
"""

import importlib

_EXPORTS = {
    'ActionClassifier': 'classifier', 'merge_views': 'classifier',
    'build_model': 'build', 'create_model': 'build', 'resolve_device': 'build', 'autocast': 'build',
    'PRECISIONS': 'build',
    'ClipTransform': 'transform',
    'ModelCfg': 'zoo', 'get_cfg': 'zoo', 'register_model': 'zoo', 'supported_model_names': 'zoo',
    'VideoDecoder': 'decode', 'LazyFrames': 'decode', 'Frames': 'frames', 'Video': 'frames',
    'TimesformerVideoError': 'errors',
    'summarize': 'windows', 'WindowRow': 'windows', 'Timeline': 'timeline',
    'Explanation': 'explain',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'{__name__}.{module}'), name)
