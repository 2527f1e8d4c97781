// The official openai Node SDK, with baseURL at a proxy Location, against the
// real httpd and the mock upstream (started by tests/integration/test_sdk.py).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  DUMMY_KEY, MESSAGES, OpenAI, client, env, mockRecords, nonce, rejection, sha256,
  upstreamRequestEnded, upstreamRequestWith, upstreamRequestsWith,
} from './lib.mjs';

const REQUEST_ID = /^req_[0-9a-f]{32}$/;

test('chat.completions.create returns the upstream chat.completion', async () => {
  const marker = nonce();
  const completion = await client('OAIP_V1_URL').chat.completions.create({
    model: 'gpt-4o-mini',
    messages: MESSAGES(`Hello ${marker}`),
  });
  assert.equal(completion.object, 'chat.completion');
  assert.equal(completion.model, 'gpt-4o-mini');
  assert.match(completion.id, /^chatcmpl-/);
  assert.equal(completion.choices.length, 1);
  const [choice] = completion.choices;
  assert.equal(choice.message.role, 'assistant');
  assert.ok(choice.message.content.endsWith(`You said: Hello ${marker}`),
    `unexpected answer: ${choice.message.content}`);
  assert.equal(choice.finish_reason, 'stop');
  assert.equal(completion.usage.completion_tokens, choice.message.content.split(/\s+/).length);

  const seen = await upstreamRequestWith(marker);
  assert.equal(seen.method, 'POST');
  assert.equal(seen.path, '/v1/chat/completions');
  assert.equal(seen.body.model, 'gpt-4o-mini');
  assert.deepEqual(seen.body.messages, MESSAGES(`Hello ${marker}`));
});

test('a stream arrives chunk by chunk and its deltas are the reply', async () => {
  const marker = nonce();
  const tokens = ['Stream', 'ing ', 'through ', 'mod_openai', '_proxy', '!'];
  const directives = { tokens, chunk_delay: 0.25 };
  const started = performance.now();
  const stream = await client('OAIP_V1_URL').chat.completions.create({
    model: 'gpt-4o-mini',
    messages: MESSAGES(marker),
    stream: true,
    mock: directives, // the SDK sends unknown params as they are
  });
  const arrivals = [];
  const deltas = [];
  let finish = null;
  for await (const chunk of stream) {
    arrivals.push(performance.now() - started);
    assert.equal(chunk.object, 'chat.completion.chunk');
    const choice = chunk.choices[0];
    if (choice.delta.content) deltas.push(choice.delta.content);
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  // one delta per upstream event, none merged or split, in order
  assert.deepEqual(deltas, tokens);
  assert.equal(deltas.join(''), 'Streaming through mod_openai_proxy!');
  assert.equal(finish, 'stop');
  // role chunk + 6 deltas + finish chunk, 0.25 s apart at the mock
  assert.equal(arrivals.length, tokens.length + 2);
  const spread = arrivals.at(-1) - arrivals[0];
  assert.ok(spread >= 1200,
    `the chunks arrived together, not as sent: first at ${arrivals[0].toFixed(0)} ms, ` +
    `last at ${arrivals.at(-1).toFixed(0)} ms`);
  const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]);
  const spaced = gaps.filter((gap) => gap >= 100).length;
  assert.ok(spaced >= gaps.length - 1,
    `chunks were held back and released in bursts; gaps ms: ${gaps.map((g) => g.toFixed(0))}`);

  const seen = await upstreamRequestWith(marker);
  assert.equal(seen.body.stream, true);
  assert.deepEqual(seen.body.mock, directives, 'the SDK forwarded the extra body field');
  assert.equal(seen.outcome, 'ok');
});

test('upstream 429 and 401 become the SDK\'s typed errors with OpenAI\'s message', async () => {
  const cases = [
    { status: 429, type: OpenAI.RateLimitError, message: 'Rate limit reached for requests',
      code: 'rate_limit_exceeded', errorType: 'requests' },
    { status: 401, type: OpenAI.AuthenticationError,
      message: 'Incorrect API key provided: sk-...xxxx.', code: 'invalid_api_key',
      errorType: 'invalid_request_error' },
  ];
  for (const expected of cases) {
    for (const stream of [false, true]) {
      const what = `${expected.status}${stream ? ' (stream)' : ''}`;
      const marker = nonce();
      const err = await rejection(client('OAIP_V1_URL').chat.completions.create({
        model: 'gpt-4o-mini',
        messages: MESSAGES(marker),
        stream,
        mock: { status: expected.status },
      }));
      assert.ok(err instanceof expected.type, `${what}: got ${err?.constructor?.name}: ${err}`);
      assert.equal(err.status, expected.status, what);
      assert.equal(err.message, `${expected.status} ${expected.message}`, what);
      assert.equal(err.error.message, expected.message, what);
      assert.equal(err.code, expected.code, what);
      assert.equal(err.type, expected.errorType, what);
      assert.match(err.requestID, REQUEST_ID, `${what}: the upstream's x-request-id`);
      if (expected.status === 429) {
        assert.equal(err.headers.get('x-ratelimit-remaining-requests'), '9999', what);
      }
      // maxRetries 0: one upstream request, and the error came from it
      const seen = await upstreamRequestWith(marker);
      assert.equal(seen.status, expected.status, what);
    }
  }
});

