// The v2 generation of the TypeScript SDK (@llamaindex/llama-cloud 2.15+, `client.batches`)
// through pollgate, using the SDK's public API only: the v1 checks, mirrored wherever the v2
// routes allow. Checks run in file order; the last line printed is the summary. Run by
// tests/sdk/run.sh (NODE_PATH points at the pinned node_modules).
'use strict';

const { LlamaCloud, RateLimitError, UnprocessableEntityError } = require('@llamaindex/llama-cloud');
const { VERSION } = require('@llamaindex/llama-cloud/version');
const s = require('./suite.cjs');

const BATCH_A = 'bat-a-running'; // RUNNING, 2,500 results
const BATCH_A_DONE = 'bat-a-done';
const BATCH_B = 'bat-b-running';
const PROJECT_A = '5f3c1a2e-7b4d-4e8a-9c61-0a1b2c3d4e5f';
const RESULTS_IN_BATCH_A = 2500;
// Batches added to tenant A's 27, so that the default page size (100) takes two pages.
const ADDED_BATCHES = 120;
const BATCHES_OF_A = 27 + ADDED_BATCHES;

const via = new LlamaCloud({ apiKey: s.TOKEN_A, baseURL: s.PG });
const direct = new LlamaCloud({ apiKey: s.TOKEN_A, baseURL: s.SIM });
const walk = (client, query = {}) => s.collect(client.batches.list(query));

async function addBatches() {
  for (let n = 0; n < ADDED_BATCHES; n++) {
    const status = ['COMPLETED', 'FAILED', 'RUNNING'][n % 3];
    const id = `bat-sdk-${String(n).padStart(3, '0')}`;
    await s.simControl(`/_sim/batches?token=${s.TOKEN_A}&id=${id}&results=1&status=${status}`);
  }
}

// --- Get with its results, and cursor paging of the list.

async function getWithResults() {
  const got = await via.batches.get(BATCH_A, { expand: ['results'] });
  s.expectEqual(got.results.length, RESULTS_IN_BATCH_A, 'results');
  s.expectEqual(got, await direct.batches.get(BATCH_A, { expand: ['results'] }),
    'batch through pollgate vs direct');
  s.expectEqual((await via.batches.get(BATCH_A)).results, null, 'results unless expanded');
}

async function pagingEveryBatch() {
  const pages = await s.upstream('v2_list');
  const got = await walk(via);
  s.expectEqual(got.length, BATCHES_OF_A, 'batches');
  s.expectEqual((await s.upstream('v2_list')) - pages, 2, 'pages of 100');
  s.expectEqual(got, await walk(direct), 'batches through pollgate vs direct');
}

async function pagingWithAStatusFilter() {
  const got = await walk(via, { status: 'COMPLETED' });
  s.assert(got.length && got.every((b) => b.status === 'COMPLETED'), 'only completed batches');
  s.expectEqual(got, await walk(direct, { status: 'COMPLETED' }), 'completed batches');
}

async function pagingWithACustomPageSize() {
  const got = await walk(via, { page_size: 7 });
  s.expectEqual(got.length, BATCHES_OF_A, 'batches');
  s.expectEqual(got, await walk(direct, { page_size: 7 }), 'batches by 7');
}

// --- Cancel.

async function cancelInvalidatesCachedPages() {
  const client = new LlamaCloud({ apiKey: s.TOKEN_B, baseURL: s.PG });
  const running = async () => (await walk(client, { status: 'RUNNING' })).map((b) => b.id);
  s.assert((await running()).includes(BATCH_B), 'listed as running');
  const get = () => client.batches.get(BATCH_B, { expand: ['results'] });
  const before = await get();
  const fetched = await s.upstream('v2_get');
  await get();
  s.expectEqual(await s.upstream('v2_get'), fetched, 'the second read is a hit');
  s.expectEqual((await client.batches.cancel(BATCH_B)).status, 'CANCELLED', 'cancel answer');
  const after = await get();
  s.expectEqual(await s.upstream('v2_get'), fetched + 1, 'the read after the cancel is fetched');
  s.expectEqual([before.status, after.status], ['RUNNING', 'CANCELLED'], 'status');
  s.assert(!(await running()).includes(BATCH_B), 'the cached list pages were purged too');
}

// --- Validation: pollgate's 422 is the SDK's error, at once, with no retry.

async function invalidQueriesRaise422WithoutRetries() {
  const calls = [
    ['batches', () => via.batches.list({ status: 'running' })], // the literal is upper case
    ['batch', () => via.batches.get(BATCH_A, { project_id: 'not-a-uuid' })],
  ];
  const fetchedNow = async () => (await s.upstream('v2_get')) + (await s.upstream('v2_list'));
  for (const [route, call] of calls) {
    const [seen, fetched] = [await s.pollgate(route, 'rejected'), await fetchedNow()];
    await s.expectError(UnprocessableEntityError, call, route);
    s.expectEqual((await s.pollgate(route, 'rejected')) - seen, 1, `requests on ${route}`);
    s.expectEqual(await fetchedNow(), fetched, 'upstream requests');
  }
}

// --- 429: the upstream rate-limits; pollgate's shield answers the SDK's retries.

