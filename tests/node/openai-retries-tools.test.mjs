// The official openai SDK with a default Location (OAIP_V1_URL) as its
// baseURL, beyond plain answers (sdk.test.mjs): streamed tool calls over
// Chat Completions and the Responses API, its own retries after an upstream
// 429 as retry-after-ms and x-should-retry steer them, and an abort
// (AbortController) that stops the upstream.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  LONG_STREAM, MESSAGES, OpenAI, RATE_LIMITED, WEATHER_ARGS, WEATHER_SCHEMA, client, nonce,
  rejection, upstreamRequestEnded, upstreamRequestWith, upstreamRequestsWith, weatherCall,
} from './lib.mjs';

const MODEL = 'gpt-4o-mini';
const CHAT_TOOL = {
  type: 'function',
  function: { name: 'get_weather', description: 'The weather forecast', parameters: WEATHER_SCHEMA },
};
const RESPONSES_TOOL = {
  type: 'function', name: 'get_weather', description: 'The weather forecast',
  parameters: WEATHER_SCHEMA, strict: true,
};

test('chat: a streamed tool call\'s deltas assemble into its arguments', async () => {
  const marker = nonce();
  const stream = await client('OAIP_V1_URL').chat.completions.create({
    model: MODEL, messages: MESSAGES(`Weather? ${marker}`), tools: [CHAT_TOOL], stream: true,
    mock: weatherCall(),
  });
  const calls = [];
  let finish = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    for (const delta of choice.delta.tool_calls ?? []) {
      calls[delta.index] ??= { id: '', name: '', arguments: '', pieces: 0 };
      const call = calls[delta.index];
      call.id += delta.id ?? '';
      call.name += delta.function?.name ?? '';
      if (delta.function?.arguments) {
        call.arguments += delta.function.arguments;
        call.pieces += 1;
      }
    }
    finish = choice.finish_reason ?? finish;
  }
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, 'get_weather');
  assert.match(calls[0].id, /^call_/);
  assert.ok(calls[0].pieces >= 2, `the arguments came in ${calls[0].pieces} piece(s)`);
  assert.deepEqual(JSON.parse(calls[0].arguments), WEATHER_ARGS);
  assert.equal(finish, 'tool_calls');
  assert.deepEqual((await upstreamRequestWith(marker)).body.tools, [CHAT_TOOL]);
});

test('chat: the stream helper\'s final completion carries the parsed call', async () => {
  const marker = nonce();
  const runner = client('OAIP_V1_URL').chat.completions.stream({
    model: MODEL, messages: MESSAGES(marker), tools: [CHAT_TOOL], mock: weatherCall(),
  });
  const final = await runner.finalChatCompletion();
  const [call] = final.choices[0].message.tool_calls;
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), WEATHER_ARGS);
});

test('responses: a streamed function call\'s argument deltas assemble', async () => {
  const marker = nonce();
  const stream = client('OAIP_V1_URL').responses.stream({
    model: MODEL, input: `Weather? ${marker}`, tools: [RESPONSES_TOOL], mock: weatherCall(),
  });
  let args = '';
  let pieces = 0;
  for await (const event of stream) {
    if (event.type === 'response.function_call_arguments.delta') {
      args += event.delta;
      pieces += 1;
    }
  }
  assert.ok(pieces >= 2, `the arguments came in ${pieces} piece(s)`);
  assert.deepEqual(JSON.parse(args), WEATHER_ARGS);
  const final = await stream.finalResponse();
  const [call] = final.output.filter((item) => item.type === 'function_call');
  assert.equal(call.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.arguments), WEATHER_ARGS);
  assert.equal((await upstreamRequestWith(marker)).path, '/v1/responses');
});

test('an upstream 429 is retried after retry-after-ms, then a RateLimitError', async () => {
  for (const api of ['chat', 'responses']) {
    const marker = nonce();
    const sdk = client('OAIP_V1_URL', { maxRetries: 2 });
    const call = api === 'chat'
      ? sdk.chat.completions.create({ model: MODEL, messages: MESSAGES(marker), mock: RATE_LIMITED })
      : sdk.responses.create({ model: MODEL, input: marker, mock: RATE_LIMITED });
    const err = await rejection(call);
    assert.ok(err instanceof OpenAI.RateLimitError, `${api}: got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.headers.get('retry-after-ms'), '10', api);
    assert.equal(err.headers.get('retry-after'), '1', api);
    // counted upstream, not timed: the first try and two retries
    assert.equal((await upstreamRequestsWith(marker)).length, 3, api);
  }
});

test('x-should-retry from the upstream decides whether the SDK retries', async () => {
  const sdk = client('OAIP_V1_URL', { maxRetries: 2 });
  const cases = [
    // a 429 the upstream says not to retry: one request
    { status: 429, header: 'false', requests: 1, type: OpenAI.RateLimitError },
    // a 400 the upstream says to retry: the SDK would not have, by its status
    { status: 400, header: 'true', requests: 3, type: OpenAI.BadRequestError },
  ];
  for (const expected of cases) {
    const marker = nonce();
    const err = await rejection(sdk.chat.completions.create({
      model: MODEL, messages: MESSAGES(marker),
      mock: { status: expected.status,
        raw_headers: [['x-should-retry', expected.header], ['retry-after-ms', '5']] },
    }));
    assert.ok(err instanceof expected.type, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.headers.get('x-should-retry'), expected.header);
    assert.equal((await upstreamRequestsWith(marker)).length, expected.requests,
      `${expected.status} with x-should-retry: ${expected.header}`);
  }
});

test('an AbortController stops the stream and the upstream transfer', async () => {
  for (const api of ['chat', 'responses']) {
    const marker = nonce();
    const controller = new AbortController();
    const sdk = client('OAIP_V1_URL');
    const stream = api === 'chat'
      ? await sdk.chat.completions.create({ model: MODEL, messages: MESSAGES(marker), stream: true,
        mock: LONG_STREAM }, { signal: controller.signal })
      : await sdk.responses.create({ model: MODEL, input: marker, stream: true,
        mock: LONG_STREAM }, { signal: controller.signal });
    let deltas = 0;
    let err = null;
    try {
      for await (const event of stream) {
        const delta = api === 'chat' ? event.choices[0]?.delta?.content
          : event.type === 'response.output_text.delta';
        if (delta && ++deltas === 3) controller.abort();
      }
    } catch (caught) {
      err = caught;
    }
    // the SDK ends a stream its caller aborted quietly, without an error
    assert.equal(err, null, `${api}: ${err?.constructor?.name}: ${err}`);
    assert.ok(controller.signal.aborted);
    assert.equal(deltas, 3, api);
    const seen = await upstreamRequestEnded(marker);
    assert.equal(seen.outcome, 'client_gone', api);
    assert.ok(seen.chunks_sent < 60, `${api}: the upstream kept streaming (${seen.chunks_sent})`);
  }
});