test('proxy errors in the openai format are typed SDK errors', async (t) => {
  await t.test('origin not allowed: PermissionDeniedError, upstream not called', async () => {
    const marker = nonce();
    const sdk = client('OAIP_OPENAI_ERRORS_URL',
      { defaultHeaders: { Origin: 'https://app.example.com.evil.com' } });
    const err = await rejection(sdk.chat.completions.create(
      { model: 'gpt-4o-mini', messages: MESSAGES(marker) }));
    assert.ok(err instanceof OpenAI.PermissionDeniedError, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, 403);
    assert.equal(err.code, 'origin_not_allowed');
    assert.equal(err.error.code, 'origin_not_allowed');
    assert.equal(err.type, 'invalid_request_error');
    assert.equal(err.param, null);
    assert.ok(err.error.message.includes('https://app.example.com.evil.com'), err.error.message);
    assert.equal(err.message, `403 ${err.error.message}`);
    assert.equal((await upstreamRequestsWith(marker)).length, 0, 'a refused origin reached the upstream');
  });

  await t.test('unknown path: NotFoundError (models.list and a custom path)', async () => {
    const sdk = client('OAIP_OPENAI_ERRORS_URL');
    for (const [path, call] of [['/models', () => sdk.models.list()],
                                ['/nope', () => sdk.post('/nope', { body: { messages: [] } })]]) {
      const err = await rejection(call());
      assert.ok(err instanceof OpenAI.NotFoundError, `${path}: got ${err?.constructor?.name}: ${err}`);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'unknown_url');
      assert.ok(err.error.message.includes(`/openai-errors${path}`), err.error.message);
    }
  });

  await t.test('messages not an array: BadRequestError', async () => {
    const err = await rejection(client('OAIP_OPENAI_ERRORS_URL').chat.completions.create(
      { model: 'gpt-4o-mini', messages: 'not an array' }));
    assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'invalid_messages');
  });

  await t.test('body over the limit (default 8M): 413 APIError with request_too_large', async () => {
    const marker = nonce();
    const err = await rejection(client('OAIP_OPENAI_ERRORS_URL').chat.completions.create({
      model: 'gpt-4o-mini',
      messages: MESSAGES(`${marker} ${'x'.repeat(9 * 1024 * 1024)}`),
    }));
    // the SDK has no class of its own for 413: the base APIError
    assert.ok(err instanceof OpenAI.APIError, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, 413);
    assert.equal(err.code, 'request_too_large');
    assert.match(err.error.message, /larger than the 8388608 bytes/);
    assert.equal((await upstreamRequestsWith(marker)).length, 0, 'an oversized body reached the upstream');
  });

  await t.test('rate limit of the proxy: RateLimitError with Retry-After, upstream not called', async () => {
    const sdk = client('OAIP_LIMITED_URL');
    const first = await sdk.chat.completions.create(
      { model: 'gpt-4o-mini', messages: MESSAGES(nonce()) });
    assert.equal(first.object, 'chat.completion');
    const marker = nonce();
    const err = await rejection(sdk.chat.completions.create(
      { model: 'gpt-4o-mini', messages: MESSAGES(marker), stream: true }));
    assert.ok(err instanceof OpenAI.RateLimitError, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.type, 'requests');
    assert.match(err.error.message, /^Rate limit of 1\/h reached; retry in \d+ seconds$/);
    const retryAfter = Number(err.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 3600, `retry-after ${retryAfter}`);
    assert.equal((await upstreamRequestsWith(marker)).length, 0, 'a limited request reached the upstream');
  });
});

test('proxy errors below a Location without a format are typed SDK errors', async () => {
  // /small: OpenAIProxyMaxRequestBody 1K, OpenAIProxyErrorFormat unset: the
  // SDK's paths below the Location answer in the OpenAI shape
  const marker = nonce();
  const err = await rejection(client('OAIP_SMALL_URL').chat.completions.create({
    model: 'gpt-4o-mini',
    messages: MESSAGES(`${marker} ${'y'.repeat(2000)}`),
  }));
  assert.ok(err instanceof OpenAI.APIError, `got ${err?.constructor?.name}: ${err}`);
  assert.equal(err.status, 413);
  assert.equal(err.code, 'request_too_large');
  assert.equal(err.type, 'invalid_request_error');
  assert.equal(err.message, '413 The request body is larger than the 1024 bytes this endpoint accepts');
  assert.equal((await upstreamRequestsWith(marker)).length, 0);
});

test('seed-format proxy errors (set explicitly) still carry their status to the SDK', async () => {
  // /seed-errors: the same with OpenAIProxyErrorFormat seed
  const marker = nonce();
  const err = await rejection(client('OAIP_SEED_ERRORS_URL').chat.completions.create({
    model: 'gpt-4o-mini',
    messages: MESSAGES(`${marker} ${'y'.repeat(2000)}`),
  }));
  assert.ok(err instanceof OpenAI.APIError, `got ${err?.constructor?.name}: ${err}`);
  assert.equal(err.status, 413);
  // the SDK reads body.error: in the seed format that is the title string,
  // and the seed "message" is not seen by the SDK
  assert.equal(err.error, 'Request Entity Too Large');
  assert.equal(err.message, '413 "Request Entity Too Large"');
  assert.equal(err.code, undefined);
  assert.equal((await upstreamRequestsWith(marker)).length, 0);
});

