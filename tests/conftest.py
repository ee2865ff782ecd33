"""Shared fixtures: one local Ray for the whole session, one multi-node cluster for `cluster` tests.

Ray costs seconds to start (about 5 s here, more on a busy machine), so every test that needs it
takes `ray_session` and shares the one instance. Tests that need another cluster drive it from a
subprocess (a process connects to one Ray at a time).
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

# small object store: the machine is shared and the tests move kilobytes
OBJECT_STORE_BYTES = 150 << 20


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 logical CPUs (the CI machine's cores), started once per session."""
    import ray
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                 logging_level="warning", log_to_driver=False)
        started = True
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_session) -> str:
    """GCS address of the session's Ray, for subprocess drivers that join it."""
    return ray_session.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def cluster():
    """A head and one worker node on 127.0.0.1, 1 CPU each, separate temp dirs; stopped at the
    end of the session (by pid, never with `ray stop`, which would stop every Ray on the machine)."""
    from ray_jobs.cluster import start_cluster, stop_cluster
    # short root: Ray's unix socket paths under it must stay below 108 bytes
    root = tempfile.mkdtemp(prefix="tdc", dir="/tmp")
    c = None
    try:
        c = start_cluster(root, nodes=2, cpus=1)
        yield c
    finally:
        stop_cluster(root)
        shutil.rmtree(root, ignore_errors=True)
        del c
