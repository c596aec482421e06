"""Errors that cross Ray or Towhee are still told apart by type, not by their text.

Ray: the exception objects are built as Ray builds them (a replica's constructor error inside the creation task's
`RayTaskError`, inside the `ActorDiedError` Ray pickles to the driver, re-raised by Ray Data `from
SystemException()`), and once for real on a local Ray. Towhee 1.1.3 keeps only the text of an operator's
constructor error, so the seed example checks for the weights by type before building its pipeline.
"""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from timesformer_video.errors import WeightsUnavailableError
from timesformer_video.jobs.errors import ReplicaStartError
from timesformer_video.jobs.operators import OperatorSpec
from timesformer_video.jobs.ray_engine import RayEngine, replica_start_error

ROOT = Path(__file__).resolve().parents[1]
REPLICA_MESSAGE = 'on node-7: FileNotFoundError: weights file not found: /data/w.pth'

ray_exceptions = pytest.importorskip('ray.exceptions')


def task_error(cause: BaseException) -> 'ray_exceptions.RayTaskError':
    """A RayTaskError as a worker makes it for an exception raised in a task (here: an actor's `__init__`)."""
    return ray_exceptions.RayTaskError('__init__', 'Traceback (most recent call last): ...', cause,
                                       proctitle='ray::MapWorker', pid=1234, ip='10.0.0.7')


def raised_from(error: BaseException, cause: BaseException) -> BaseException:
    try:
        raise error from cause
    except BaseException as e:  # noqa: BLE001 - the raised object itself, with its chain set
        return e


def test_a_replica_whose_constructor_failed_is_found_in_rays_actor_died_error():
    sent = ray_exceptions.ActorDiedError.from_task_error(task_error(ReplicaStartError(REPLICA_MESSAGE)))
    received = ray_exceptions.RayError.from_bytes(sent.to_bytes())  # the driver's copy, through Ray's pickling
    data_module = pytest.importorskip('ray.data.exceptions')
    at_driver = raised_from(received, data_module.SystemException())  # as Ray Data's iterator re-raises it
    assert type(at_driver) is ray_exceptions.ActorDiedError
    found = replica_start_error(at_driver)
    assert type(found) is ReplicaStartError and str(found) == REPLICA_MESSAGE


@pytest.mark.parametrize('wrap', [
    pytest.param(lambda e: task_error(e), id='task_error'),
    pytest.param(lambda e: task_error(e).as_instanceof_cause(), id='as_instanceof_cause'),
    pytest.param(lambda e: task_error(raised_from(ray_exceptions.UserCodeException('UDF failed'), e)),
                 id='user_code_exception'),
    pytest.param(lambda e: pickle.loads(pickle.dumps(task_error(e))), id='pickled_task_error'),
])
def test_a_replica_start_error_is_found_through_each_of_rays_wrappings(wrap):
    found = replica_start_error(wrap(ReplicaStartError(REPLICA_MESSAGE)))
    assert isinstance(found, ReplicaStartError) and str(found) == REPLICA_MESSAGE


@pytest.mark.parametrize('error', [
    pytest.param(ray_exceptions.ActorDiedError.from_task_error(task_error(ValueError(REPLICA_MESSAGE))),
                 id='other_constructor_error'),
    pytest.param(task_error(RuntimeError(f'ReplicaStartError: {REPLICA_MESSAGE}')), id='same_text_other_type'),
    pytest.param(ray_exceptions.ActorDiedError(), id='actor_died_without_cause'),
])
def test_other_ray_errors_are_not_taken_for_a_replica_start_error(error):
    assert replica_start_error(error) is None


def test_a_chain_that_loops_ends():
    a, b = RuntimeError('a'), RuntimeError('b')
    a.__context__, b.__context__ = b, a
    assert replica_start_error(a) is None


def test_ray_engine_reports_a_replica_that_cannot_load_the_model(tmp_path):
    """For real, on a local Ray: a missing weights file fails each replica's constructor."""
    pytest.importorskip('ray')
    missing = tmp_path / 'missing.pth'
    with RayEngine(OperatorSpec(weights=str(missing)), workers=1) as engine:
        with pytest.raises(ReplicaStartError) as caught:
            list(engine.run([str(tmp_path / 'a.mp4')]))
    message = str(caught.value)
    assert message.startswith('a Ray replica could not load the model on ')
    assert f'FileNotFoundError: weights file not found: {missing}' in message


def test_seed_example_without_weights_exits_2_with_the_checkpoint_modules_message(tmp_path, monkeypatch):
    """The script as a user runs it; its message is the one the checkpoint module raises, found by type."""
    from timesformer_video.checkpoints import resolve_weights
    from timesformer_video.zoo import get_cfg

    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('TOWHEE_HOME', str(tmp_path / 'towhee'))
    monkeypatch.setenv('TIMESFORMER_WEIGHTS_BASE_URL', 'http://127.0.0.1:9')  # nothing listens: no download
    with pytest.raises(WeightsUnavailableError) as expected:  # what the operator itself would raise
        resolve_weights(get_cfg('timesformer_k400_8x224'), progress=False)
    out = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'seed_example.py'), str(tmp_path / 'a.mp4')],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert f'No predictions: {expected.value}\nTo try the pipeline without pretrained weights' in out.stderr
    assert 'Traceback' not in out.stderr
