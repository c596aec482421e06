from .video_decoder import VideoDecoder


def ffmpeg(*args, **kwargs):
    return VideoDecoder(*args, **kwargs)