async function rateLimitIsShieldedAndTheCallSucceedsAfterTheBackoff() {
  await s.simControl(
    `/_sim/fault?status=429&retry_after=1&times=1&routes=v2_get&only_token=${s.TOKEN_A}`,
  );
  const [fetched, shielded] = [await s.upstream('v2_get'), await s.pollgate('batch', 'backed_off')];
  const backoffs = await s.metric('pollgate_backoffs_started_total');
  const started = Date.now();
  const first = via.batches.get(BATCH_A_DONE);
  await s.waitUntil('the back-off', async () =>
    (await s.metric('pollgate_backoffs_started_total')) > backoffs);
  // Another poller of the same credential, during the back-off: pollgate answers it.
  const second = via.batches.get(BATCH_A_DONE, { expand: ['results'] });
  await s.waitUntil("pollgate's own 429", async () =>
    (await s.pollgate('batch', 'backed_off')) > shielded);
  s.expectEqual(await s.upstream('v2_get'), fetched + 1, 'upstream requests during the back-off');
  s.expectEqual((await first).id, BATCH_A_DONE, 'first call');
  const elapsed = (Date.now() - started) / 1000;
  s.expectEqual((await second).results.length, 10, 'second call');
  // The 429, one probe when the back-off ended, and the other variant's fill.
  const upstreamRequests = (await s.upstream('v2_get')) - fetched;
  s.expectEqual(upstreamRequests, 3, 'upstream requests in all');
  s.assert(elapsed >= 0.9 && elapsed < 5, `the call took ${elapsed} s for a 1 s back-off`);
  s.report('429', `upstream ${upstreamRequests}, answered by the shield ${
    (await s.pollgate('batch', 'backed_off')) - shielded}`);
}

async function aRateLimitWithoutRetryAfterCostsAboutOneSecond() {
  // pollgate backs off 1 s (± 20 %), about what the SDK would wait on its own (0.375-0.5 s):
  // a longer default made one such 429 cost a call seconds more through pollgate than direct.
  await s.simControl(`/_sim/fault?status=429&times=1&routes=v2_get&only_token=${s.TOKEN_A}`);
  const fetched = await s.upstream('v2_get');
  const started = Date.now();
  await via.batches.get(BATCH_A_DONE, { project_id: PROJECT_A });
  const elapsed = (Date.now() - started) / 1000;
  const upstreamRequests = (await s.upstream('v2_get')) - fetched;
  s.expectEqual(upstreamRequests, 2, 'upstream requests (the 429, the probe)');
  s.assert(elapsed < 2.5, `a 429 without Retry-After cost the call ${elapsed} s`);
  s.report('429 without Retry-After', `the call took ${elapsed} s`);
}

async function rateLimitErrorOnceTheRetriesAreSpent() {
  await s.simControl(`/_sim/fault?status=429&retry_after=1&routes=v2_get&only_token=${s.TOKEN_B}`);
  const client = new LlamaCloud({ apiKey: s.TOKEN_B, baseURL: s.PG, maxRetries: 1 });
  const fetched = await s.upstream('v2_get');
  const started = Date.now();
  await s.expectError(RateLimitError, () => client.batches.get(BATCH_B), 'a rate-limited call');
  const elapsed = (Date.now() - started) / 1000;
  // The 429, then the SDK's one retry after the 1 s back-off: the probe, refused again.
  s.expectEqual((await s.upstream('v2_get')) - fetched, 2, 'upstream requests');
  s.assert(elapsed >= 0.9 && elapsed < 3, `gave up after ${elapsed} s`);
}

// --- Cache key: per-request SDK headers never split it.

async function fiftyConcurrentPollersCostOneUpstreamRequest() {
  const fetched = await s.upstream('v2_list');
  const answered = await s.answers('batches');
  const query = { page_size: 13, status: 'RUNNING' };
  // A client each, with per-request headers that differ: X-Stainless-Timeout (from the
  // timeout) and X-Stainless-Retry-Count (what a retry sends).
  const pages = await Promise.all(Array.from({ length: 50 }, async (_, n) => {
    const client = new LlamaCloud({
      apiKey: s.TOKEN_A,
      baseURL: s.PG,
      timeout: 30_000 + 1000 * n,
      defaultHeaders: { 'X-Stainless-Retry-Count': String(n % 4) },
    });
    return JSON.stringify((await client.batches.list(query)).items);
  }));
  s.assert(pages.every((p) => p === pages[0]) && JSON.parse(pages[0]).length === 13,
    'one page for all');
  const upstreamRequests = (await s.upstream('v2_list')) - fetched;
  s.expectEqual(upstreamRequests, 1,
    `upstream requests for 50 pollers (pollgate answered ${
      await s.answersSince('batches', answered)})`);
  s.report('50 pollers', `upstream ${upstreamRequests}`);
}

addBatches().then(() => s.run(`typescript ${VERSION} (v2)`, [
  getWithResults,
  pagingEveryBatch,
  pagingWithAStatusFilter,
  pagingWithACustomPageSize,
  cancelInvalidatesCachedPages,
  invalidQueriesRaise422WithoutRetries,
  rateLimitIsShieldedAndTheCallSucceedsAfterTheBackoff,
  aRateLimitWithoutRetryAfterCostsAboutOneSecond,
  rateLimitErrorOnceTheRetriesAreSpent,
  fiftyConcurrentPollersCostOneUpstreamRequest,
]));
