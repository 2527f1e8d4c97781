// The official openai Node SDK against the other endpoints of a Location with
// OpenAIProxyEndpoints (OAIP_ENDPOINTS_URL): models, embeddings, the
// Responses API (plain and streamed) and an audio upload.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { toFile } from 'openai';

import { DUMMY_KEY, client, env, mockRecords, nonce, sha256, upstreamRequestWith } from './lib.mjs';

/** Asserts that the upstream got the configured key, never the SDK's. */
function assertConfiguredKey(record) {
  const authorization = record.headers.authorization ?? ''; // never print it
  assert.ok(!authorization.includes(DUMMY_KEY), 'the SDK\'s key reached the upstream');
  assert.ok(sha256(authorization.slice('Bearer '.length)) === env('OAIP_UPSTREAM_KEY_SHA256'),
    'the upstream did not get the configured key');
}

test('models.list and models.retrieve go upstream as GET', async () => {
  const sdk = client('OAIP_ENDPOINTS_URL');
  const ids = [];
  for await (const model of sdk.models.list()) ids.push(model.id);
  assert.ok(ids.includes('gpt-4o-mini'), `unexpected model list: ${ids}`);
  const model = await sdk.models.retrieve('gpt-4o-mini');
  assert.equal(model.id, 'gpt-4o-mini');
  assert.equal(model.object, 'model');
  const gets = (await mockRecords()).filter((r) => r.method === 'GET');
  assert.deepEqual(gets.slice(-2).map((r) => r.path), ['/v1/models', '/v1/models/gpt-4o-mini']);
  gets.slice(-2).forEach(assertConfiguredKey);
});

test('embeddings.create returns vectors and usage', async () => {
  const marker = nonce();
  const result = await client('OAIP_ENDPOINTS_URL').embeddings.create({
    model: 'text-embedding-3-small',
    input: [`first ${marker}`, 'second text here'],
    dimensions: 16,
  });
  assert.equal(result.data.length, 2);
  // the SDK asks for base64 and decodes it into floats
  assert.equal(result.data[0].embedding.length, 16);
  assert.equal(result.usage.prompt_tokens, 5);
  const seen = await upstreamRequestWith(marker);
  assert.equal(seen.path, '/v1/embeddings');
  assert.equal(seen.body.model, 'text-embedding-3-small');
  assertConfiguredKey(seen);
});

test('responses.create answers with output_text', async () => {
  const marker = nonce();
  const response = await client('OAIP_ENDPOINTS_URL').responses.create({
    model: 'gpt-4o-mini',
    input: `Hello ${marker}`,
  });
  assert.equal(response.object, 'response');
  assert.ok(response.output_text.endsWith(`You said: Hello ${marker}`), response.output_text);
  assert.ok(response.usage.total_tokens > 0);
  assert.equal((await upstreamRequestWith(marker)).path, '/v1/responses');
});

test('responses.create with stream: true yields the named events in order', async () => {
  const marker = nonce();
  const tokens = ['Named ', 'events ', 'pass ', 'through'];
  const stream = await client('OAIP_ENDPOINTS_URL').responses.create({
    model: 'gpt-4o-mini',
    input: marker,
    stream: true,
    mock: { tokens, chunk_delay: 0.02 },
  });
  const types = [];
  const deltas = [];
  let completed = null;
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === 'response.output_text.delta') deltas.push(event.delta);
    if (event.type === 'response.completed') completed = event.response;
  }
  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), 'response.completed');
  assert.deepEqual(deltas, tokens);
  assert.equal(completed.usage.output_tokens, tokens.length);
  assert.equal((await upstreamRequestWith(marker)).body.stream, true);
});

test('audio.transcriptions.create uploads the file byte for byte', async () => {
  const marker = nonce();
  const audio = Buffer.alloc(50_000);
  for (let i = 0; i < audio.length; i++) audio[i] = (i * 7919) % 256; // every byte value
  const result = await client('OAIP_ENDPOINTS_URL').audio.transcriptions.create({
    file: await toFile(audio, 'speech.wav', { type: 'audio/wav' }),
    model: 'whisper-1',
    prompt: marker,
  });
  assert.equal(result.text, 'This is a mock transcription.');
  const [file] = result.mock_received.files;
  assert.equal(file.filename, 'speech.wav');
  assert.equal(file.bytes, audio.length);
  assert.equal(file.sha256, sha256(audio));
  assert.equal(result.mock_received.fields.model, 'whisper-1');
  const seen = await upstreamRequestWith(marker);
  assert.equal(seen.path, '/v1/audio/transcriptions');
  assert.match(seen.headers['content-type'], /^multipart\/form-data; boundary=/);
  assertConfiguredKey(seen);
});
