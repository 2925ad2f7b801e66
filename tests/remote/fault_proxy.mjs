// A fault-injecting OpenAI-compatible chat server on loopback for `gptoss infer` batch tests.
// Prints its port, then serves POST /v1/chat/completions (non-streaming). The first attempt for the row
// whose last user message is "row N" fails according to N % 6: 1 -> 503, 2 -> 429 with Retry-After: 0,
// 3 -> connection cut mid-body, 4 -> malformed JSON, 5 -> no answer for 3 s (timeout); later attempts and
// other rows answer "echo: row N". "always 503" always fails; "bad request" gets 400.
// GET /stats returns {attempts: {prompt: count}}.
import http from 'node:http';

const attempts = {};
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.setHeader('Content-Type', 'application/json');
    return res.end(JSON.stringify({ attempts }));
  }
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const j = JSON.parse(body);
    const users = j.messages.filter((m) => m.role === 'user');
    const prompt = users[users.length - 1].content;
    const n = (attempts[prompt] = (attempts[prompt] ?? 0) + 1);
    const reply = JSON.stringify({
      id: 'x', object: 'chat.completion', model: j.model,
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: `echo: ${prompt}`, reasoning: 'ok' } }],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    });
    const error = (status, extra = {}) => {
      res.writeHead(status, { 'Content-Type': 'application/json', ...extra });
      res.end(JSON.stringify({ error: { message: `injected ${status}` } }));
    };
    if (prompt === 'always 503') return error(503);
    if (prompt === 'bad request') return error(400);
    const m = /^row (\d+)$/.exec(prompt);
    const fault = m && n === 1 ? Number(m[1]) % 6 : 0;
    switch (fault) {
      case 1: return error(503);
      case 2: return error(429, { 'Retry-After': '0' });
      case 3:
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(reply.length) });
        res.write(reply.slice(0, 10));
        return setTimeout(() => res.socket.destroy(), 20);
      case 4:
        res.writeHead(200, { 'Content-Type': 'application/json' });
        return res.end('{"choices": [');
      case 5:
        return setTimeout(() => { if (!res.socket.destroyed) { res.writeHead(200); res.end(reply); } }, 3000);
      default:
        res.writeHead(200, { 'Content-Type': 'application/json' });
        return res.end(reply);
    }
  });
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
