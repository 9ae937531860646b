"""Redis round trips: each caller gets its own replies whether its fill went alone or with
many others' in one MULTI/EXEC; a failing command or fill fails its caller only."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from broker.pipelines import BatchedPipelines, Pipelines, execute_unchecked

DOUBLE = "return tonumber(ARGV[1]) * 2"


@pytest.fixture(params=["direct", "batched"])
def pipelines(request, redis_client: redis.Redis):
    made = Pipelines(redis_client) if request.param == "direct" else BatchedPipelines(redis_client)
    yield made
    made.close()


def test_a_fill_gets_its_own_replies(pipelines: Pipelines, redis_client: redis.Redis) -> None:
    def fill(pipe) -> None:
        pipe.incr("n")
        pipe.incr("n")
        pipe.get("n")

    assert pipelines.run(fill) == [1, 2, b"2"]


def test_many_threads_each_get_their_own_replies_and_scripts_run(
    pipelines: Pipelines, redis_client: redis.Redis
) -> None:
    double = redis_client.register_script(DOUBLE)
    start = threading.Barrier(32)

    def one(i: int) -> list:
        start.wait()

        def fill(pipe) -> None:
            pipe.rpush(f"list:{i}", i)
            double(args=[i], client=pipe)
            pipe.incr("total")

        return pipelines.run(fill)

    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(one, range(32)))
    assert [r[:2] for r in replies] == [[1, 2 * i] for i in range(32)]
    assert sorted(r[2] for r in replies) == list(range(1, 33))  # each INCR counted once


def test_a_command_error_fails_its_caller_only(pipelines: Pipelines, redis_client) -> None:
    redis_client.set("text", "not a number")
    start = threading.Barrier(2)

    def bad(pipe) -> None:
        pipe.incr("text")

    def good(pipe) -> None:
        pipe.incr("n")

    def run(fill):
        start.wait()
        return pipelines.run(fill)

    with ThreadPoolExecutor(2) as pool:
        failing, passing = pool.submit(run, bad), pool.submit(run, good)
        with pytest.raises(redis.ResponseError, match="not an integer"):
            failing.result()
        assert passing.result() == [1]


def test_a_fill_that_raises_fails_alone(pipelines: Pipelines) -> None:
    def broken(pipe) -> None:
        pipe.incr("n")
        raise ValueError("bad fill")

    with pytest.raises(ValueError, match="bad fill"):
        pipelines.run(broken)
    assert pipelines.run(lambda pipe: pipe.get("n")) == [None]  # its INCR was never sent


def test_redis_down_raises_to_the_caller() -> None:
    down = redis.Redis(port=1, socket_connect_timeout=0.2)
    batched = BatchedPipelines(down)
    try:
        with pytest.raises(redis.ConnectionError):
            batched.run(lambda pipe: pipe.incr("n"))
    finally:
        batched.close()


def test_a_broken_round_trip_fails_its_callers_and_the_thread_serves_on(redis_client) -> None:
    class Flaky(redis.Redis):
        broken = True

        def pipeline(self, transaction=True, shard_hint=None):
            if transaction and Flaky.broken:
                Flaky.broken = False
                raise RuntimeError("no pipeline today")
            return super().pipeline(transaction, shard_hint)

    client = Flaky(connection_pool=redis_client.connection_pool)
    batched = BatchedPipelines(client)
    waiting = ThreadPoolExecutor(1)  # a caller left waiting fails the test, not hangs it
    try:
        first = waiting.submit(batched.run, lambda pipe: pipe.incr("n"))
        with pytest.raises(RuntimeError, match="no pipeline today"):
            first.result(timeout=10)
        second = waiting.submit(batched.run, lambda pipe: pipe.incr("n"))
        assert second.result(timeout=10) == [1]  # not a dead thread
    finally:
        waiting.shutdown(wait=False, cancel_futures=True)
        batched.close()


INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def script_checks(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_script|exists", {}).get("calls", 0))


def test_a_pipeline_runs_its_scripts_without_asking_whether_redis_has_them(
    redis_client: redis.Redis,
) -> None:
    script = redis_client.register_script(INCR_BY)
    script(keys=["t:n"], args=[1])  # loaded
    before = script_checks(redis_client)
    with redis_client.pipeline(transaction=False) as pipe:
        script(keys=["t:n"], args=[2], client=pipe)
        pipe.incr("t:other")
        assert execute_unchecked(pipe) == [3, 1]
    assert script_checks(redis_client) == before


def test_a_script_redis_lost_is_loaded_and_run_once_and_the_rest_once(
    redis_client: redis.Redis,
) -> None:
    script = redis_client.register_script(INCR_BY)
    script(keys=["t:m"], args=[1])
    redis_client.script_flush()  # as after a restart: the server knows no script
    with redis_client.pipeline(transaction=False) as pipe:
        pipe.incr("t:before")
        script(keys=["t:m"], args=[5], client=pipe)
        pipe.incr("t:after")
        assert execute_unchecked(pipe) == [1, 6, 1]
    assert redis_client.mget("t:before", "t:m", "t:after") == [b"1", b"6", b"1"]


def test_a_command_error_is_raised_after_the_others_ran(redis_client: redis.Redis) -> None:
    redis_client.set("t:text", "x")
    with redis_client.pipeline(transaction=False) as pipe:
        pipe.incr("t:text")  # not an integer
        pipe.incr("t:count")
        with pytest.raises(redis.ResponseError):
            execute_unchecked(pipe)
    assert redis_client.get("t:count") == b"1"


def test_a_transaction_is_refused(redis_client: redis.Redis) -> None:
    with redis_client.pipeline(transaction=True) as pipe, pytest.raises(ValueError):
        execute_unchecked(pipe)
