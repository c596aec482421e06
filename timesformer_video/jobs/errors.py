"""The job's own failures, one type per kind; the CLI prints their message as is and exits with `exit_code`.

A video that fails is never one of these: it becomes that video's row with its `error`.
"""

from __future__ import annotations

from ..errors import TimesformerVideoError


class JobError(TimesformerVideoError):
    """The job cannot run as asked. The message says what was wrong, what was expected and what to do."""

    exit_code = 1


class InUseError(JobError):
    """A file the job needs is held by another process; waiting for it (or stopping it) is the way out."""

    exit_code = 2


class JobStateError(JobError, RuntimeError):
    """The output or its sidecar cannot be resumed as asked (other settings, unreadable state, ...)."""


class SettingsMismatchError(JobStateError):
    """The existing output (or its unfinished job) was made with other settings than this run's."""


class OutputInUseError(JobStateError, InUseError):
    """Another job holds the output's lock."""


class ListFileError(JobError, ValueError):
    """A list file of inputs cannot be read."""


class MilvusCollectionError(JobError, ValueError):
    """The Milvus collection holds vectors of other settings or of another output; mixing them is refused."""


class MilvusCapacityError(MilvusCollectionError):
    """A path or label is longer than the collection's VARCHAR field (or than any Milvus field) can hold; found
    before any video is processed."""


class LegacyCollectionError(MilvusCollectionError):
    """The Milvus collection was written by an earlier version in a schema this one does not write (one entity per
    video, keyed by path); the message says how to make it again."""


class MilvusInUseError(InUseError):
    """A Milvus Lite database is open in another process (Milvus Lite allows one process per `.db`)."""


class MilvusUnavailableError(JobError):
    """Milvus cannot be opened or reached."""


class MilvusSyncError(JobError):
    """The output is complete but updating the Milvus collection failed. `transient`: the failure may pass (Milvus
    unreachable, busy, timed out), so running the command again can finish the update; else it says why not."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class QueryVideoError(JobError):
    """`search` cannot embed its query video (unreadable, or it stops early); nothing was searched."""


class UsageError(JobError, ValueError):
    """An argument is out of its range (`--window 0`, `-k 0`, `--start` after `--end`, ...): exit status 2, as for
    argparse's own usage errors."""

    exit_code = 2


class QueryRangeError(UsageError):
    """The part of the query video asked for (`--start`/`--end`) holds no frame."""


class ReplicaStartError(JobError, RuntimeError):
    """A replica could not build the operator (e.g. weights missing on that node); a job error, not a video's.

    A replica raises it with a message only, so it pickles: Ray hands the driver this instance inside its own
    exception, where `replica_start_error` finds it.
    """


# Live streams (`watch`): a source that cannot be opened stops the command; the others are gaps, recorded and
# got over by reconnecting.

class StreamOpenError(JobError):
    """A live source cannot be opened at all: no such file or device, an unknown protocol or format, not a media
    stream, or nothing received within `--reconnect-timeout`. Nothing was classified."""


class StreamEndedError(TimesformerVideoError, EOFError):
    """The sender ended the stream (end of file or connection closed); `watch` reconnects with back-off."""


class TimestampJumpError(TimesformerVideoError, ValueError):
    """The stream's timestamps went backwards or leapt ahead (a camera that rebooted, a new sender, a wrapped
    clock); `watch` re-bases them so the stream clock stays monotonic, and records the gap."""
