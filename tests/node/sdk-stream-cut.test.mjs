// A stream the upstream cuts: the proxy ends it with an SSE error event, and
// the SDK must throw instead of ending the stream as if it were complete.
// Its own file: httpd logs "upstream request failed" for it, which
// tests/integration/test_sdk.py allows for this file only.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MESSAGES, OpenAI, client, nonce, upstreamRequestEnded } from './lib.mjs';

test('a stream cut by the upstream ends in an APIError, after the deltas that came', async () => {
  const marker = nonce();
  const stream = await client('OAIP_V1_URL').chat.completions.create({
    model: 'gpt-4o-mini',
    messages: MESSAGES(marker),
    stream: true,
    // role chunk, "a", "b", then the upstream hangs up without [DONE]
    mock: { tokens: ['a', 'b', 'c', 'd'], hangup_after: 3, chunk_delay: 0.01 },
  });
  const deltas = [];
  let err = null;
  try {
    for await (const chunk of stream) deltas.push(chunk.choices[0]?.delta?.content ?? '');
  } catch (caught) {
    err = caught;
  }
  assert.deepEqual(deltas.filter(Boolean), ['a', 'b']);
  assert.ok(err, 'the cut stream ended like a complete one');
  assert.ok(err instanceof OpenAI.APIError, `got ${err?.constructor?.name}: ${err}`);
  assert.equal(err.status, undefined); // the 200 was sent long before
  assert.equal(err.code, 'upstream_invalid_response');
  assert.equal(err.type, 'upstream_error');
  assert.match(err.message, /^The upstream API failed to send a valid response/);
  assert.equal((await upstreamRequestEnded(marker)).outcome, 'hangup');
});

test('a Responses stream cut by the upstream ends in an APIError from its error event', async () => {
  const marker = nonce();
  const stream = await client('OAIP_V1_URL').responses.create({
    model: 'gpt-4o-mini',
    input: marker,
    stream: true,
    // response.created ... content_part.added (0-3), deltas "a" and "b" (4, 5),
    // then the upstream hangs up
    mock: { tokens: ['a', 'b', 'c', 'd'], hangup_after: 6, chunk_delay: 0.01 },
  });
  const deltas = [];
  const numbers = [];
  let err = null;
  try {
    for await (const event of stream) {
      numbers.push(event.sequence_number);
      if (event.type === 'response.output_text.delta') deltas.push(event.delta);
    }
  } catch (caught) {
    err = caught;
  }
  assert.deepEqual(deltas, ['a', 'b']);
  assert.deepEqual(numbers, [0, 1, 2, 3, 4, 5]);
  assert.ok(err instanceof OpenAI.APIError, `got ${err?.constructor?.name}: ${err}`);
  assert.equal(err.status, undefined);
  // the error event's own fields: {"type":"error","code","message","param","sequence_number"}
  assert.equal(err.code, 'upstream_invalid_response');
  assert.equal(err.type, 'error');
  assert.equal(err.error.sequence_number, 6);
  assert.match(err.message, /^The upstream API failed to send a valid response/);
  assert.equal((await upstreamRequestEnded(marker)).outcome, 'hangup');
});
