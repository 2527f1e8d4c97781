// The Vercel AI SDK (`ai` with @ai-sdk/openai and @ai-sdk/openai-compatible)
// against a default Location (OAIP_V1_URL) as its baseURL: each provider a
// front-end uses (openai(model), which calls the Responses API,
// openai.chat(), openai.responses() and the openai-compatible provider), with
// generateText and streamText, a streamed tool call, an upstream 429 and the
// SDK's retry, a stream the upstream cuts and an abort.
// Cut streams make httpd log "upstream request failed", which
// tests/integration/test_sdk.py allows for this file.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { APICallError, RetryError, generateText, jsonSchema, streamText, tool } from 'ai';

import {
  DUMMY_KEY, LONG_STREAM, RATE_LIMITED, WEATHER_ARGS, WEATHER_SCHEMA, cutAfter, env,
  fetchWithMock, nonce, upstreamRequestEnded, upstreamRequestWith, upstreamRequestsWith,
  weatherCall,
} from './lib.mjs';

const MODEL = 'gpt-4o-mini';

function openaiProvider(directives) {
  return createOpenAI({ baseURL: env('OAIP_V1_URL'), apiKey: DUMMY_KEY,
    fetch: fetchWithMock(directives) });
}

// name -> (the model for these mock directives, the upstream path it calls,
// how many events of a stream come before its first delta)
const PROVIDERS = {
  'openai(model)': {
    model: (d) => openaiProvider(d)(MODEL), path: '/v1/responses', beforeDeltas: 4 },
  'openai.responses()': {
    model: (d) => openaiProvider(d).responses(MODEL), path: '/v1/responses', beforeDeltas: 4 },
  'openai.chat()': {
    model: (d) => openaiProvider(d).chat(MODEL), path: '/v1/chat/completions', beforeDeltas: 1 },
  'openai-compatible': {
    model: (d) => createOpenAICompatible({
      name: 'proxy', baseURL: env('OAIP_V1_URL'), apiKey: DUMMY_KEY, includeUsage: true,
      fetch: fetchWithMock(d),
    }).chatModel(MODEL),
    path: '/v1/chat/completions', beforeDeltas: 1 },
};

const weather = tool({
  description: 'The weather forecast for a city',
  inputSchema: jsonSchema(WEATHER_SCHEMA),
});

/** Every part of a streamText result, and what its onError saw. */
async function allParts(result) {
  const parts = [];
  for await (const part of result.fullStream) parts.push(part);
  return parts;
}