test('x-request-id and the OpenAI headers pass through to the SDK', async () => {
  const sdk = client('OAIP_V1_URL');

  const { data, response, request_id } = await sdk.chat.completions
    .create({ model: 'gpt-4o-mini', messages: MESSAGES(nonce()) })
    .withResponse();
  assert.match(request_id, REQUEST_ID);
  assert.equal(response.headers.get('x-request-id'), request_id);
  assert.equal(data._request_id, request_id);
  assert.match(response.headers.get('openai-processing-ms'), /^\d+$/);
  assert.equal(response.headers.get('x-ratelimit-reset-tokens'), '300ms');
  assert.equal(response.headers.get('set-cookie'), null, 'an upstream cookie reached the client');

  const raw = await sdk.chat.completions
    .create({ model: 'gpt-4o-mini', messages: MESSAGES(nonce()) })
    .asResponse();
  assert.equal(raw.status, 200);
  assert.match(raw.headers.get('content-type'), /^application\/json/);
  const otherId = raw.headers.get('x-request-id');
  assert.match(otherId, REQUEST_ID);
  assert.notEqual(otherId, request_id, 'each answer has its own upstream request id');
  assert.equal((await raw.json()).object, 'chat.completion');

  const streamed = await sdk.chat.completions
    .create({ model: 'gpt-4o-mini', messages: MESSAGES(nonce()), stream: true, mock: { chunks: 2 } })
    .withResponse();
  assert.match(streamed.request_id, REQUEST_ID);
  assert.match(streamed.response.headers.get('content-type'), /^text\/event-stream/);
  assert.equal(streamed.response.headers.get('cache-control'), 'no-cache');
  let text = '';
  for await (const chunk of streamed.data) text += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(text, 'tok0 tok1 ');
});

test('an allowed Origin is served with CORS headers through the SDK', async () => {
  const origin = 'https://app.example.com';
  const { data, response } = await client('OAIP_V1_URL', { defaultHeaders: { Origin: origin } })
    .chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES(nonce()) })
    .withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.equal(response.headers.get('access-control-allow-origin'), origin);
  assert.match(response.headers.get('access-control-expose-headers'), /\bx-request-id\b/i);
  assert.match(response.headers.get('vary'), /\bOrigin\b/i);
});

test('the upstream gets the configured key, not the SDK\'s, and no SDK headers', async () => {
  const expectedKeyHash = env('OAIP_UPSTREAM_KEY_SHA256');
  const marker = nonce();
  await client('OAIP_V1_URL', { organization: 'org-sdk-test', project: 'proj-sdk-test' })
    .chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES(marker) });
  const { headers } = await upstreamRequestWith(marker);
  // never print the header: it holds the real key
  const authorization = headers.authorization ?? '';
  assert.ok(authorization.startsWith('Bearer '), 'the upstream did not get a Bearer token');
  assert.ok(!authorization.includes(DUMMY_KEY), 'the SDK\'s key reached the upstream');
  assert.ok(sha256(authorization.slice('Bearer '.length)) === expectedKeyHash,
    'the upstream did not get the configured key');
  for (const name of Object.keys(headers)) {
    assert.ok(!name.startsWith('x-stainless-'), `the SDK header ${name} reached the upstream`);
    assert.ok(!['openai-organization', 'openai-project'].includes(name),
      `the client header ${name} reached the upstream`);
  }
  assert.ok(!(headers['user-agent'] ?? '').startsWith('OpenAI/JS'), 'the SDK\'s User-Agent was forwarded');

  // and no request of this run sent the dummy key upstream
  const leaked = (await mockRecords()).filter((r) => (r.headers.authorization ?? '').includes(DUMMY_KEY));
  assert.equal(leaked.length, 0, 'some request forwarded the SDK\'s key');
});

test('breaking out of a stream stops the upstream transfer', async () => {
  const marker = nonce();
  const stream = await client('OAIP_V1_URL').chat.completions.create({
    model: 'gpt-4o-mini',
    messages: MESSAGES(marker),
    stream: true,
    mock: { chunks: 100, chunk_delay: 0.05 },
  });
  let received = 0;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta?.content) received += 1;
    if (received === 3) break; // the SDK aborts the request
  }
  const left = performance.now();
  const seen = await upstreamRequestEnded(marker);
  const stoppedAfter = performance.now() - left;
  assert.equal(seen.outcome, 'client_gone');
  assert.ok(seen.chunks_sent < 60, `the upstream kept streaming to nobody (${seen.chunks_sent} events)`);
  assert.ok(stoppedAfter < 3000, `the upstream transfer ran on for ${stoppedAfter.toFixed(0)} ms`);
});
