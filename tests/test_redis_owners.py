"""The sessions of an owner on RedisStore, one server: the owner suite and the index's guarantees.

The same suite runs on a Cluster (test_redis_cluster.py) and under Sentinel
(test_redis_sentinel.py).
"""

from __future__ import annotations

from typing import Iterator

import pytest
import redis

from wsgisession.stores.redis import RedisStore
from wsgisession.testing import FakeClock

from .redis_owner_suite import RedisOwnerSuite
from .support import REDIS_URL, RUN_ID, require_service

PREFIX = f"wsgisession-owners-{RUN_ID}:"


@pytest.fixture(scope="module")
def redis_url() -> str:
    return require_service("Redis", REDIS_URL)


class TestRedisOwners(RedisOwnerSuite):
    @pytest.fixture(params=["url", "decoding-client"])
    def store(self, request: pytest.FixtureRequest, redis_url: str, clock: FakeClock) -> Iterator[RedisStore]:
        # Both kinds of reply: bytes from a client built from the URL, str from
        # a client passed in with decode_responses=True.  Every key under the
        # prefix is deleted afterwards.
        if request.param == "url":
            store = RedisStore(redis_url, prefix=PREFIX, clock=clock)
        else:
            store = RedisStore(redis.Redis.from_url(redis_url, decode_responses=True), prefix=PREFIX, clock=clock)
        yield store
        leftovers = list(store.client.scan_iter(match=PREFIX + "*", count=1000))
        if leftovers:
            store.client.delete(*leftovers)
        store.client.close()
