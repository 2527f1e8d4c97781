// Shared helpers of the SDK tests (not a test file: `node --test` runs only
// *.test.mjs here). tests/integration/test_sdk.py sets the environment:
//   OAIP_V1_URL                a Location with the defaults: chat/completions and
//                              responses served, the OpenAI error shape below it
//   OAIP_OPENAI_ERRORS_URL     a Location with OpenAIProxyErrorFormat openai
//   OAIP_SMALL_URL             a Location with OpenAIProxyMaxRequestBody 1K
//   OAIP_SEED_ERRORS_URL       the same with OpenAIProxyErrorFormat seed
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
export async function recordingFetch(url, init) {
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

/** A fetch for any SDK that adds the mock's `directives` to each JSON
 *  request body (as the openai SDK does with an unknown parameter; the
 *  Vercel AI SDK and LangChain send only the fields they know), then
 *  records the answer like recordingFetch. */
export function fetchWithMock(directives) {
  return (url, init = {}) => {
    if (directives && typeof init.body === 'string') {
      const body = JSON.parse(init.body);
      init = { ...init, body: JSON.stringify({ ...body, mock: directives }) };
    }
    return recordingFetch(url, init);
  };
}

/** The mock's answer to a request that hits an upstream 429 carrying the
 *  retry hints OpenAI sends: retry-after-ms (what the SDKs read first) and
 *  a Retry-After of a second, which a retry that did not see the first
 *  would wait for. */
export const RATE_LIMITED = {
  status: 429,
  raw_headers: [['retry-after-ms', '10'], ['retry-after', '1']],
};

/** The mock's answer for a stream the upstream cuts after the role chunk
 *  (chat) or the events up to the first delta (Responses) and two deltas. */
export const CUT_TOKENS = ['a', 'b', 'c', 'd'];
export const cutAfter = (events) => ({ tokens: CUT_TOKENS, hangup_after: events, chunk_delay: 0.01 });

/** A long, slow answer a test leaves (aborts) early. */
export const LONG_STREAM = { chunks: 100, chunk_delay: 0.05 };

/** The function the tool-call tests declare, and the call the mock makes:
 *  its arguments streamed in pieces cut inside keys and strings. */
export const WEATHER_ARGS = { city: 'Paris', unit: 'celsius', days: [1, 2] };
export const WEATHER_SCHEMA = {
  type: 'object',
  properties: {
    city: { type: 'string' },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
    days: { type: 'array', items: { type: 'integer' } },
  },
  required: ['city', 'unit', 'days'],
  additionalProperties: false,
};
export const weatherCall = (extra = {}) => ({
  tool_calls: [{ name: 'get_weather', arguments: WEATHER_ARGS }],
  tool_args_pieces: 5,
  chunk_delay: 0.01,
  ...extra,
});

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

/** Asserts that an upstream request was free of the sampling fields that
 *  OpenAI's reasoning models refuse (a temperature other than 1, max_tokens),
 *  which the proxy must not add for them. */
export function assertNoRefusedFields(record, what) {
  const body = record.body ?? {};
  assert.ok(!('max_tokens' in body), `${what}: max_tokens went upstream`);
  assert.ok(body.temperature === undefined || body.temperature === 1,
    `${what}: temperature ${body.temperature} went upstream`);
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
