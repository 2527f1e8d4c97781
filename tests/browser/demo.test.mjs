// The chat demo (conf/demo/index.html) in headless Chromium, driven by
// playwright-core, against a real httpd and the mock upstream, both started by
// tests/integration/test_browser.py. Three origins on loopback:
//   A  serves the demo page; the proxy's Locations on B allow it (CORS)
//   B  hosts the proxy Locations
//   C  serves the same page, but B does not allow it
// Environment (set by test_browser.py):
//   OAIP_CHROMIUM             the chromium binary (Debian: /usr/bin/chromium)
//   OAIP_ORIGIN_A/_B/_C       http://127.0.0.1:PORT of each origin
//   OAIP_DEMO_PATH            the demo page's path on A and C
//   OAIP_MOCK_URL             the mock upstream's root (control API /__mock/...)
//   OAIP_UPSTREAM_KEY_SHA256  sha256 (hex) of the key B is configured with
//   OAIP_BROWSER_RECORD       a file to append every response from B to (JSON
//                             lines), for the pytest secret scan

import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through ` +
      'tests/integration/test_browser.py, which starts httpd and the mock upstream');
  }
  return value;
}

const A = env('OAIP_ORIGIN_A');
const B = env('OAIP_ORIGIN_B');
const C = env('OAIP_ORIGIN_C');
const MOCK = env('OAIP_MOCK_URL');
const DEMO_PATH = env('OAIP_DEMO_PATH');
const WAIT = { timeout: 20_000 };

const nonce = () => `nonce-${randomUUID()}`;
const sha256 = (text) => createHash('sha256').update(text).digest('hex');

/** The demo on `origin`, pointed at the proxy Location `location` of B. */
const demoUrl = (origin, location = '/v1') =>
  `${origin}${DEMO_PATH}?api=${encodeURIComponent(B + location)}`;

async function mockRecords() {
  const response = await fetch(`${MOCK}/__mock/requests`);
  assert.equal(response.status, 200);
  return response.json();
}

/** The mock's records of requests whose body mentions `marker`. */
async function upstreamRequestsWith(marker) {
  return (await mockRecords()).filter((r) => (r.body_raw || '').includes(marker));
}

async function upstreamRequestWith(marker, { ended = true } = {}) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = await upstreamRequestsWith(marker);
    assert.ok(found.length <= 1, `${found.length} upstream requests carry ${marker}`);
    if (found.length === 1 && (!ended || found[0].outcome)) return found[0];
    if (Date.now() > deadline) {
      assert.fail(`the upstream did not ${found.length ? 'finish' : 'receive'} the request ` +
        `with ${marker}: ${JSON.stringify(found[0] ?? null)}`);
    }
    await sleep(50);
  }
}

let browser;
let context;

before(async () => {
  const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
  browser = await chromium.launch({ executablePath: env('OAIP_CHROMIUM'), args });
  context = await browser.newContext({ viewport: { width: 900, height: 700 } });
});

after(async () => {
  await browser?.close();
});

/** A fresh page of the demo; every response from B is recorded for the
 *  secret scan, console errors and uncaught page errors are collected. */
async function openDemo(url) {
  const page = await context.newPage();
  const problems = { console: [], uncaught: [] };
  page.on('console', (m) => { if (m.type() === 'error') problems.console.push(m.text()); });
  page.on('pageerror', (e) => problems.uncaught.push(String(e)));
  page.on('response', async (response) => {
    if (!response.url().startsWith(B)) return;
    const headers = Object.entries(await response.allHeaders());
    let body = Buffer.alloc(0);
    try { body = await response.body(); } catch { /* aborted or preflight: no body */ }
    const file = process.env.OAIP_BROWSER_RECORD;
    if (file) {
      appendFileSync(file, JSON.stringify({
        url: response.url(), status: response.status(), headers,
        body_b64: body.toString('base64'),
      }) + '\n');
    }
  });
  await page.goto(url);
  await page.waitForSelector('#prompt');
  return { page, problems };
}

/** Records, in the page, each distinct text the last assistant answer shows
 *  (a MutationObserver sees every change as the tokens are appended) and each
 *  status line text. */
async function watchAnswers(page) {
  await page.evaluate(() => {
    window.seenAnswers = [];
    window.seenStatus = [];
    const record = () => {
      const answers = document.querySelectorAll('.msg.assistant .content');
      const text = answers.length ? answers[answers.length - 1].textContent : null;
      if (text !== null && text !== window.seenAnswers.at(-1)) window.seenAnswers.push(text);
      const status = document.getElementById('status').textContent;
      if (status && status !== window.seenStatus.at(-1)) window.seenStatus.push(status);
    };
    new MutationObserver(record).observe(document.body,
      { subtree: true, childList: true, characterData: true });
  });
}

async function setExtra(page, fields) {
  if (!(await page.isVisible('#extra'))) await page.click('details.extra summary');
  await page.fill('#extra', JSON.stringify(fields));
}

/** Types `text` and sends it with Enter, as a keyboard user would. */
async function say(page, text) {
  await page.focus('#prompt');
  await page.fill('#prompt', text);
  await page.keyboard.press('Enter');
}

const lastAnswer = (page) => page.locator('.msg.assistant .content').last();

test('a page on origin A streams an answer from the proxy on origin B, token by token', async () => {
  const { page, problems } = await openDemo(demoUrl(A));
  await watchAnswers(page);
  const marker = nonce();
  const tokens = ['Streaming ', 'through ', 'mod_openai_proxy ', 'to ', 'a ', 'browser ',
                  'page, ', 'token ', 'by ', 'token.'];
  // split_events: the mock writes each event in two halves 10 ms apart; a
  // client that asks for the usage chunk itself gets its stream relayed read
  // by read, so the halves reach the page in two reads, for its SSE parser
  // to join
  await setExtra(page, {
    stream_options: { include_usage: true },
    mock: { tokens, chunk_delay: 0.2, split_events: true },
  });
  const corsHeaders = page.waitForResponse((r) => r.url().startsWith(B) &&
    r.request().method() === 'POST');
  await say(page, `Hello ${marker}`);
  await page.waitForSelector('.msg.assistant[data-state=done]', WAIT);

  const final = tokens.join('');
  assert.equal(await lastAnswer(page).textContent(), final);
  const seen = await page.evaluate(() => window.seenAnswers);
  const partial = seen.filter((text) => text !== '' && text !== final);
  assert.ok(partial.length >= 3,
    `the answer did not appear progressively; texts seen: ${JSON.stringify(seen)}`);
  for (const text of partial) {
    assert.ok(final.startsWith(text), `a partial answer is not a prefix of the final one: ${text}`);
  }
  const lengths = seen.map((t) => t.length);
  assert.deepEqual(lengths, [...lengths].sort((x, y) => x - y), 'the answer grew in order');
  assert.equal(seen.at(-1), final);

  const response = await corsHeaders;
  assert.equal(response.status(), 200);
  assert.equal(await response.headerValue('access-control-allow-origin'), A);
  assert.match(await response.headerValue('content-type'), /^text\/event-stream/);

  // the proxy, not the browser, authenticated upstream, with its own key
  const first = await upstreamRequestWith(marker);
  assert.equal(first.outcome, 'ok');
  assert.equal(first.path, '/v1/chat/completions');
  assert.equal(sha256((first.headers.authorization ?? '').replace(/^Bearer /, '')),
    env('OAIP_UPSTREAM_KEY_SHA256'), 'the upstream got the configured key');
  assert.equal(first.headers.origin, undefined, 'no browser header goes upstream');
  assert.equal(first.body.stream, true);
  assert.equal(first.body.model, 'gpt-4o-mini', 'the proxy added its default model');
  assert.deepEqual(first.body.messages, [{ role: 'user', content: `Hello ${marker}` }]);

  // the second turn, not streamed, carries the conversation so far
  const marker2 = nonce();
  await page.uncheck('#stream');
  await setExtra(page, { mock: { reply: 'Second answer.' } });
  await say(page, `And then ${marker2}`);
  await page.waitForFunction(
    () => document.querySelectorAll('.msg.assistant[data-state=done]').length === 2, null, WAIT);
  assert.equal(await lastAnswer(page).textContent(), 'Second answer.');
  const second = await upstreamRequestWith(marker2);
  assert.equal(second.body.stream, false);
  assert.deepEqual(second.body.messages, [
    { role: 'user', content: `Hello ${marker}` },
    { role: 'assistant', content: final },
    { role: 'user', content: `And then ${marker2}` },
  ]);
  assert.deepEqual(problems, { console: [], uncaught: [] });
  await page.close();
});

test('a page on origin C, which the proxy does not allow, is refused', async () => {
  const { page, problems } = await openDemo(demoUrl(C));
  const marker = nonce();
  await say(page, `Let me in ${marker}`);
  const error = page.locator('.msg.error');
  await error.waitFor(WAIT);
  assert.match(await error.textContent(), /Could not reach the proxy at .*CORS/s);
  assert.equal(await error.getAttribute('role'), 'alert');
  assert.equal(await page.locator('.msg.assistant').count(), 0);
  // Chromium refused it for CORS (the preflight, which Chromium does not
  // report as a page response, is checked in httpd's access log by
  // test_browser.py) and nothing went upstream
  assert.ok(problems.console.some((text) => /CORS/.test(text)),
    `Chromium reported no CORS refusal: ${JSON.stringify(problems.console)}`);
  assert.deepEqual(problems.uncaught, []);
  await sleep(300);
  assert.deepEqual(await upstreamRequestsWith(marker), [], 'the upstream received the request');
  // the question stays on screen but out of the conversation
  assert.match(await page.locator('.msg.user').last().textContent(), /Not part of the conversation/);
  assert.equal(await page.isEnabled('#send'), true);
  await page.close();
});

test('errors are shown readably: the proxy\'s own (both formats), upstream\'s, and mid-stream', async () => {
  const { page, problems } = await openDemo(demoUrl(A));
  const errorText = async (n) => {
    await page.waitForFunction((count) => document.querySelectorAll('.msg.error').length === count,
      n, WAIT);
    return page.locator('.msg.error').last().textContent();
  };

  // 400 from the proxy, seed format ({"error": title, "message": detail})
  const marker = nonce();
  await page.fill('#model', 'gpt-not-allowed');
  await say(page, `Which model ${marker}`);
  let text = await errorText(1);
  assert.match(text, /HTTP 400: Model Not Allowed/);
  assert.match(text, /gpt-not-allowed/, `the proxy's detail is shown: ${text}`);
  assert.doesNotMatch(text, /[{}]/, `raw JSON is shown: ${text}`);
  await page.fill('#model', '');

  // 413 from the proxy, OpenAI format ({"error": {"message", "code"}})
  await page.fill('#api', B + '/strict');
  await say(page, `Too long ${marker} ${'x'.repeat(4000)}`);
  text = await errorText(2);
  assert.match(text, /HTTP 413: /);
  assert.match(text, /code: request_too_large/);
  assert.doesNotMatch(text, /[{}]/, `raw JSON is shown: ${text}`);
  assert.deepEqual(await upstreamRequestsWith(marker), [], 'refused requests went upstream');
  await page.fill('#api', B + '/v1');

  // an upstream error passed through (OpenAI's own shape)
  await setExtra(page, { mock: { status: 429 } });
  await say(page, 'Rate me');
  text = await errorText(3);
  assert.match(text, /HTTP 429: Rate limit reached for requests/);
  assert.match(text, /code: rate_limit_exceeded/);

  // the upstream breaks off a stream: the proxy ends it with "event: error";
  // the words so far stay, and the break is reported
  const cut = nonce();
  await setExtra(page, { mock: { chunks: 10, hangup_after: 4, chunk_delay: 0.05 } });
  await say(page, `Break ${cut}`);
  text = await errorText(4);
  assert.match(text, /The stream broke: .*upstream/);
  assert.match(text, /code: upstream_invalid_response/);
  assert.equal(await lastAnswer(page).textContent(), 'tok0 tok1 tok2 ');
  assert.equal(await page.locator('.msg.assistant').last().getAttribute('data-state'), 'error');

  // heartbeats (": keep-alive" comments) while the model "thinks" are not text
  await page.fill('#api', B + '/heartbeat');
  await watchAnswers(page);
  await setExtra(page, { mock: { tokens: ['Worth ', 'the ', 'wait.'], first_chunk_delay: 2.5 } });
  await say(page, 'Think first');
  await page.waitForFunction(
    () => document.querySelectorAll('.msg.assistant[data-state=done]').length === 1, null, WAIT);
  assert.equal(await lastAnswer(page).textContent(), 'Worth the wait.');
  const statuses = await page.evaluate(() => window.seenStatus);
  assert.ok(statuses.some((s) => /keep-alive/.test(s)),
    `the page did not see a heartbeat: ${JSON.stringify(statuses)}`);

  assert.deepEqual(problems.uncaught, []);
  await page.close();
});

