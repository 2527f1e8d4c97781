// A Basic-auth-protected proxy Location called with credentials from a page
// on another origin, in headless Chromium (playwright-core). Started by
// tests/integration/test_browser.py::test_credentials_in_chromium:
//   A  serves a page; the proxy allows it, with OpenAIProxyAllowCredentials On
//   B  hosts the proxy Location, behind AuthType Basic + Require valid-user
//   C  serves the same page, and is not allowed
// Playwright's httpCredentials answers B's Basic challenge, as a user typing
// the password into the browser's dialog would. The browser's preflight
// carries no credentials: only the proxy answering it before httpd's
// authentication lets the real request go out.
// Environment: OAIP_CHROMIUM, OAIP_ORIGIN_A, OAIP_ORIGIN_C, OAIP_PAGE_PATH,
// OAIP_PROXY_URL (B's Location), OAIP_BASIC_USER, OAIP_BASIC_PASSWORD,
// OAIP_MOCK_URL, OAIP_BROWSER_RECORD (responses from B, for the secret scan).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through tests/integration/test_browser.py`);
  return value;
}

const A = env('OAIP_ORIGIN_A');
const C = env('OAIP_ORIGIN_C');
const PROXY = env('OAIP_PROXY_URL');
const B = new URL(PROXY).origin;
const MOCK = env('OAIP_MOCK_URL');

let browser;
let context;

before(async () => {
  const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
  browser = await chromium.launch({ executablePath: env('OAIP_CHROMIUM'), args });
  context = await browser.newContext({
    httpCredentials: {
      username: env('OAIP_BASIC_USER'), password: env('OAIP_BASIC_PASSWORD'), origin: B,
    },
  });
});

after(async () => {
  await browser?.close();
});

async function upstreamRequestsWith(marker) {
  const response = await fetch(`${MOCK}/__mock/requests`);
  return (await response.json()).filter((r) => (r.body_raw || '').includes(marker));
}

/** A page on `origin`; every response from B is recorded for the secret
 *  scan. close() waits for the recording before it closes the page. */
async function openPage(origin) {
  const page = await context.newPage();
  const recording = [];
  page.on('response', (response) => {
    if (!response.url().startsWith(B)) return;
    recording.push((async () => {
      let body = Buffer.alloc(0);
      try { body = await response.body(); } catch { /* preflight or aborted */ }
      appendFileSync(env('OAIP_BROWSER_RECORD'), JSON.stringify({
        url: response.url(), status: response.status(),
        headers: Object.entries(await response.allHeaders()), body_b64: body.toString('base64'),
      }) + '\n');
    })());
  });
  await page.goto(`${origin}${env('OAIP_PAGE_PATH')}`);
  page.closeRecorded = async () => {
    await Promise.all(recording);
    await page.close();
  };
  return page;
}

/** fetch() in the page, reading the answer read by read. */
function callProxy(page, body, credentials) {
  return page.evaluate(async ({ url, body, credentials }) => {
    try {
      const response = await fetch(url, {
        method: 'POST', credentials, body: JSON.stringify(body),
        headers: { 'Content-Type': 'application/json' },
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const reads = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        reads.push(decoder.decode(value, { stream: true }));
      }
      return { status: response.status, type: response.headers.get('content-type'), reads };
    } catch (error) {
      return { rejected: `${error.name}: ${error.message}` };
    }
  }, { url: `${PROXY}/chat/completions`, body, credentials });
}

test('a page on an allowed origin streams an answer from a Basic-auth Location', async () => {
  const page = await openPage(A);
  const marker = `nonce-${randomUUID()}`;
  const tokens = ['Signed ', 'in ', 'and ', 'streaming ', 'across ', 'origins.'];
  const answer = page.waitForResponse((r) => r.url().startsWith(B) &&
    r.request().method() === 'POST' && r.status() === 200);
  const result = await callProxy(page, {
    messages: [{ role: 'user', content: `Hello ${marker}` }], stream: true,
    mock: { tokens, chunk_delay: 0.15 },
  }, 'include');
  assert.equal(result.rejected, undefined, `fetch was rejected: ${result.rejected}`);
  assert.equal(result.status, 200);
  assert.match(result.type, /^text\/event-stream/);
  const text = result.reads.join('');
  const content = text.split('\n').filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)).choices?.[0]?.delta?.content ?? '').join('');
  assert.equal(content, tokens.join(''));
  assert.match(text, /data: \[DONE\]/);
  assert.ok(result.reads.length >= 3, `the answer came in ${result.reads.length} reads`);

  const response = await answer;
  assert.equal(await response.headerValue('access-control-allow-origin'), A);
  assert.equal(await response.headerValue('access-control-allow-credentials'), 'true');
  // a 200 behind "Require valid-user": the browser authenticated to httpd
  // (the retry with Authorization happens inside Chromium's network stack);
  // upstream, the proxy used its own key, never the user's credentials
  const upstream = await upstreamRequestsWith(marker);
  assert.equal(upstream.length, 1);
  assert.match(upstream[0].headers.authorization ?? '', /^Bearer /);
  await page.closeRecorded();
});

test('without credentials the page reads the proxy\'s JSON 401', async () => {
  const page = await openPage(A);
  const marker = `nonce-${randomUUID()}`;
  const result = await callProxy(page, { messages: [{ role: 'user', content: marker }] }, 'omit');
  assert.equal(result.rejected, undefined, `fetch was rejected: ${result.rejected}`);
  assert.equal(result.status, 401);
  assert.equal(result.type, 'application/json');
  // httpd's 401 below the Location (/chat/completions): the OpenAI shape
  const { error } = JSON.parse(result.reads.join(''));
  assert.equal(error.code, 'unauthorized');
  assert.equal(error.message, 'Authentication is required to use this API');
  assert.deepEqual(await upstreamRequestsWith(marker), []);
  await page.closeRecorded();
});

test('a page on a disallowed origin cannot call the Location', async () => {
  const page = await openPage(C);
  const marker = `nonce-${randomUUID()}`;
  const result = await callProxy(page, {
    messages: [{ role: 'user', content: `Let me in ${marker}` }], stream: true,
  }, 'include');
  assert.match(result.rejected ?? '', /^TypeError: Failed to fetch/,
    `fetch from ${C} was not refused: ${JSON.stringify(result)}`);
  assert.deepEqual(await upstreamRequestsWith(marker), [], 'the upstream received the request');
  await page.closeRecorded();
});
