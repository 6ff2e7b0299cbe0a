"""What a test does when a service it starts itself cannot be set up: skip, or fail when required.

The tests that start a real service (the HTCondor pool in tests/test_htcondor_pool.py, the Slurm
cluster and its munged in tests/test_slurm.py, the XRootD server of tests/test_xrootd.py) call
these two functions instead of `pytest.skip`. The rule:

- Without BB_REQUIRE_SERVICES (a plain `pytest`, `make test`), a service that cannot be set up
  skips its tests with the reason, so that a laptop without Slurm still runs the rest.
- With BB_REQUIRE_SERVICES=1 (`make test-slow` sets it), the run was asked to exercise the
  services: a service that could be set up here but was not (a missing package, an unreachable
  mirror, a daemon that does not come up, a venv that does not run inside the chroot) FAILS the
  test with the same message. A green `make test-slow` then means the services really ran.
- Only a machine that can never run the service (not Linux, not root, which these set-ups need
  for chroot, mount and daemons that switch users) still skips under BB_REQUIRE_SERVICES=1, and
  the reason says so: `impossible_here`, never `unavailable`, is for that case alone.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_SERVICES = "BB_REQUIRE_SERVICES"


def services_required() -> bool:
    """Whether this run was asked to require the services (BB_REQUIRE_SERVICES set, not 0)."""
    return os.environ.get(REQUIRE_SERVICES, "").strip() not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """A service that could be set up on this machine was not: fail if required, else skip."""
    if services_required():
        pytest.fail(
            f"{reason}\n({REQUIRE_SERVICES}=1: a service that cannot be set up fails the test)",
            pytrace=False,
        )
    pytest.skip(reason)


def impossible_here(reason: str) -> NoReturn:
    """This machine can never run the service (not Linux, not root): a skip, even if required."""
    if services_required():
        reason += f" (this machine can never run it, so even {REQUIRE_SERVICES}=1 skips)"
    pytest.skip(reason)
