// OpenAI's reasoning models (o3-mini, gpt-5-mini) through a Location with
// the defaults (OAIP_V1_URL), with each SDK: OpenAI refuses a temperature
// other than 1 and max_tokens for them (the mock does too), so the proxy
// must not add its Worker-era defaults (temperature 0.7, max_tokens 1000) to
// their requests. The Chat Completions cases pass once the proxy leaves
// those defaults out for reasoning models; the Responses API never had
// them.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';
import { generateText, streamText } from 'ai';

import {
  DUMMY_KEY, MESSAGES, assertNoRefusedFields, client, env, fetchWithMock, nonce,
  upstreamRequestWith,
} from './lib.mjs';

const REASONING = ['o3-mini', 'gpt-5-mini'];

function vercel() {
  return createOpenAI({ baseURL: env('OAIP_V1_URL'), apiKey: DUMMY_KEY,
    fetch: fetchWithMock(null) });
}

function langchain(model, options = {}) {
  return new ChatOpenAI({
    model, apiKey: DUMMY_KEY, maxRetries: 0, ...options,
    configuration: { baseURL: env('OAIP_V1_URL'), fetch: fetchWithMock(null) },
  });
}

const said = (marker) => new RegExp(`You said: (Hello )?${marker}$`);

async function checkUpstream(marker, path, what) {
  const seen = await upstreamRequestWith(marker);
  assert.equal(seen.path, path, what);
  assert.equal(seen.status, 200, what);
  assertNoRefusedFields(seen, what);
}

for (const model of REASONING) {
  test(`openai SDK, ${model}: chat.completions plain and streamed`, async () => {
    const sdk = client('OAIP_V1_URL');
    let marker = nonce();
    const completion = await sdk.chat.completions.create({ model, messages: MESSAGES(marker) });
    assert.match(completion.choices[0].message.content, said(marker));
    await checkUpstream(marker, '/v1/chat/completions', `${model} chat`);

    marker = nonce();
    let text = '';
    const stream = await sdk.chat.completions.create({ model, messages: MESSAGES(marker),
      stream: true });
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.match(text, said(marker));
    await checkUpstream(marker, '/v1/chat/completions', `${model} chat stream`);
  });

  test(`openai SDK, ${model}: responses.create`, async () => {
    const marker = nonce();
    const response = await client('OAIP_V1_URL').responses.create({ model, input: marker });
    assert.match(response.output_text, said(marker));
    await checkUpstream(marker, '/v1/responses', `${model} responses`);
  });

  test(`Vercel AI SDK, ${model}: openai(model) and openai.chat()`, async () => {
    let marker = nonce();
    const result = await generateText({ model: vercel()(model), prompt: marker, maxRetries: 0 });
    assert.match(result.text, said(marker));
    await checkUpstream(marker, '/v1/responses', `${model} openai(model)`);

    marker = nonce();
    const streamed = streamText({ model: vercel().chat(model), prompt: marker, maxRetries: 0 });
    let text = '';
    for await (const delta of streamed.textStream) text += delta;
    assert.equal(await streamed.finishReason, 'stop');
    assert.match(text, said(marker));
    await checkUpstream(marker, '/v1/chat/completions', `${model} openai.chat()`);
  });

  test(`LangChain, ${model}: ChatOpenAI over Chat Completions and the Responses API`, async () => {
    let marker = nonce();
    const message = await langchain(model).invoke(marker);
    assert.match(String(message.content), said(marker));
    await checkUpstream(marker, '/v1/chat/completions', `${model} ChatOpenAI`);

    marker = nonce();
    let text = '';
    for await (const chunk of await langchain(model, { useResponsesApi: true }).stream(marker)) {
      text += typeof chunk.content === 'string' ? chunk.content
        : chunk.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
    }
    assert.match(text, said(marker));
    await checkUpstream(marker, '/v1/responses', `${model} ChatOpenAI useResponsesApi`);
  });
}
