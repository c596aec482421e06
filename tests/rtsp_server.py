"""A loopback RTSP camera for the live-stream tests: GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0).

Run by Debian's own Python (`/usr/bin/python3`, which has PyGObject from python3-gi), never imported by the tests:
    /usr/bin/python3 tests/rtsp_server.py RTSP_PORT VIDEO.mp4
It serves rtsp://127.0.0.1:RTSP_PORT/cam over TCP (interleaved) and UDP transport, as an IP camera does: the H.264 of
VIDEO.mp4 in RTP (rtph264pay, SPS/PPS before every keyframe), paced at real time by the server's clock, once: when
the video has been sent, it takes no new client and exits half a second later (its clients hear the end first), as
a camera switched off. One media is shared by all clients, so a second client joins where the stream is. Prints
'ready' once it listens; ends on SIGTERM too.

(Debian's rtsp-server-perl was tried first: it relays what ffmpeg publishes with `-f rtsp`, but its clients must
SETUP with UDP `client_port`s; it has no TCP interleaved transport.)
"""

import signal
import sys

import gi

gi.require_version('Gst', '1.0')
gi.require_version('GstRtspServer', '1.0')
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main(rtsp_port: int, video: str):
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address('127.0.0.1')
    server.set_service(str(rtsp_port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{video}" ! qtdemux ! h264parse '
                       f'! rtph264pay name=pay0 pt=96 config-interval=-1 )')
    factory.set_shared(True)
    server.get_mount_points().add_factory('/cam', factory)
    loop = GLib.MainLoop()

    def at_the_end(pad, info):
        if info.get_event().type == Gst.EventType.EOS:
            GLib.idle_add(server.get_mount_points().remove_factory, '/cam')  # no new client from now on
            GLib.timeout_add(500, loop.quit)
        return Gst.PadProbeReturn.OK

    def constructed(factory, media):
        pad = media.get_element().get_by_name('pay0').get_static_pad('src')
        pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, at_the_end)

    factory.connect('media-constructed', constructed)
    if server.attach(None) == 0:
        sys.exit(f'rtsp_server: could not listen on 127.0.0.1:{rtsp_port}')
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print('ready', flush=True)
    loop.run()


if __name__ == '__main__':
    main(int(sys.argv[1]), sys.argv[2])
