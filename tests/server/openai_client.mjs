// Drives `gptoss serve` with the official `openai` npm client (not written here).
//   node openai_client.mjs script            prints the --scripted replies file for the requests below
//   node openai_client.mjs scripted BASE KEY  checks the scripted server (exact texts)
//   node openai_client.mjs model BASE KEY     checks a real (tiny, random) model (shapes only)
import assert from 'node:assert/strict';

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];
const toolMessages = [{ role: 'user', content: 'What is the weather in Paris?' }];
const TOOL_REASONING = 'Need the weather tool.';
// The conversation after the call: the script for it must be its own (longer) prompt, or the first
// script (a prefix of it) would call the tool again.
const toolCall = { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } };
const toolFollowUp = [...toolMessages,
  { role: 'assistant', content: null, reasoning_content: TOOL_REASONING, tool_calls: [toolCall] },
  { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c": 21}' }];
const REASONING = 'The user greets me.';
const ANSWER = 'Hello! How can I help?';

const mode = process.argv[2];
if (mode === 'script') {
  console.log(JSON.stringify({
    default: `<|channel|>analysis<|message|>${REASONING}<|end|><|start|>assistant<|channel|>final<|message|>${ANSWER}<|return|>`,
    scripts: [{
      request: { messages: toolMessages, tools },
      completion: `<|channel|>analysis<|message|>${TOOL_REASONING}<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>`,
    }, {
      request: { messages: toolFollowUp, tools },
      completion: '<|channel|>final<|message|>It is 21 degrees in Paris.<|return|>',
    }],
  }));
  process.exit(0);
}

const { default: OpenAI } = await import('openai');
const [, , , baseURL, apiKey] = process.argv;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const scripted = mode === 'scripted';
let checks = 0;
const ok = (name) => { checks++; console.log(`ok - ${name}`); };

// models
const models = await client.models.list();
const model = models.data[0].id;
assert.ok(model.length > 0);
ok(`models.list -> ${model}`);

// chat, plain
const chat = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'hi' }], max_tokens: scripted ? 100 : 8, temperature: 0,
});
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices[0].message.role, 'assistant');
assert.ok(['stop', 'length'].includes(chat.choices[0].finish_reason));
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
if (scripted) {
  assert.equal(chat.choices[0].message.content, ANSWER);
  assert.equal(chat.choices[0].message.reasoning_content, REASONING);
  assert.equal(chat.choices[0].message.reasoning, REASONING);
  assert.equal(chat.choices[0].finish_reason, 'stop');
} else {
  assert.ok(chat.usage.completion_tokens > 0 && chat.usage.completion_tokens <= 8);
}
ok('chat.completions.create');

// chat, streaming with usage
const stream = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true },
  max_tokens: scripted ? 100 : 8,
});
let content = '', reasoning = '', finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  if (!chunk.choices.length) continue;
  const d = chunk.choices[0].delta;
  content += d.content ?? '';
  reasoning += d.reasoning_content ?? '';
  finish = chunk.choices[0].finish_reason ?? finish;
}
assert.ok(chunks >= 2);
assert.ok(usage && usage.completion_tokens > 0);
assert.ok(['stop', 'length'].includes(finish));
if (scripted) {
  assert.equal(content, ANSWER);
  assert.equal(reasoning, REASONING);
}
ok(`chat stream (${chunks} chunks)`);

if (scripted) {
  // tools: streamed arguments, accumulated by the SDK's stream helper
  const toolStream = client.beta.chat.completions.stream({ model, messages: toolMessages, tools });
  const args = [];
  toolStream.on('tool_calls.function.arguments.delta', (e) => args.push(e.arguments_delta));
  const final = await toolStream.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
  assert.ok(call.id.startsWith('call_'));
  ok(`tool call streamed (${args.length} argument deltas)`);

  // tools, plain: then send the result back and get the default answer
  const c1 = await client.chat.completions.create({ model, messages: toolMessages, tools });
  const tc = c1.choices[0].message.tool_calls[0];
  assert.equal(tc.function.name, 'get_weather');
  const c2 = await client.chat.completions.create({
    model, tools,
    messages: [...toolMessages, c1.choices[0].message, { role: 'tool', tool_call_id: tc.id, content: '{"temp_c": 21}' }],
  });
  assert.equal(c2.choices[0].message.content, 'It is 21 degrees in Paris.');
  ok('tool call round trip');
}

// responses, plain and streaming
const resp = await client.responses.create({ model, input: 'hi', instructions: 'Be brief.', reasoning: { effort: 'low' },
  max_output_tokens: scripted ? 100 : 8 });
assert.equal(resp.object, 'response');
if (scripted) {
  assert.equal(resp.status, 'completed');
  assert.equal(resp.output_text, ANSWER);
  assert.equal(resp.output[0].type, 'reasoning');
}
ok('responses.create');
const rstream = await client.responses.create({ model, input: [{ role: 'user', content: 'hi' }], stream: true,
  max_output_tokens: scripted ? 100 : 8 });
const types = new Set();
let text = '', rtext = '';
for await (const ev of rstream) {
  types.add(ev.type);
  if (ev.type === 'response.output_text.delta') text += ev.delta;
  if (ev.type === 'response.reasoning_text.delta') rtext += ev.delta;
}
assert.ok(types.has('response.created'));
assert.ok(types.has('response.completed') || types.has('response.incomplete'));
if (scripted) {
  assert.equal(text, ANSWER);
  assert.equal(rtext, REASONING);
}
ok(`responses stream (${[...types].length} event types)`);

// errors
await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
  (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
await assert.rejects(client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], temperature: 9 }),
  (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature');
await assert.rejects(client.chat.completions.create({ model, messages: [] }),
  (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages');
const wrong = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
await assert.rejects(wrong.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
ok('error statuses (404 model, 400 field, 401 key)');

console.log(`all ${checks} checks passed`);
