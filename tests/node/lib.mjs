// Shared helpers of the SDK tests (not a test file: `node --test` runs only
// *.test.mjs here). tests/integration/test_sdk.py sets the environment:
//   OAIP_V1_URL, OAIP_OPENAI_ERRORS_URL, OAIP_SMALL_URL  proxy Locations (SDK baseURL)
//   OAIP_LIMITED_URL           a Location with OpenAIProxyRateLimit 1/h, openai errors
//   OAIP_ENDPOINTS_URL         a Location with models, embeddings, responses, audio
//   OAIP_MOCK_URL              the mock upstream's root (control API /__mock/...)
//   OAIP_UPSTREAM_KEY_SHA256   sha256 (hex) of the key the proxy is configured with;
//                              the key itself never reaches this process
//   OAIP_SDK_RECORD            optional: a file where every response the SDK got is
//                              appended (JSON lines), for the pytest secret scan

import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import OpenAI from 'openai';

export { OpenAI };

// What the SDK sends as its own key; the proxy must not forward it.
export const DUMMY_KEY = 'sk-dummy-sdk-key-the-proxy-must-drop';

export const MESSAGES = (text) => [{ role: 'user', content: text }];

export function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through ` +
      'tests/integration/test_sdk.py, which starts httpd and the mock upstream');
  }
  return value;
}

export const sha256 = (text) => createHash('sha256').update(text).digest('hex');

/** A marker for the request body, to find this test's request among the mock's records. */
export const nonce = () => `nonce-${randomUUID()}`;

function record(entry) {
  const file = process.env.OAIP_SDK_RECORD;
  if (file) appendFileSync(file, JSON.stringify(entry) + '\n');
}

/** fetch for the SDK that also appends every response (status, headers and
 *  the body as the SDK read it) to OAIP_SDK_RECORD. The body is passed
 *  through a wrapper stream rather than read from a clone: a tee'd clone
 *  would delay the SDK's cancel (on `break` out of a stream) until the whole
 *  answer had arrived. */
async function recordingFetch(url, init) {
  const response = await fetch(url, init);
  if (!process.env.OAIP_SDK_RECORD) return response;
  const entry = { url: String(url), status: response.status, headers: [...response.headers] };
  const parts = [];
  let recorded = false;
  const finish = (ending) => {
    if (recorded) return;
    recorded = true;
    record({ ...entry, body_b64: Buffer.concat(parts).toString('base64'), ending });
  };
  if (!response.body) {
    finish('no body');
    return response;
  }
  const reader = response.body.getReader();
  const body = new ReadableStream({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          finish('end');
          controller.close();
        } else {
          parts.push(value);
          controller.enqueue(value);
        }
      } catch (err) {
        finish(`error: ${err?.name ?? err}`);
        controller.error(err);
      }
    },
    cancel(reason) {
      finish('cancelled');
      return reader.cancel(reason);
    },
  });
  return new Response(body, {
    status: response.status, statusText: response.statusText, headers: response.headers,
  });
}

/** An SDK client for the proxy Location named by the environment variable. */
export function client(urlVar, options = {}) {
  return new OpenAI({
    apiKey: DUMMY_KEY,
    baseURL: env(urlVar),
    maxRetries: 0, // a retry would hide the proxy's answer (and double the upstream requests)
    timeout: 30_000,
    fetch: recordingFetch,
    ...options,
  });
}

/** All requests the mock upstream received (with their headers: never print them). */
export async function mockRecords() {
  const response = await fetch(`${env('OAIP_MOCK_URL')}/__mock/requests`);
  assert.equal(response.status, 200, 'the mock control API answered');
  return response.json();
}

/** The mock's records of requests whose body carries `marker`. */
export async function upstreamRequestsWith(marker) {
  return (await mockRecords()).filter((r) => (r.body_raw ?? '').includes(marker));
}

/** The single upstream request carrying `marker`. */
export async function upstreamRequestWith(marker) {
  const found = await upstreamRequestsWith(marker);
  assert.equal(found.length, 1, `the upstream received ${found.length} requests carrying the marker`);
  return found[0];
}

/** Polls until the request carrying `marker` has ended upstream. */
export async function upstreamRequestEnded(marker, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [found] = await upstreamRequestsWith(marker);
    if (found?.outcome) return found;
    if (Date.now() > deadline) assert.fail('the upstream request did not end in time');
    await sleep(50);
  }
}

/** Asserts that `promise` rejects, and returns the error for further checks. */
export async function rejection(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('the request succeeded where an error was expected');
}
