"""The v2 generation of the Python SDK (llama-cloud 2.14+, `client.batches`) through pollgate,
using the SDK's public API only: the v1 checks, mirrored wherever the v2 routes allow. Each check
runs when it is defined, in file order; the last line printed is the summary. Run by
tests/sdk/run.sh.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import llama_cloud
from llama_cloud import AsyncLlamaCloud, LlamaCloud, RateLimitError, UnprocessableEntityError

from suite import (
    PG, SIM, TOKEN_A, TOKEN_B, Suite, answers, answers_since, dump, expect_equal, metric, pollgate,
    report, sim_control, upstream, wait_until,
)

BATCH_A = "bat-a-running"  # RUNNING, 2,500 results
BATCH_A_DONE = "bat-a-done"
BATCH_B = "bat-b-running"
PROJECT_A = "5f3c1a2e-7b4d-4e8a-9c61-0a1b2c3d4e5f"
RESULTS_IN_BATCH_A = 2500
# Batches added to tenant A's 27, so that the default page size (100) takes two pages.
ADDED_BATCHES = 120

via = LlamaCloud(api_key=TOKEN_A, base_url=PG)
direct = LlamaCloud(api_key=TOKEN_A, base_url=SIM)
suite = Suite()

for n in range(ADDED_BATCHES):
    status = ("COMPLETED", "FAILED", "RUNNING")[n % 3]
    sim_control(f"/_sim/batches?token={TOKEN_A}&id=bat-sdk-{n:03}&results=1&status={status}")


def walk(client, **query):
    return dump(client.batches.list(**query))


async def walk_async(**query):
    async with AsyncLlamaCloud(api_key=TOKEN_A, base_url=PG) as client:
        return dump([b async for b in client.batches.list(**query)])


# --- Get with its results, and cursor paging of the list.

@suite.check
def get_with_results():
    got = via.batches.get(BATCH_A, expand=["results"])
    expect_equal(len(got.results), RESULTS_IN_BATCH_A, "results")
    expect_equal(got.model_dump(), direct.batches.get(BATCH_A, expand=["results"]).model_dump(),
                 "batch through pollgate vs direct")
    expect_equal(via.batches.get(BATCH_A).results, None, "results unless expanded")


@suite.check
def paging_every_batch():
    pages = upstream("v2_list")
    got = walk(via)
    expect_equal(len(got), 27 + ADDED_BATCHES, "batches")
    expect_equal(upstream("v2_list") - pages, 2, "pages of 100")
    expect_equal(got, walk(direct), "batches through pollgate vs direct")


@suite.check
def paging_with_a_status_filter():
    got = walk(via, status="COMPLETED")
    assert got and all(b["status"] == "COMPLETED" for b in got), "only completed batches"
    expect_equal(got, walk(direct, status="COMPLETED"), "completed batches")


@suite.check
def paging_with_a_custom_page_size():
    got = walk(via, page_size=7)
    expect_equal(len(got), 27 + ADDED_BATCHES, "batches")
    expect_equal(got, walk(direct, page_size=7), "batches by 7")


@suite.check
def paging_async_client():
    for query in ({}, {"status": "FAILED"}, {"page_size": 11}):
        expect_equal(asyncio.run(walk_async(**query)), walk(direct, **query), f"async {query}")


# --- Cancel.

@suite.check
def cancel_invalidates_cached_pages():
    client = LlamaCloud(api_key=TOKEN_B, base_url=PG)
    running = lambda: [b["id"] for b in walk(client, status="RUNNING")]  # noqa: E731
    assert BATCH_B in running(), "listed as running"
    before = client.batches.get(BATCH_B, expand=["results"])
    fetched = upstream("v2_get")
    client.batches.get(BATCH_B, expand=["results"])
    expect_equal(upstream("v2_get"), fetched, "the second read is a hit")
    expect_equal(client.batches.cancel(BATCH_B).status, "CANCELLED", "cancel answer")
    after = client.batches.get(BATCH_B, expand=["results"])
    expect_equal(upstream("v2_get"), fetched + 1, "the read after the cancel is fetched")
    expect_equal((before.status, after.status), ("RUNNING", "CANCELLED"), "status")
    assert BATCH_B not in running(), "the cached list pages were purged too"


# --- Validation: pollgate's 422 is the SDK's error, at once, with no retry.

@suite.check
def invalid_queries_raise_422_without_retries():
    calls = [
        ("batches", lambda: via.batches.list(status="running")),  # the literal is upper case
        ("batch", lambda: via.batches.get(BATCH_A, project_id="not-a-uuid")),
    ]
    for route, call in calls:
        seen, fetched = pollgate(route, "rejected"), upstream("v2_get") + upstream("v2_list")
        try:
            call()
            raise AssertionError(f"{route}: accepted")
        except UnprocessableEntityError:
            pass
        expect_equal(pollgate(route, "rejected") - seen, 1, f"requests on {route}")
        expect_equal(upstream("v2_get") + upstream("v2_list"), fetched, "upstream requests")


# --- 429: the upstream rate-limits; pollgate's shield answers the SDK's retries.

@suite.check
def rate_limit_is_shielded_and_the_call_succeeds_after_the_backoff():
    sim_control(f"/_sim/fault?status=429&retry_after=1&times=1&routes=v2_get&only_token={TOKEN_A}")
    fetched, shielded = upstream("v2_get"), pollgate("batch", "backed_off")
    backoffs = metric("pollgate_backoffs_started_total")
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        first = pool.submit(lambda: via.batches.get(BATCH_A_DONE))
        wait_until("the back-off", lambda: metric("pollgate_backoffs_started_total") > backoffs)
        # Another poller of the same credential, during the back-off: pollgate answers it.
        second = pool.submit(lambda: via.batches.get(BATCH_A_DONE, expand=["results"]))
        wait_until("pollgate's own 429", lambda: pollgate("batch", "backed_off") > shielded)
        expect_equal(upstream("v2_get"), fetched + 1, "upstream requests during the back-off")
        expect_equal(first.result().id, BATCH_A_DONE, "first call")
        elapsed = time.monotonic() - started
        expect_equal(len(second.result().results), 10, "second call")
    # The 429, one probe when the back-off ended, and the other variant's fill.
    expect_equal(upstream("v2_get") - fetched, 3, "upstream requests in all")
    assert 0.9 <= elapsed < 5, f"the call took {elapsed:.2f} s for a 1 s back-off"
    report("429", f"upstream {upstream('v2_get') - fetched}, "
                  f"answered by the shield {pollgate('batch', 'backed_off') - shielded}")


@suite.check
def a_rate_limit_without_retry_after_costs_about_one_second():
    # pollgate backs off 1 s (± 20 %), about what the SDK would wait on its own (0.375-0.5 s):
    # a longer default made one such 429 cost a call seconds more through pollgate than direct.
    sim_control(f"/_sim/fault?status=429&times=1&routes=v2_get&only_token={TOKEN_A}")
    fetched = upstream("v2_get")
    started = time.monotonic()
    via.batches.get(BATCH_A_DONE, project_id=PROJECT_A)
    elapsed = time.monotonic() - started
    expect_equal(upstream("v2_get") - fetched, 2, "upstream requests (the 429, the probe)")
    assert elapsed < 2.5, f"a 429 without Retry-After cost the call {elapsed:.2f} s"
    report("429 without Retry-After", f"the call took {elapsed:.2f} s")


@suite.check
def rate_limit_error_once_the_retries_are_spent():
    sim_control(f"/_sim/fault?status=429&retry_after=1&routes=v2_get&only_token={TOKEN_B}")
    client = LlamaCloud(api_key=TOKEN_B, base_url=PG, max_retries=1)
    fetched = upstream("v2_get")
    started = time.monotonic()
    try:
        client.batches.get(BATCH_B)
        raise AssertionError("a rate-limited call succeeded")
    except RateLimitError:
        pass
    elapsed = time.monotonic() - started
    # The 429, then the SDK's one retry after the 1 s back-off: the probe, refused again.
    expect_equal(upstream("v2_get") - fetched, 2, "upstream requests")
    assert 0.9 <= elapsed < 3, f"gave up after {elapsed:.2f} s"


# --- Cache key: per-request SDK headers never split it.

@suite.check
def fifty_concurrent_pollers_cost_one_upstream_request():
    fetched, answered = upstream("v2_list"), answers("batches")
    query = {"page_size": 13, "status": "RUNNING"}

    def sync_poller(n):
        # Per-request headers that differ: x-stainless-read-timeout (from the timeout) and
        # x-stainless-retry-count (what a retry sends).
        client = LlamaCloud(api_key=TOKEN_A, base_url=PG, timeout=30 + n)
        retry = {"x-stainless-retry-count": str(n % 4)}
        return dump(client.batches.list(**query, extra_headers=retry).items)

    async def async_pollers(n):
        async with AsyncLlamaCloud(api_key=TOKEN_A, base_url=PG) as client:
            pages = await asyncio.gather(*(client.batches.list(**query) for _ in range(n)))
        return [dump(p.items) for p in pages]

    with ThreadPoolExecutor(26) as pool:
        pages = list(pool.map(sync_poller, range(25)))
        pages += pool.submit(lambda: asyncio.run(async_pollers(25))).result()
    expect_equal(len(pages), 50, "pollers")
    assert all(p == pages[0] for p in pages) and len(pages[0]) == 13, "one page for all"
    expect_equal(upstream("v2_list") - fetched, 1,
                 f"upstream requests for 50 pollers "
                 f"(pollgate answered {answers_since('batches', answered)})")
    report("50 pollers", f"upstream {upstream('v2_list') - fetched}")


suite.finish(f"python {llama_cloud.__version__} (v2)")
