// The openai SDK through a failover (tests/integration/test_backends.py
// runs this file against an httpd of its own: not *.test.mjs, so
// test_sdk.py does not run it against the shared one). OAIP_V1_URL is a
// Location whose route's first backend answers 503 (Retry-After) and whose
// second answers: the SDK, retries off, sees one clean answer, a stream
// with every delta, and no error.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MESSAGES, client, nonce } from './lib.mjs';

test('a chat completion through a failover is a clean answer', async () => {
  const completion = await client('OAIP_V1_URL').chat.completions.create({
    model: 'gpt-4o-mini',
    messages: MESSAGES(nonce()),
    mock: { reply: 'from the second backend' },
  });
  assert.equal(completion.object, 'chat.completion');
  assert.equal(completion.choices[0].message.content, 'from the second backend');
  assert.ok(completion.usage.total_tokens > 0);
});

test('a stream through a failover has every delta and ends cleanly', async () => {
  const stream = await client('OAIP_V1_URL').chat.completions.create({
    model: 'gpt-4o-mini',
    messages: MESSAGES(nonce()),
    stream: true,
    mock: { tokens: ['a', 'b', 'c'] },
  });
  const deltas = [];
  for await (const chunk of stream) deltas.push(chunk.choices[0]?.delta?.content ?? '');
  assert.deepEqual(deltas.filter(Boolean), ['a', 'b', 'c']);
});

test('a Responses call through a failover is a clean answer', async () => {
  const response = await client('OAIP_V1_URL').responses.create({
    model: 'gpt-4o-mini',
    input: nonce(),
    mock: { reply: 'responses after a failover' },
  });
  assert.equal(response.output_text, 'responses after a failover');
});
