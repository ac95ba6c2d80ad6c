// The v1 generation of the TypeScript SDK (@llamaindex/llama-cloud up to 2.13.x,
// `client.beta.batch`) through pollgate, using the SDK's public API only. Checks run in file
// order; the last line printed is the summary. Run by tests/sdk/run.sh (NODE_PATH points at the
// pinned node_modules).
'use strict';

const { LlamaCloud, RateLimitError, UnprocessableEntityError } = require('@llamaindex/llama-cloud');
const { VERSION } = require('@llamaindex/llama-cloud/version');
const s = require('./suite.cjs');

const JOB_A = 'job-a-running'; // 2,500 items in every status
const JOB_B = 'job-b-running'; // 50 items, tenant B: the one this suite cancels
const ITEMS_IN_JOB_A = 2500;

const via = new LlamaCloud({ apiKey: s.TOKEN_A, baseURL: s.PG });
const direct = new LlamaCloud({ apiKey: s.TOKEN_A, baseURL: s.SIM });
const walk = (client, query = {}) => s.collect(client.beta.batch.jobItems.list(JOB_A, query));

// --- Paging: auto-pagination through pollgate reads what the sim serves, in order.

async function pagingEveryItem() {
  const got = await walk(via);
  s.expectEqual(got.length, ITEMS_IN_JOB_A, 'items');
  s.expectEqual(got, await walk(direct), 'items through pollgate vs direct');
}

async function pagingWithAStatusFilter() {
  const got = await walk(via, { status: 'failed' });
  s.assert(got.length && got.every((i) => i.status === 'failed'), 'only failed items');
  s.expectEqual(got, await walk(direct, { status: 'failed' }), 'failed items');
}

async function pagingWithACustomPageSize() {
  const got = await walk(via, { limit: 333 });
  s.expectEqual(got.length, ITEMS_IN_JOB_A, 'items');
  s.expectEqual(got, await walk(direct, { limit: 333 }), 'items by 333');
}

// --- Job calls.

async function jobStatus() {
  const got = await via.beta.batch.getStatus(JOB_A);
  s.expectEqual(got.job.status, 'running', 'status');
  s.expectEqual(got, await direct.beta.batch.getStatus(JOB_A), 'status');
}

async function cancelInvalidatesCachedPages() {
  const client = new LlamaCloud({ apiKey: s.TOKEN_B, baseURL: s.PG });
  const page = async () => (await client.beta.batch.jobItems.list(JOB_B, { limit: 50 })).items;
  const before = await page();
  const fetched = await s.upstream('v1_items');
  await page();
  s.expectEqual(await s.upstream('v1_items'), fetched, 'the second read is a hit');
  s.expectEqual((await client.beta.batch.cancel(JOB_B, {})).status, 'cancelled', 'cancel answer');
  const after = await page();
  s.expectEqual(await s.upstream('v1_items'), fetched + 1, 'the read after the cancel is fetched');
  s.assert(JSON.stringify(after) !== JSON.stringify(before), 'the pre-cancel page was not served');
  s.assert(after.some((i) => i.status === 'cancelled'), 'unfinished items are cancelled');
  s.expectEqual((await client.beta.batch.getStatus(JOB_B)).job.status, 'cancelled', 'job status');
}

// --- Validation: pollgate's 422 is the SDK's error, at once, with no retry.

async function outOfRangeLimitsRaise422WithoutRetries() {
  for (const limit of [0, 1001]) {
    const [seen, fetched] = [await s.pollgate('items', 'rejected'), await s.upstream('v1_items')];
    await s.expectError(
      UnprocessableEntityError,
      () => via.beta.batch.jobItems.list(JOB_A, { limit }),
      `limit=${limit}`,
    );
    s.expectEqual((await s.pollgate('items', 'rejected')) - seen, 1, `requests for limit=${limit}`);
    s.expectEqual(await s.upstream('v1_items'), fetched, 'upstream requests');
  }
}

// --- 429: the upstream rate-limits; pollgate's shield answers the SDK's retries.

