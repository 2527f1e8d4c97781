// LangChain JS (@langchain/openai's ChatOpenAI) with the proxy's default
// Location (OAIP_V1_URL) as its baseURL, over Chat Completions and over the
// Responses API (useResponsesApi): invoke and stream, a streamed tool call,
// an upstream 429 and LangChain's retry, a stream the upstream cuts and an
// abort. Cut streams make httpd log "upstream request failed", which
// tests/integration/test_sdk.py allows for this file.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ChatOpenAI } from '@langchain/openai';

import {
  DUMMY_KEY, LONG_STREAM, OpenAI, RATE_LIMITED, WEATHER_ARGS, WEATHER_SCHEMA, cutAfter, env,
  fetchWithMock, nonce, rejection, upstreamRequestEnded, upstreamRequestWith,
  upstreamRequestsWith, weatherCall,
} from './lib.mjs';

const MODEL = 'gpt-4o-mini';

const APIS = {
  'Chat Completions': { options: {}, path: '/v1/chat/completions', beforeDeltas: 1 },
  'Responses API': { options: { useResponsesApi: true }, path: '/v1/responses', beforeDeltas: 4 },
};

function chatModel(api, directives, options = {}) {
  return new ChatOpenAI({
    model: MODEL,
    apiKey: DUMMY_KEY,
    maxRetries: 0,
    ...api.options,
    ...options,
    configuration: { baseURL: env('OAIP_V1_URL'), fetch: fetchWithMock(directives) },
  });
}

/** The text of a message's content: a string, or content blocks. */
function textOf(content) {
  if (typeof content === 'string') return content;
  return content.filter((b) => b.type === 'text').map((b) => b.text).join('');
}

const weather = {
  type: 'function',
  function: { name: 'get_weather', description: 'The weather forecast for a city',
    parameters: WEATHER_SCHEMA },
};

for (const [name, api] of Object.entries(APIS)) {
  test(`${name}: invoke answers with the upstream's message and usage`, async () => {
    const marker = nonce();
    const message = await chatModel(api, null).invoke(`Hello ${marker}`);
    assert.ok(textOf(message.content).endsWith(`You said: Hello ${marker}`), message.content);
    assert.ok(message.usage_metadata.output_tokens > 0, JSON.stringify(message.usage_metadata));
    const seen = await upstreamRequestWith(marker);
    assert.equal(seen.path, api.path);
    assert.equal(seen.body.model, MODEL);
  });

  test(`${name}: stream yields the upstream's deltas as they come`, async () => {
    const marker = nonce();
    const tokens = ['Lang', 'Chain ', 'through ', 'the ', 'proxy'];
    const stream = await chatModel(api, { tokens, chunk_delay: 0.02 }).stream(marker);
    const deltas = [];
    for await (const chunk of stream) {
      const text = textOf(chunk.content);
      if (text) deltas.push(text);
    }
    assert.deepEqual(deltas, tokens);
    const seen = await upstreamRequestWith(marker);
    assert.equal(seen.path, api.path);
    assert.equal(seen.body.stream, true);
    assert.equal(seen.outcome, 'ok');
  });

  test(`${name}: a streamed tool call assembles into its arguments`, async () => {
    const marker = nonce();
    const model = chatModel(api, weatherCall()).bindTools([weather]);
    let message = null;
    let pieces = 0;
    for await (const chunk of await model.stream(`Weather in Paris? ${marker}`)) {
      if (chunk.tool_call_chunks?.some((c) => c.args)) pieces += 1;
      message = message ? message.concat(chunk) : chunk;
    }
    assert.ok(pieces >= 2, `the arguments came in ${pieces} piece(s)`);
    assert.equal(message.tool_calls.length, 1);
    assert.equal(message.tool_calls[0].name, 'get_weather');
    assert.deepEqual(message.tool_calls[0].args, WEATHER_ARGS);
    const seen = await upstreamRequestWith(marker);
    assert.ok(JSON.stringify(seen.body.tools).includes('get_weather'));
  });

  test(`${name}: an upstream 429 is a RateLimitError, retried once`, async () => {
    const marker = nonce();
    const err = await rejection(chatModel(api, RATE_LIMITED, { maxRetries: 1 })
      .invoke(marker));
    assert.ok(err instanceof OpenAI.RateLimitError, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, 429);
    assert.equal(err.lc_error_code, 'MODEL_RATE_LIMIT');
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.headers.get('retry-after-ms'), '10');
    // counted upstream, not timed (LangChain waits at least its own backoff)
    const seen = await upstreamRequestsWith(marker);
    assert.equal(seen.length, 2);
    assert.ok(seen.every((r) => r.status === 429 && r.path === api.path));
  });

  test(`${name}: a stream the upstream cuts throws the proxy's error, no hang`, async () => {
    const marker = nonce();
    const stream = await chatModel(api, cutAfter(api.beforeDeltas + 2)).stream(marker);
    const deltas = [];
    const err = await rejection((async () => {
      for await (const chunk of stream) {
        const text = textOf(chunk.content);
        if (text) deltas.push(text);
      }
    })());
    assert.deepEqual(deltas, ['a', 'b']);
    assert.ok(err instanceof OpenAI.APIError, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.code, 'upstream_invalid_response');
    assert.match(err.message, /The upstream API failed to send a valid response/);
    assert.equal((await upstreamRequestEnded(marker)).outcome, 'hangup');
  });

  test(`${name}: aborting a stream stops the upstream transfer`, async () => {
    const marker = nonce();
    const controller = new AbortController();
    const stream = await chatModel(api, LONG_STREAM).stream(marker,
      { signal: controller.signal });
    let deltas = 0;
    const err = await rejection((async () => {
      for await (const chunk of stream) {
        if (textOf(chunk.content) && ++deltas === 3) controller.abort();
      }
    })());
    assert.equal(deltas, 3);
    assert.match(`${err?.name} ${err?.message}`, /abort/i, `got ${err?.constructor?.name}: ${err}`);
    const seen = await upstreamRequestEnded(marker);
    assert.equal(seen.outcome, 'client_gone');
    assert.ok(seen.chunks_sent < 60, `the upstream kept streaming (${seen.chunks_sent} events)`);
  });
}
