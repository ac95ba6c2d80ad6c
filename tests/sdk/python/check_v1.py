"""The v1 generation of the Python SDK (llama-cloud up to 2.13.x, `client.beta.batch`) through
pollgate, using the SDK's public API only. Each check runs when it is defined, in file order;
the last line printed is the summary. Run by tests/sdk/run.sh.
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

JOB_A = "job-a-running"  # 2,500 items in every status
JOB_B = "job-b-running"  # 50 items, tenant B: the one this suite cancels
ITEMS_IN_JOB_A = 2500

via = LlamaCloud(api_key=TOKEN_A, base_url=PG)
direct = LlamaCloud(api_key=TOKEN_A, base_url=SIM)
suite = Suite()


def walk(client, **query):
    return dump(client.beta.batch.job_items.list(JOB_A, **query))


async def walk_async(**query):
    async with AsyncLlamaCloud(api_key=TOKEN_A, base_url=PG) as client:
        return dump([item async for item in client.beta.batch.job_items.list(JOB_A, **query)])


# --- Paging: auto-pagination through pollgate reads what the sim serves, in order.

@suite.check
def paging_every_item():
    got = walk(via)
    expect_equal(len(got), ITEMS_IN_JOB_A, "items")
    expect_equal(got, walk(direct), "items through pollgate vs direct")


@suite.check
def paging_with_a_status_filter():
    got = walk(via, status="failed")
    assert got and all(i["status"] == "failed" for i in got), "only failed items"
    expect_equal(got, walk(direct, status="failed"), "failed items")


@suite.check
def paging_with_a_custom_page_size():
    got = walk(via, limit=333)
    expect_equal(len(got), ITEMS_IN_JOB_A, "items")
    expect_equal(got, walk(direct, limit=333), "items by 333")


@suite.check
def paging_async_client():
    for query in ({}, {"status": "completed"}, {"limit": 250}):
        expect_equal(asyncio.run(walk_async(**query)), walk(direct, **query), f"async {query}")


# --- Job calls.

@suite.check
def job_status():
    got = via.beta.batch.get_status(JOB_A)
    expect_equal(got.job.status, "running", "status")
    expect_equal(got.model_dump(), direct.beta.batch.get_status(JOB_A).model_dump(), "status")


@suite.check
def cancel_invalidates_cached_pages():
    client = LlamaCloud(api_key=TOKEN_B, base_url=PG)
    before = dump(client.beta.batch.job_items.list(JOB_B, limit=50).items)
    fetched = upstream("v1_items")
    dump(client.beta.batch.job_items.list(JOB_B, limit=50).items)
    expect_equal(upstream("v1_items"), fetched, "the second read is a hit")
    answer = client.beta.batch.cancel(JOB_B)
    expect_equal(answer.status, "cancelled", "cancel answer")
    after = dump(client.beta.batch.job_items.list(JOB_B, limit=50).items)
    expect_equal(upstream("v1_items"), fetched + 1, "the read after the cancel is fetched")
    assert after != before, "the cached pre-cancel page was not served"
    assert any(i["status"] == "cancelled" for i in after), "unfinished items are cancelled"
    expect_equal(client.beta.batch.get_status(JOB_B).job.status, "cancelled", "job status")


# --- Validation: pollgate's 422 is the SDK's error, at once, with no retry.

@suite.check
def out_of_range_limits_raise_422_without_retries():
    for limit in (0, 1001):
        seen, fetched = pollgate("items", "rejected"), upstream("v1_items")
        try:
            via.beta.batch.job_items.list(JOB_A, limit=limit)
            raise AssertionError(f"limit={limit} was accepted")
        except UnprocessableEntityError:
            pass
        expect_equal(pollgate("items", "rejected") - seen, 1, f"requests for limit={limit}")
        expect_equal(upstream("v1_items"), fetched, "upstream requests")


# --- 429: the upstream rate-limits; pollgate's shield answers the SDK's retries.

@suite.check
def rate_limit_is_shielded_and_the_call_succeeds_after_the_backoff():
    sim_control("/_sim/fault?status=429&retry_after=1&times=1&routes=v1_items"
                f"&only_token={TOKEN_A}")
    fetched, shielded = upstream("v1_items"), pollgate("items", "backed_off")
    backoffs = metric("pollgate_backoffs_started_total")
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        first = pool.submit(lambda: via.beta.batch.job_items.list(JOB_A, limit=11).items)
        wait_until("the back-off", lambda: metric("pollgate_backoffs_started_total") > backoffs)
        # Another poller of the same credential, during the back-off: pollgate answers it.
        second = pool.submit(lambda: via.beta.batch.job_items.list(JOB_A, limit=12).items)
        wait_until("pollgate's own 429", lambda: pollgate("items", "backed_off") > shielded)
        expect_equal(upstream("v1_items"), fetched + 1, "upstream requests during the back-off")
        expect_equal(len(first.result()), 11, "first call")
        elapsed = time.monotonic() - started
        expect_equal(len(second.result()), 12, "second call")
    # The 429, one probe when the back-off ended, and the other page's fill.
    expect_equal(upstream("v1_items") - fetched, 3, "upstream requests in all")
    assert 0.9 <= elapsed < 5, f"the call took {elapsed:.2f} s for a 1 s back-off"
    report("429", f"upstream {upstream('v1_items') - fetched}, "
                  f"answered by the shield {pollgate('items', 'backed_off') - shielded}")


@suite.check
def a_rate_limit_without_retry_after_costs_about_one_second():
    # pollgate backs off 1 s (± 20 %), about what the SDK would wait on its own (0.375-0.5 s):
    # a longer default made one such 429 cost a call seconds more through pollgate than direct.
    sim_control(f"/_sim/fault?status=429&times=1&routes=v1_items&only_token={TOKEN_A}")
    fetched = upstream("v1_items")
    started = time.monotonic()
    via.beta.batch.job_items.list(JOB_A, limit=14)
    elapsed = time.monotonic() - started
    expect_equal(upstream("v1_items") - fetched, 2, "upstream requests (the 429, the probe)")
    assert elapsed < 2.5, f"a 429 without Retry-After cost the call {elapsed:.2f} s"
    report("429 without Retry-After", f"the call took {elapsed:.2f} s")


@suite.check
def rate_limit_error_once_the_retries_are_spent():
    sim_control(f"/_sim/fault?status=429&retry_after=1&routes=v1_items&only_token={TOKEN_B}")
    client = LlamaCloud(api_key=TOKEN_B, base_url=PG, max_retries=1)
    fetched = upstream("v1_items")
    started = time.monotonic()
    try:
        client.beta.batch.job_items.list(JOB_B, limit=13)
        raise AssertionError("a rate-limited call succeeded")
    except RateLimitError:
        pass
    elapsed = time.monotonic() - started
    # The 429, then the SDK's one retry after the 1 s back-off: the probe, refused again.
    expect_equal(upstream("v1_items") - fetched, 2, "upstream requests")
    assert 0.9 <= elapsed < 3, f"gave up after {elapsed:.2f} s"


# --- Cache key: per-request SDK headers never split it.

@suite.check
def fifty_concurrent_pollers_cost_one_upstream_request():
    fetched, answered = upstream("v1_items"), answers("items")
    query = {"limit": 17, "offset": 170, "status": "completed"}

    def sync_poller(n):
        # Per-request headers that differ: x-stainless-read-timeout (from the timeout) and
        # x-stainless-retry-count (what a retry sends).
        client = LlamaCloud(api_key=TOKEN_A, base_url=PG, timeout=30 + n)
        retry = {"x-stainless-retry-count": str(n % 4)}
        return dump(client.beta.batch.job_items.list(JOB_A, **query, extra_headers=retry).items)

    async def async_pollers(n):
        async with AsyncLlamaCloud(api_key=TOKEN_A, base_url=PG) as client:
            pages = await asyncio.gather(
                *(client.beta.batch.job_items.list(JOB_A, **query) for _ in range(n)))
        return [dump(p.items) for p in pages]

    with ThreadPoolExecutor(26) as pool:
        pages = list(pool.map(sync_poller, range(25)))
        pages += pool.submit(lambda: asyncio.run(async_pollers(25))).result()
    expect_equal(len(pages), 50, "pollers")
    assert all(p == pages[0] for p in pages) and len(pages[0]) == 17, "one page for all"
    expect_equal(upstream("v1_items") - fetched, 1,
                 f"upstream requests for 50 pollers "
                 f"(pollgate answered {answers_since('items', answered)})")
    report("50 pollers", f"upstream {upstream('v1_items') - fetched}")


suite.finish(f"python {llama_cloud.__version__} (v1)")