async function rateLimitIsShieldedAndTheCallSucceedsAfterTheBackoff() {
  await s.simControl(
    `/_sim/fault?status=429&retry_after=1&times=1&routes=v1_items&only_token=${s.TOKEN_A}`,
  );
  const fetched = await s.upstream('v1_items');
  const shielded = await s.pollgate('items', 'backed_off');
  const backoffs = await s.metric('pollgate_backoffs_started_total');
  const started = Date.now();
  const first = via.beta.batch.jobItems.list(JOB_A, { limit: 11 });
  await s.waitUntil('the back-off', async () =>
    (await s.metric('pollgate_backoffs_started_total')) > backoffs);
  // Another poller of the same credential, during the back-off: pollgate answers it.
  const second = via.beta.batch.jobItems.list(JOB_A, { limit: 12 });
  await s.waitUntil("pollgate's own 429", async () =>
    (await s.pollgate('items', 'backed_off')) > shielded);
  s.expectEqual(await s.upstream('v1_items'), fetched + 1, 'upstream requests during the back-off');
  s.expectEqual((await first).items.length, 11, 'first call');
  const elapsed = (Date.now() - started) / 1000;
  s.expectEqual((await second).items.length, 12, 'second call');
  // The 429, one probe when the back-off ended, and the other page's fill.
  const upstreamRequests = (await s.upstream('v1_items')) - fetched;
  s.expectEqual(upstreamRequests, 3, 'upstream requests in all');
  s.assert(elapsed >= 0.9 && elapsed < 5, `the call took ${elapsed} s for a 1 s back-off`);
  s.report('429', `upstream ${upstreamRequests}, answered by the shield ${
    (await s.pollgate('items', 'backed_off')) - shielded}`);
}

async function aRateLimitWithoutRetryAfterCostsAboutOneSecond() {
  // pollgate backs off 1 s (± 20 %), about what the SDK would wait on its own (0.375-0.5 s):
  // a longer default made one such 429 cost a call seconds more through pollgate than direct.
  await s.simControl(`/_sim/fault?status=429&times=1&routes=v1_items&only_token=${s.TOKEN_A}`);
  const fetched = await s.upstream('v1_items');
  const started = Date.now();
  await via.beta.batch.jobItems.list(JOB_A, { limit: 14 });
  const elapsed = (Date.now() - started) / 1000;
  const upstreamRequests = (await s.upstream('v1_items')) - fetched;
  s.expectEqual(upstreamRequests, 2, 'upstream requests (the 429, the probe)');
  s.assert(elapsed < 2.5, `a 429 without Retry-After cost the call ${elapsed} s`);
  s.report('429 without Retry-After', `the call took ${elapsed} s`);
}

async function rateLimitErrorOnceTheRetriesAreSpent() {
  await s.simControl(
    `/_sim/fault?status=429&retry_after=1&routes=v1_items&only_token=${s.TOKEN_B}`,
  );
  const client = new LlamaCloud({ apiKey: s.TOKEN_B, baseURL: s.PG, maxRetries: 1 });
  const fetched = await s.upstream('v1_items');
  const started = Date.now();
  await s.expectError(RateLimitError, () => client.beta.batch.jobItems.list(JOB_B, { limit: 13 }),
    'a rate-limited call');
  const elapsed = (Date.now() - started) / 1000;
  // The 429, then the SDK's one retry after the 1 s back-off: the probe, refused again.
  s.expectEqual((await s.upstream('v1_items')) - fetched, 2, 'upstream requests');
  s.assert(elapsed >= 0.9 && elapsed < 3, `gave up after ${elapsed} s`);
}

// --- Cache key: per-request SDK headers never split it.

async function fiftyConcurrentPollersCostOneUpstreamRequest() {
  const fetched = await s.upstream('v1_items');
  const answered = await s.answers('items');
  const query = { limit: 17, offset: 170, status: 'completed' };
  // A client each, with per-request headers that differ: X-Stainless-Timeout (from the
  // timeout) and X-Stainless-Retry-Count (what a retry sends).
  const pages = await Promise.all(Array.from({ length: 50 }, async (_, n) => {
    const client = new LlamaCloud({
      apiKey: s.TOKEN_A,
      baseURL: s.PG,
      timeout: 30_000 + 1000 * n,
      defaultHeaders: { 'X-Stainless-Retry-Count': String(n % 4) },
    });
    return JSON.stringify((await client.beta.batch.jobItems.list(JOB_A, query)).items);
  }));
  s.assert(pages.every((p) => p === pages[0]) && JSON.parse(pages[0]).length === 17,
    'one page for all');
  const upstreamRequests = (await s.upstream('v1_items')) - fetched;
  s.expectEqual(upstreamRequests, 1,
    `upstream requests for 50 pollers (pollgate answered ${
      await s.answersSince('items', answered)})`);
  s.report('50 pollers', `upstream ${upstreamRequests}`);
}

s.run(`typescript ${VERSION} (v1)`, [
  pagingEveryItem,
  pagingWithAStatusFilter,
  pagingWithACustomPageSize,
  jobStatus,
  cancelInvalidatesCachedPages,
  outOfRangeLimitsRaise422WithoutRetries,
  rateLimitIsShieldedAndTheCallSucceedsAfterTheBackoff,
  aRateLimitWithoutRetryAfterCostsAboutOneSecond,
  rateLimitErrorOnceTheRetriesAreSpent,
  fiftyConcurrentPollersCostOneUpstreamRequest,
]);