test('Stop cuts the stream mid-way and the proxy stops the upstream transfer', async () => {
  const { page, problems } = await openDemo(demoUrl(A));
  const marker = nonce();
  const chunks = 400;
  await setExtra(page, { mock: { chunks, chunk_delay: 0.05 } });
  await say(page, `Go on and on ${marker}`);
  await page.waitForFunction(() => {
    const answers = document.querySelectorAll('.msg.assistant .content');
    return answers.length && answers[answers.length - 1].textContent.includes('tok5 ');
  }, null, WAIT);
  assert.equal(await page.isEnabled('#stop'), true);
  await page.click('#stop');
  await page.waitForSelector('.msg.assistant[data-state=stopped]', WAIT);
  const kept = await lastAnswer(page).textContent();
  assert.match(kept, /^tok0 tok1 tok2 tok3 tok4 tok5 /);
  assert.match(await page.textContent('#status'), /Stopped/);
  assert.equal(await page.isEnabled('#send'), true);
  assert.equal(await page.isEnabled('#stop'), false);

  // the browser closed the connection, the proxy noticed and hung up on the upstream
  const record = await upstreamRequestWith(marker);
  assert.equal(record.outcome, 'client_gone', `upstream outcome: ${record.outcome}`);
  assert.ok(record.chunks_sent < chunks / 2,
    `the upstream sent ${record.chunks_sent} of ${chunks + 3} events: it was not stopped`);

  // Escape stops too, and the stopped answer's words are part of the conversation
  const marker2 = nonce();
  await say(page, `Next ${marker2}`);
  await page.waitForFunction(() => {
    const answers = document.querySelectorAll('.msg.assistant .content');
    return answers.length === 2 && answers[1].textContent.includes('tok2 ');
  }, null, WAIT);
  await page.keyboard.press('Escape');
  await page.waitForFunction(
    () => document.querySelectorAll('.msg.assistant[data-state=stopped]').length === 2, null, WAIT);
  const next = await upstreamRequestWith(marker2, { ended: false });
  assert.equal(next.body.messages[1].role, 'assistant');
  assert.equal(next.body.messages[1].content, kept, 'the stopped answer is the assistant turn');
  assert.equal((await upstreamRequestWith(marker2)).outcome, 'client_gone');
  assert.deepEqual(problems.uncaught, []);
  await page.close();
});
