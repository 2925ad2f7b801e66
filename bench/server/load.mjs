// Load test for `gptoss serve` (loopback only): N concurrent streaming chat clients for D seconds.
//
//   node bench/server/load.mjs --base http://127.0.0.1:8000/v1 [--clients 256] [--seconds 60]
//        [--max-tokens 32] [--key KEY] [--out bench/results/server-load.json] [--label TEXT]
//
// Each client loops: POST /v1/chat/completions with stream: true, reads the SSE stream to [DONE],
// records time to first token (first reasoning/content delta; a model that writes no harmony channels,
// like a random one, streams its deltas only at the end, so the engine's own first-token histogram from
// /metrics is reported too) and the token count. A request fails on a
// non-200 status, a network error, an SSE error object or a stream without [DONE]. After the run it
// waits for the server to go idle and reads /metrics: gptoss_kv_blocks_used must be back to 0.
import { writeFileSync } from 'node:fs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const base = args.base;
if (!base || !/^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\//.test(base)) {
  console.error('--base must be a loopback URL such as http://127.0.0.1:8000/v1');
  process.exit(2);
}
const clients = Number(args.clients ?? 256);
const seconds = Number(args.seconds ?? 60);
const maxTokens = Number(args['max-tokens'] ?? 32);
const headers = { 'Content-Type': 'application/json' };
if (args.key) headers.Authorization = `Bearer ${args.key}`;

const models = await (await fetch(`${base}/models`, { headers })).json();
const model = models.data[0].id;
const ttft = [], durations = [];
let ok = 0, failed = 0, tokens = 0;
const failures = {};
const note = (why) => { failed++; failures[why] = (failures[why] ?? 0) + 1; };
const deadline = performance.now() + seconds * 1000;

async function one(id, n) {
  const t0 = performance.now();
  const body = JSON.stringify({ model, stream: true, stream_options: { include_usage: true }, max_tokens: maxTokens,
    messages: [{ role: 'user', content: `client ${id} request ${n}: say something` }] });
  let res;
  try {
    res = await fetch(`${base}/chat/completions`, { method: 'POST', headers, body });
  } catch (e) { return note(`network: ${e.cause?.code ?? e.message}`); }
  if (res.status !== 200) { await res.text().catch(() => {}); return note(`status ${res.status}`); }
  const dec = new TextDecoder();
  let buf = '', first = null, done = false, usage = null;
  try {
    for await (const part of res.body) {
      buf += dec.decode(part, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!ev.startsWith('data: ')) continue;
        const data = ev.slice(6);
        if (data === '[DONE]') { done = true; continue; }
        const j = JSON.parse(data);
        if (j.error) throw new Error(`sse error: ${j.error.code ?? j.error.message}`);
        if (j.usage) usage = j.usage;
        const d = j.choices?.[0]?.delta;
        if (first === null && d && (d.content || d.reasoning_content || d.tool_calls)) first = performance.now();
      }
    }
  } catch (e) { return note(`stream: ${e.message}`); }
  if (!done) return note('stream without [DONE]');
  ok++;
  tokens += usage?.completion_tokens ?? 0;
  if (first !== null) ttft.push((first - t0) / 1000);
  durations.push((performance.now() - t0) / 1000);
}

async function client(id) {
  // Stagger the start over one second so 256 connects do not arrive as one burst.
  await new Promise((r) => setTimeout(r, (id * 1000) / clients));
  for (let n = 0; performance.now() < deadline; n++) await one(id, n);
}

const started = performance.now();
await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
const wall = (performance.now() - started) / 1000;

const metric = (text, name) => {
  const m = text.match(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm'));
  return m ? Number(m[1]) : null;
};
let metrics = '', kvUsed = null, active = null;
for (let i = 0; i < 100; i++) {  // up to 10 s for the engine to drop finished sequences
  metrics = await (await fetch(`${base.replace(/\/v1$/, '')}/metrics`)).text();
  kvUsed = metric(metrics, 'gptoss_kv_blocks_used');
  active = metric(metrics, 'gptoss_requests_active');
  if ((kvUsed ?? 0) === 0 && active === 0) break;
  await new Promise((r) => setTimeout(r, 100));
}
// p-quantile of a Prometheus histogram: the upper bound of the bucket that holds it.
const histQuantile = (text, name, p) => {
  const buckets = [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)$`, 'gm'))]
    .map((m) => [m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  for (const [le, cum] of buckets) if (cum >= p * total) return le;
  return null;
};
const q = (xs, p) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
};
const result = {
  label: args.label ?? '',
  model, clients, seconds, max_tokens: maxTokens, wall_s: +wall.toFixed(2),
  requests_ok: ok, requests_failed: failed, failures,
  requests_per_s: +(ok / wall).toFixed(2), tokens_per_s: +(tokens / wall).toFixed(1), completion_tokens: tokens,
  ttft_s: { p50: q(ttft, 0.5), p90: q(ttft, 0.9), p99: q(ttft, 0.99), max: q(ttft, 1) },
  request_s: { p50: q(durations, 0.5), p99: q(durations, 0.99) },
  after: { kv_blocks_used: kvUsed, requests_active: active, kv_blocks_total: metric(metrics, 'gptoss_kv_blocks_total'),
    server_ttft_count: metric(metrics, 'gptoss_time_to_first_token_seconds_count'),
    engine_ttft_p50_bucket_s: histQuantile(metrics, 'gptoss_engine_time_to_first_token_seconds', 0.5),
    engine_ttft_p99_bucket_s: histQuantile(metrics, 'gptoss_engine_time_to_first_token_seconds', 0.99),
    engine_itl_p99_bucket_s: histQuantile(metrics, 'gptoss_engine_inter_token_latency_seconds', 0.99) },
  date: new Date().toISOString(),
};
console.log(JSON.stringify(result, null, 2));
if (args.out) writeFileSync(args.out, JSON.stringify(result, null, 2) + '\n');
process.exit(failed === 0 && (kvUsed ?? 0) === 0 ? 0 : 1);
