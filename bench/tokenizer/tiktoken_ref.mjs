// Reference side of the tokenizer benchmark and of the conformance checks: OpenAI's tiktoken (npm
// package `tiktoken`, the WASM build of the Rust core) with o200k_base plus the 1,090 o200k_harmony
// special tokens, configured exactly as /work/shared/data/tokenizer/vectors.jsonl was made.
//
//   node tiktoken_ref.mjs MODULE_DIR bench FILE [REPEATS]   encode_ordinary(FILE) timed; prints JSON
//   node tiktoken_ref.mjs MODULE_DIR ids FILE               ids of FILE (comma-separated) on stdout
//   node tiktoken_ref.mjs MODULE_DIR jsonl                  stdin {"text"} lines -> {"ids","ids_special"}
// MODULE_DIR is the node_modules folder that holds tiktoken (installed by run.sh into a temp dir).
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const [moduleDir, mode, file, repeatsArg] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(moduleDir), "x.js"));
const { Tiktoken } = require("tiktoken/lite");
const o200k = require("tiktoken/encoders/o200k_base.json");

const named = {
  199998: "<|startoftext|>", 199999: "<|endoftext|>", 200002: "<|return|>", 200003: "<|constrain|>",
  200005: "<|channel|>", 200006: "<|start|>", 200007: "<|end|>", 200008: "<|message|>",
  200012: "<|call|>", 200018: "<|endofprompt|>",
};
const special = {};
for (let id = 199998; id < 201088; id++) special[named[id] ?? `<|reserved_${id}|>`] = id;
const enc = new Tiktoken(o200k.bpe_ranks, special, o200k.pat_str);

if (mode === "bench") {
  const text = fs.readFileSync(file, "utf8");
  const bytes = Buffer.byteLength(text, "utf8");
  const repeats = Number(repeatsArg ?? 3);
  let best = Infinity, bestCpu = Infinity, ntok = 0;
  enc.encode_ordinary(text.slice(0, 10000));  // warm-up (WASM compile)
  for (let r = 0; r < repeats; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const ids = enc.encode_ordinary(text);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);  // user + system of the process (WASM runs on this thread)
    ntok = ids.length;
    best = Math.min(best, dt);
    bestCpu = Math.min(bestCpu, (c.user + c.system) / 1e6);
  }
  console.log(JSON.stringify({ name: "tiktoken 1.0.22 (npm, WASM)", bytes, tokens: ntok, seconds: best,
                               mb_s: bytes / 1e6 / best, cpu_seconds: bestCpu, mb_s_cpu: bytes / 1e6 / bestCpu,
                               repeats }));
} else if (mode === "ids") {
  const text = fs.readFileSync(file, "utf8");
  process.stdout.write(Array.from(enc.encode_ordinary(text)).join(",") + "\n");
} else if (mode === "jsonl") {
  const lines = fs.readFileSync(0, "utf8").split("\n");
  const out = [];
  for (const line of lines) {
    if (line === "") continue;
    const { text } = JSON.parse(line);
    out.push(JSON.stringify({ ids: Array.from(enc.encode_ordinary(text)),
                              ids_special: Array.from(enc.encode(text, "all")) }));
  }
  process.stdout.write(out.join("\n") + "\n");
} else {
  console.error("usage: tiktoken_ref.mjs MODULE_DIR (bench FILE [REPEATS] | ids FILE | jsonl)");
  process.exit(2);
}