for (const [name, provider] of Object.entries(PROVIDERS)) {
  test(`${name}: generateText answers with the upstream's text and usage`, async () => {
    const marker = nonce();
    const result = await generateText({
      model: provider.model(null), prompt: `Hello ${marker}`, maxRetries: 0,
    });
    assert.ok(result.text.endsWith(`You said: Hello ${marker}`), result.text);
    assert.equal(result.finishReason, 'stop');
    assert.ok(result.usage.outputTokens > 0 && result.usage.totalTokens > 0,
      JSON.stringify(result.usage));
    const seen = await upstreamRequestWith(marker);
    assert.equal(seen.path, provider.path);
    assert.equal(seen.body.model, MODEL);
  });

  test(`${name}: streamText yields the upstream's deltas as they come`, async () => {
    const marker = nonce();
    const tokens = ['Stream', 'ing ', 'through ', 'the ', 'proxy'];
    const result = streamText({
      model: provider.model({ tokens, chunk_delay: 0.02 }), prompt: marker, maxRetries: 0,
    });
    const deltas = [];
    for await (const delta of result.textStream) deltas.push(delta);
    assert.deepEqual(deltas, tokens);
    assert.equal(await result.finishReason, 'stop');
    assert.equal((await result.usage).outputTokens, tokens.length);
    const seen = await upstreamRequestWith(marker);
    assert.equal(seen.path, provider.path);
    assert.equal(seen.body.stream, true);
    assert.equal(seen.outcome, 'ok');
  });

  test(`${name}: a streamed tool call assembles into its arguments`, async () => {
    const marker = nonce();
    const result = streamText({
      model: provider.model(weatherCall()), prompt: `Weather in Paris? ${marker}`,
      tools: { get_weather: weather }, maxRetries: 0,
    });
    const parts = await allParts(result);
    const inputDeltas = parts.filter((p) => p.type === 'tool-input-delta').map((p) => p.delta);
    assert.ok(inputDeltas.length >= 2, `the arguments came in one piece: ${inputDeltas}`);
    assert.deepEqual(JSON.parse(inputDeltas.join('')), WEATHER_ARGS);
    const calls = await result.toolCalls;
    assert.equal(calls.length, 1);
    assert.equal(calls[0].toolName, 'get_weather');
    assert.deepEqual(calls[0].input, WEATHER_ARGS);
    assert.equal(await result.finishReason, 'tool-calls');
    const seen = await upstreamRequestWith(marker);
    const declared = JSON.stringify(seen.body.tools);
    assert.ok(declared.includes('get_weather'), `the tool was not declared upstream: ${declared}`);
  });

  test(`${name}: an upstream 429 is retried after retry-after-ms, then a RetryError`, async () => {
    const marker = nonce();
    let err = null;
    try {
      await generateText({
        model: provider.model(RATE_LIMITED), prompt: marker, maxRetries: 2,
      });
    } catch (caught) {
      err = caught;
    }
    assert.ok(RetryError.isInstance(err), `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.reason, 'maxRetriesExceeded');
    assert.equal(err.errors.length, 3);
    const last = err.lastError;
    assert.ok(APICallError.isInstance(last), `got ${last?.constructor?.name}`);
    assert.equal(last.statusCode, 429);
    assert.equal(last.isRetryable, true);
    assert.equal(last.message, 'Rate limit reached for requests');
    // the hint the SDK waited by reached it through the proxy
    assert.equal(last.responseHeaders['retry-after-ms'], '10');
    assert.equal(last.responseHeaders['retry-after'], '1');
    // counted upstream, not timed: the first try and two retries
    const seen = await upstreamRequestsWith(marker);
    assert.equal(seen.length, 3);
    assert.ok(seen.every((r) => r.status === 429 && r.path === provider.path));
  });

  test(`${name}: a stream the upstream cuts ends in an error part, no hang`, async () => {
    const marker = nonce();
    const errors = [];
    const result = streamText({
      model: provider.model(cutAfter(provider.beforeDeltas + 2)), prompt: marker, maxRetries: 0,
      onError: ({ error }) => errors.push(error),
    });
    const parts = await allParts(result);
    const text = parts.filter((p) => p.type === 'text-delta').map((p) => p.text).join('');
    assert.equal(text, 'ab');
    const errorParts = parts.filter((p) => p.type === 'error');
    assert.equal(errorParts.length, 1, JSON.stringify(parts.map((p) => p.type)));
    // the proxy's error event, parsed: its code and message, not a parse failure
    const { error } = errorParts[0];
    assert.match(error.message, /^The upstream API failed to send a valid response/);
    assert.equal(error.code, 'upstream_invalid_response', JSON.stringify(error));
    if (provider.path === '/v1/responses') {
      // the Responses API's error event, numbered after the events relayed
      assert.equal(error.data.type, 'error');
      assert.equal(error.data.sequence_number, provider.beforeDeltas + 2);
    }
    assert.equal(await result.finishReason, 'error');
    assert.equal(errors.length, 1);
    assert.equal((await upstreamRequestEnded(marker)).outcome, 'hangup');
  });

  test(`${name}: aborting a stream stops the upstream transfer`, async () => {
    const marker = nonce();
    const controller = new AbortController();
    const result = streamText({
      model: provider.model(LONG_STREAM), prompt: marker, maxRetries: 0,
      abortSignal: controller.signal, onError: () => {},
    });
    let deltas = 0;
    const types = [];
    for await (const part of result.fullStream) {
      types.push(part.type);
      if (part.type === 'text-delta' && ++deltas === 3) controller.abort();
    }
    assert.equal(deltas, 3, `deltas after the abort: ${types}`);
    assert.ok(types.includes('abort'), `no abort part: ${types}`);
    const seen = await upstreamRequestEnded(marker);
    assert.equal(seen.outcome, 'client_gone');
    assert.ok(seen.chunks_sent < 60, `the upstream kept streaming (${seen.chunks_sent} events)`);
  });
}
