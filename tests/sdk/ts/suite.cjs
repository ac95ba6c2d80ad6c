// What the TypeScript SDK checks share: where pollgate and the sim are, how to count what
// reached each of them, and a tiny runner that prints the one summary line.
//
// Counting is the point of most checks, so it is done outside the SDK: the sim's own counters
// (`GET /_sim/stats`, what reached the upstream) and pollgate's metrics (`GET /metrics` on the
// admin listener, what reached pollgate and how it was answered).
'use strict';

const PG = process.env.POLLGATE_URL;
const SIM = process.env.SIM_URL;
const ADMIN = process.env.POLLGATE_ADMIN_URL;
const TOKEN_A = 'sk-tenant-a';
const TOKEN_B = 'sk-tenant-b';

// Bounded waits: long enough for a loaded 2-core machine, short enough to fail fast.
const WAIT_LIMIT_MS = 10_000;

async function http(method, url) {
  const r = await fetch(url, { method, signal: AbortSignal.timeout(WAIT_LIMIT_MS) });
  if (!r.ok) throw new Error(`${method} ${url}: ${r.status} ${await r.text()}`);
  return r.text();
}

/** POST to one of the sim's `/_sim/...` control endpoints (never counted by the sim). */
const simControl = async (path) => JSON.parse(await http('POST', SIM + path));
const clearFault = () => http('DELETE', SIM + '/_sim/fault');

/** Requests the sim has answered on one route (`v1_items`, `v2_get`, ...). */
const upstream = async (route) => JSON.parse(await http('GET', SIM + '/_sim/stats')).routes[route];

/** One series of pollgate's metrics, e.g. `pollgate_backoffs_started_total`. */
async function metric(series) {
  const line = (await http('GET', ADMIN + '/metrics'))
    .split('\n')
    .find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** Client requests pollgate answered on `route` with `result` (hit, miss, backed_off...). */
const pollgate = (route, result) =>
  metric(`pollgate_requests_total{route="${route}",result="${result}"}`);

const ANSWERS = ['miss', 'collapsed', 'hit', 'stale', 'backed_off', 'relayed', 'error'];

/** How pollgate has answered `route` so far, by result (for failure messages). */
async function answers(route) {
  const out = {};
  for (const result of ANSWERS) out[result] = await pollgate(route, result);
  return out;
}

async function answersSince(route, before) {
  const now = await answers(route);
  return ANSWERS.filter((r) => now[r] !== before[r])
    .map((r) => `${r} ${now[r] - before[r]}`)
    .join(', ');
}

async function waitUntil(what, condition) {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Every item of an auto-paginated list, as plain data. */
async function collect(pages) {
  const out = [];
  for await (const item of pages) out.push(item);
  return JSON.parse(JSON.stringify(out));
}

function expectEqual(got, want, what) {
  const [g, w] = [JSON.stringify(got), JSON.stringify(want)];
  if (g !== w) throw new Error(`${what}: got ${g.slice(0, 300)}, want ${w.slice(0, 300)}`);
}

function assert(condition, what) {
  if (!condition) throw new Error(what);
}

/** Expects `call` to reject with an instance of `type`. */
async function expectError(type, call, what) {
  try {
    await call();
  } catch (e) {
    if (e instanceof type) return;
    throw new Error(`${what}: got ${e}, want ${type.name}`);
  }
  throw new Error(`${what}: succeeded, want ${type.name}`);
}

/** Counts worth quoting (429, pollers); on stderr, so stdout keeps its one summary line. */
const report = (what, counts) => console.error(`  ${what}: ${counts}`);

/** Runs checks in order; a failing check is reported on stderr and the run goes on. */
async function run(label, checks) {
  let passed = 0;
  let failed = 0;
  for (const check of checks) {
    const started = Date.now();
    let status = 'ok';
    try {
      await check();
      passed++;
    } catch (e) {
      failed++;
      status = 'FAILED';
      console.error(`--- ${check.name}\n${e.stack || e}`);
    } finally {
      await clearFault();
    }
    if (process.env.SDK_SUITE_VERBOSE) {
      console.error(`  ${status} ${check.name} (${((Date.now() - started) / 1000).toFixed(2)} s)`);
    }
  }
  console.log(`${label}: ${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

module.exports = {
  PG, SIM, ADMIN, TOKEN_A, TOKEN_B, simControl, upstream, metric, pollgate, answers, answersSince,
  waitUntil, collect,
  expectEqual, expectError, assert, report, run,
};
