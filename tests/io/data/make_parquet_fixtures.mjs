// Writes the Parquet fixtures of tests/io/parquet_test.cpp with three independent writers, and for each
// file X.parquet (or each group of files holding the same rows) the rows our reader must return,
// X.expected.json, built from the source data here, not by reading the files back.
//
//   parquet-wasm     the Rust `parquet` crate (arrow-rs) behind Apache Arrow JS: every codec, dictionary
//                    on/off with fallback, data page v1/v2, small pages, several row groups, nested types
//   hyparquet-writer pure JS: data page v2, its own encoding choices (DELTA_*, BYTE_STREAM_SPLIT), DECIMAL
//   parquetjs        pure JS: legacy layouts (naked repeated fields; LIST/MAP annotations added to its
//                    footer for the 2-level list rules, re-serialised with hyparquet-writer's thrift writer)
//
// Then it checks each file: hyparquet and parquet-wasm read it back and must agree with the expected rows,
// and a page walker lists what was really written (codec, page types, encodings per column chunk) into
// fixtures_manifest.txt; the claims the tests rely on (fallback pages, several pages and row groups, the
// page version, the codec) are asserted.
//
// Run (Node 18+; not part of the build):
//   mkdir -p /tmp/pqgen && cd /tmp/pqgen && npm init -y >/dev/null &&
//   npm install parquet-wasm@0.8.0 apache-arrow@21.2.0 hyparquet-writer@0.17.0 hyparquet@1.33.0 \
//     hyparquet-compressors@1.1.2 parquetjs@0.11.2
//   cp <repo>/tests/io/data/make_parquet_fixtures.mjs . && node make_parquet_fixtures.mjs <repo>/tests/io/data
import fs from 'node:fs';
import path from 'node:path';

import * as arrow from 'apache-arrow';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { compressors } from 'hyparquet-compressors';
import { ByteWriter, parquetWriteBuffer } from 'hyparquet-writer';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import * as pq from 'parquet-wasm/node';
import parquetjs from 'parquetjs';

const outDir = process.argv[2];
if (!outDir) {
  console.error('usage: node make_parquet_fixtures.mjs <output directory>');
  process.exit(2);
}
const { Field, Struct, List, Map_, Utf8, Binary, FixedSizeBinary, Bool } = arrow;
const { Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Float32, Float64 } = arrow;

// ---------------------------------------------------------------------------------------------
// Helpers

function rng(seed) {  // mulberry32: deterministic fixtures
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// JSON with BigInt written as plain integers, one row a line.
function dump(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return '[' + v.map(dump).join(',') + ']';
  if (typeof v === 'object') return '{' + Object.entries(v).map(([k, x]) => JSON.stringify(k) + ':' + dump(x)).join(',') + '}';
  return JSON.stringify(v);
}
function writeExpected(name, rows) {
  fs.writeFileSync(path.join(outDir, name + '.expected.json'), '[\n' + rows.map(dump).join(',\n') + '\n]\n');
}

// A decimal's unscaled integer as text with `scale` digits after the point.
function decimalText(unscaled, scale) {
  const neg = unscaled < 0n;
  let s = (neg ? -unscaled : unscaled).toString();
  if (scale > 0) {
    s = s.padStart(scale + 1, '0');
    s = s.slice(0, -scale) + '.' + s.slice(-scale);
  }
  return (neg ? '-' : '') + s;
}

const utf8 = new TextDecoder();
// Does `actual` (what a JS reader returned) hold `expected` (what our reader must return)? Readers differ in
// representation only: BigInt vs number, bytes vs string, a map as an object, a DECIMAL as a number.
function agree(expected, actual, where) {
  const fail = (why) => { throw new Error(`${where}: ${why}: expected ${dump(expected)}, read ${dumpLoose(actual)}`); };
  if (expected === null || expected === undefined) {
    if (actual !== null && actual !== undefined) fail('not null');
    return;
  }
  if (actual instanceof Uint8Array) actual = utf8.decode(actual);
  if (typeof expected === 'bigint' || typeof expected === 'number') {
    if (typeof actual !== 'bigint' && typeof actual !== 'number') fail('not a number');
    if (typeof expected === 'bigint' ? BigInt(actual) !== expected : Number(actual) !== expected) fail('differs');
    return;
  }
  if (typeof expected === 'string') {
    if (typeof actual === 'string') { if (actual !== expected) fail('differs'); return; }
    if (typeof actual === 'number' || typeof actual === 'bigint') {  // a DECIMAL read as a number
      if (Math.abs(Number(actual) - Number(expected)) > 1e-9 * Math.max(1, Math.abs(Number(expected)))) fail('differs');
      return;
    }
    fail('not a string');
  }
  if (typeof expected === 'boolean') { if (actual !== expected) fail('differs'); return; }
  if (Array.isArray(expected)) {
    const isEntries = expected.every(e => e && typeof e === 'object' && !Array.isArray(e) && Object.keys(e).join() === 'key,value');
    if (!Array.isArray(actual) && isEntries && actual && typeof actual === 'object') {  // a map read as an object
      const entries = actual instanceof Map ? [...actual.entries()] : Object.entries(actual);
      if (entries.length !== expected.length) fail('entry count');
      expected.forEach((e, i) => { agree(String(e.key), String(entries[i][0]), `${where}[${i}].key`); agree(e.value, entries[i][1], `${where}[${i}].value`); });
      return;
    }
    if (!Array.isArray(actual)) fail('not an array');
    if (actual.length !== expected.length) fail('length');
    expected.forEach((e, i) => agree(e, actual[i], `${where}[${i}]`));
    return;
  }
  if (actual instanceof Map) actual = Object.fromEntries(actual);
  if (typeof actual !== 'object' || Array.isArray(actual)) fail('not an object');
  const keys = Object.keys(expected);
  for (const k of Object.keys(actual)) if (!keys.includes(k) && actual[k] !== null && actual[k] !== undefined) fail(`extra key ${k}`);
  for (const k of keys) agree(expected[k], actual[k], `${where}.${k}`);
}
function dumpLoose(v) {
  try { return dump(v instanceof Uint8Array ? utf8.decode(v) : v); } catch { return String(v); }
}

// Arrow rows as plain JS values (lists as arrays, structs and maps as objects, bytes as Uint8Array).
function plainArrow(v) {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object' || v instanceof Uint8Array) return v;
  if (v instanceof arrow.Vector || Array.isArray(v)) return [...v].map(plainArrow);
  if (v instanceof arrow.MapRow) return new Map([...v].map(([k, x]) => [k, plainArrow(x)]));
  const o = {};
  for (const [k, x] of Object.entries(v.toJSON())) o[k] = plainArrow(x);
  return o;
}
function readWithWasm(bytes) {
  const t = arrow.tableFromIPC(pq.readParquet(bytes).intoIPCStream());
  return t.toArray().map(r => plainArrow(r));
}
async function readWithHyparquet(bytes) {
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return parquetReadObjects({ file: ab, compressors });
}

// What the file really holds, from its page headers: per column chunk the codec and the page sequence.
function walkPages(bytes) {
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const md = parquetMetadata(ab);
  const view = new DataView(ab);
  const chunks = [];
  md.row_groups.forEach((rg, g) => {
    for (const c of rg.columns) {
      const m = c.meta_data;
      const dict = m.dictionary_page_offset !== undefined ? Number(m.dictionary_page_offset) : 0;
      let offset = dict > 0 && dict < Number(m.data_page_offset) ? dict : Number(m.data_page_offset);
      const pages = [];
      for (let seen = 0; seen < Number(m.num_values);) {
        const reader = { view, offset };
        const h = parquetHeader(reader);
        if (h.data_page_header) {
          seen += h.data_page_header.num_values;
          pages.push(`DATA_PAGE:${h.data_page_header.encoding}(levels ${h.data_page_header.definition_level_encoding})`);
        } else if (h.data_page_header_v2) {
          seen += h.data_page_header_v2.num_values;
          pages.push(`DATA_PAGE_V2:${h.data_page_header_v2.encoding}${h.data_page_header_v2.is_compressed === false ? '(values uncompressed)' : ''}`);
        } else if (h.dictionary_page_header) {
          pages.push(`DICTIONARY_PAGE:${h.dictionary_page_header.encoding}`);
        } else {
          pages.push(h.type);
        }
        offset = reader.offset + h.compressed_page_size;
      }
      chunks.push({ rowGroup: g, column: m.path_in_schema.join('.'), codec: m.codec, pages });
    }
  });
  return { md, chunks };
}

const manifest = [];
function describe(name, bytes, claims) {
  const { md, chunks } = walkPages(bytes);
  manifest.push(`${name}: ${bytes.length} bytes, ${md.num_rows} rows, ${md.row_groups.length} row groups, written by ${md.created_by}`);
  const byColumn = new Map();
  for (const c of chunks) {
    const e = byColumn.get(c.column) ?? { codecs: new Set(), pages: new Map() };
    e.codecs.add(c.codec);
    for (const p of c.pages) e.pages.set(p, (e.pages.get(p) ?? 0) + 1);
    byColumn.set(c.column, e);
  }
  for (const [col, e] of byColumn)
    manifest.push(`  ${col}: ${[...e.codecs].join('/')}; ${[...e.pages].map(([p, n]) => `${p} x${n}`).join(', ')}`);
  const check = (ok, what) => { if (!ok) throw new Error(`${name}: expected ${what}`); };
  if (claims.codec) check(chunks.every(c => c.codec === claims.codec), `every chunk ${claims.codec}`);
  if (claims.pageType) check(chunks.every(c => c.pages.every(p => p.startsWith('DICTIONARY_PAGE') || p.startsWith(claims.pageType + ':'))), `only ${claims.pageType} data pages`);
  if (claims.rowGroups) check(md.row_groups.length >= claims.rowGroups, `at least ${claims.rowGroups} row groups`);
  if (claims.pagesPerChunk) check(chunks.some(c => c.pages.filter(p => p.startsWith('DATA')).length >= claims.pagesPerChunk), `a chunk of ${claims.pagesPerChunk}+ data pages`);
  if (claims.dictionary === true) check(chunks.some(c => c.pages[0].startsWith('DICTIONARY_PAGE')), 'dictionary pages');
  if (claims.dictionary === false) check(chunks.every(c => !c.pages.some(p => p.startsWith('DICTIONARY_PAGE'))), 'no dictionary pages');
  const dictData = (p) => /^DATA_PAGE(_V2)?:(RLE|PLAIN)_DICTIONARY/.test(p);
  if (claims.fallback) check(chunks.some(c => c.pages[0].startsWith('DICTIONARY_PAGE') && c.pages.some(dictData) &&
    c.pages.some(p => p.startsWith('DATA') && !dictData(p))), 'a chunk whose dictionary falls back mid-chunk');
  for (const enc of claims.encodings ?? []) check(chunks.some(c => c.pages.some(p => p.includes(':' + enc))), `${enc} pages`);
}

// Writes the file, checks it with both readers (hyparquet only where asked: it does not implement the
// 2-level list rule for a repeated group of several fields) and describes it.
async function finish(name, bytes, expected, claims, { hyparquet = true } = {}) {
  fs.writeFileSync(path.join(outDir, name + '.parquet'), bytes);
  const wasmRows = readWithWasm(bytes);
  if (wasmRows.length !== expected.length) throw new Error(`${name}: row count`);
  expected.forEach((row, i) => agree(row, wasmRows[i], `${name} (parquet-wasm) row ${i}`));
  if (hyparquet) {
    const hyRows = await readWithHyparquet(bytes);
    if (hyRows.length !== expected.length) throw new Error(`${name}: row count`);
    expected.forEach((row, i) => agree(row, hyRows[i], `${name} (hyparquet) row ${i}`));
  }
  describe(name, bytes, claims);
}

// Arrow table with explicit field nullability.
function arrowTable(columns, n) {
  const fields = columns.map(c => new Field(c.name, c.type, c.nullable ?? true));
  const children = columns.map(c => {
    const v = arrow.vectorFromArray(c.values, c.type);
    if (v.data.length !== 1) throw new Error(`${c.name}: expected one chunk`);
    return v.data[0];
  });
  const data = arrow.makeData({ type: new Struct(fields), length: n, nullCount: 0, children });
  return new arrow.Table([new arrow.RecordBatch(new arrow.Schema(fields), data)]);
}

function wasmWrite(table, o) {
  let b = new pq.WriterPropertiesBuilder()
    .setCompression(pq.Compression[o.codec])
    .setDictionaryEnabled(o.dict)
    .setWriterVersion(o.v2 ? pq.WriterVersion.V2 : pq.WriterVersion.V1)
    .setStatisticsEnabled(pq.EnabledStatistics.None);
  if (o.rowGroup) b = b.setMaxRowGroupSize(o.rowGroup);
  if (o.pageBytes) b = b.setDataPageSizeLimit(o.pageBytes);
  if (o.batch) b = b.setWriteBatchSize(o.batch);
  if (o.dictPageBytes) b = b.setDictionaryPageSizeLimit(o.dictPageBytes);
  for (const [col, enc] of Object.entries(o.encodings ?? {})) b = b.setColumnEncoding(col, pq.Encoding[enc]);
  return pq.writeParquet(pq.Table.fromIPCStream(arrow.tableToIPC(table, 'stream')), b.build());
}

const copy = (v) => structuredClone(v);

// ---------------------------------------------------------------------------------------------
// The Multilingual-Thinking schema: five strings and messages: list<struct<content, role, thinking>>.

const LANGS = ['English', 'French', 'German', 'Spanish', 'Italian', 'Chinese', 'Russian', 'Arabic', 'Hindi', 'Japanese'];
const TEXTS = [
  'Ça va ? L’élève répond déjà.',
  'Grüße aus München – Straße',
  '¿Dónde está? Señor Muñoz.',
  '你好，世界！数学问题。',
  'Привет, мир! Два плюс два?',
  'مرحبا بالعالم، كيف حالك؟',
  'नमस्ते दुनिया',
  'こんにちは世界 🌸',
  'Emoji 🤖🚀 ∑∫√ ≠ ≈ 👩‍💻',
  'Quotes "double" \'single\' \\ tab\tnewline\nend',
];

function mtRows() {
  const rand = rng(42);
  const rows = [];
  for (let i = 0; i < 16; i++) {
    const lang = LANGS[i % LANGS.length];
    const developer = `reasoning language: ${lang}`;
    const user = `${TEXTS[(i * 7) % TEXTS.length]} (question ${i})`;
    const analysis = Array.from({ length: 1 + Math.floor(rand() * 2) }, () => TEXTS[Math.floor(rand() * TEXTS.length)]).join(' ') + ` [analysis ${i}]`;
    const final = `${TEXTS[(i * 3 + 1) % TEXTS.length]} — answer ${i}`;
    let messages = [
      { content: developer, role: 'system', thinking: null },
      { content: user, role: 'user', thinking: null },
      { content: final, role: 'assistant', thinking: analysis },
    ];
    const row = { reasoning_language: lang, developer, user, analysis, final, messages };
    if (i === 3 || i === 12) row.messages = [];
    if (i === 4 || i === 15) row.messages = null;
    if (i === 5) row.messages[1] = null;
    if (i === 6) row.messages[0].content = null;
    if (i === 7) { row.reasoning_language = null; row.final = null; }
    if (i === 8) row.messages = [{ content: null, role: null, thinking: null }];
    if (i === 9) row.messages.push({ content: 'And in German?', role: 'user', thinking: null }, { content: TEXTS[1], role: 'assistant', thinking: 'Auf Deutsch: ' + TEXTS[1] });
    if (i === 10) { row.developer = null; row.user = null; row.analysis = null; }
    rows.push(row);
  }
  return rows;
}

const STRING_FIELDS = ['reasoning_language', 'developer', 'user', 'analysis', 'final'];
const MESSAGE = new Struct([new Field('content', new Utf8(), true), new Field('role', new Utf8(), true), new Field('thinking', new Utf8(), true)]);

async function multilingual() {
  const rows = mtRows();
  writeExpected('mt', rows);
  const table = arrowTable([
    ...STRING_FIELDS.map(name => ({ name, type: new Utf8(), values: rows.map(r => r[name]) })),
    { name: 'messages', type: new List(new Field('element', MESSAGE, true)), values: rows.map(r => copy(r.messages)) },
  ], rows.length);
  // Each codec with dictionary on and off and with data page v1 and v2 (pairwise: 8 files); 6-row groups,
  // pages of a few values, a dictionary page limit that makes the long text columns fall back mid-chunk.
  const variants = [['SNAPPY', true, false], ['SNAPPY', false, true], ['GZIP', true, true], ['GZIP', false, false],
    ['ZSTD', true, false], ['ZSTD', false, true], ['UNCOMPRESSED', true, true], ['UNCOMPRESSED', false, false]];
  for (const [codec, dict, v2] of variants) {
    const name = `mt_${codec.toLowerCase()}_${dict ? 'dict' : 'plain'}_${v2 ? 'v2' : 'v1'}`;
    const bytes = wasmWrite(table, { codec, dict, v2, rowGroup: 6, pageBytes: 128, batch: 2, dictPageBytes: 192 });
    await finish(name, bytes, rows, {
      codec, pageType: v2 ? 'DATA_PAGE_V2' : 'DATA_PAGE', rowGroups: 3, pagesPerChunk: 3, dictionary: dict, fallback: dict,
      encodings: dict ? [] : [v2 ? 'DELTA_BYTE_ARRAY' : 'PLAIN'],
    });
  }
  // The same rows from a second writer (its defaults: SNAPPY, data page v2, dictionaries where they pay).
  const schema = [
    { name: 'schema', num_children: 6 },
    ...STRING_FIELDS.map(name => ({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' })),
    { name: 'messages', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', repetition_type: 'OPTIONAL', num_children: 3 },
    ...['content', 'role', 'thinking'].map(name => ({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' })),
  ];
  const hy = new Uint8Array(parquetWriteBuffer({
    schema, rowGroupSize: 6, pageSize: 256, statistics: false,
    columnData: [...STRING_FIELDS, 'messages'].map(name => ({ name, data: rows.map(r => copy(r[name])) })),
  }));
  await finish('mt_hyparquet', hy, rows, { codec: 'SNAPPY', pageType: 'DATA_PAGE_V2', rowGroups: 3, dictionary: true });
}

// ---------------------------------------------------------------------------------------------
// Flat columns of every physical type and integer annotation.

function typesRows() {
  const rand = rng(7);
  const I64 = [0n, 1n, -1n, 9007199254740993n, -9223372036854775808n, 9223372036854775807n, 123456789012345n];
  const U64 = [0n, 18446744073709551615n, 9223372036854775808n, 42n];
  const S = ['alpha', 'beta', 'gamma', 'δέλτα', '', 'a longer string value that repeats'];
  const rows = [];
  for (let i = 0; i < 50; i++) {
    const nul = (k) => (i + k) % 7 === 0;
    rows.push({
      i8: nul(1) ? null : ((i * 37) % 256) - 128,
      i16: nul(2) ? null : ((i * 1234) % 65536) - 32768,
      i32: nul(3) ? null : i % 5 === 0 ? [-2147483648, 2147483647][i % 2] : Math.floor(rand() * 2e6) - 1e6,
      i64: nul(4) ? null : i < 14 ? I64[i % I64.length] : BigInt(Math.floor(rand() * 1e15)) - 500000000000000n,
      u8: nul(5) ? null : (i * 13) % 256,
      u16: nul(6) ? null : (i * 997) % 65536,
      u32: nul(0) ? null : i % 4 === 0 ? [0, 4294967295, 2147483648, 7][(i / 4) % 4] : Math.floor(rand() * 4294967295),
      u64: nul(1) ? null : i < 8 ? U64[i % U64.length] : BigInt(Math.floor(rand() * 1e12)) * 1000003n,
      f32: nul(2) ? null : Math.fround((rand() - 0.5) * 1000),
      f64: nul(3) ? null : i === 10 ? 1e300 : i === 20 ? 5e-324 : i === 30 ? -0.5 : (rand() - 0.5) * 1e6,
      b: nul(4) ? null : rand() < 0.5,
      s: nul(5) ? null : i % 9 === 8 ? `unique ${i} ✓` : S[i % S.length],
      bin: nul(6) ? null : `bin${i}`,
      fsb: nul(0) ? null : `k${String(i).padStart(3, '0')}`,
      req_i32: i * 3 - 60,
      req_s: `row ${i}`,
    });
  }
  return rows;
}

async function types() {
  const rows = typesRows();
  writeExpected('types', rows);
  const enc = new TextEncoder();
  const col = (name, type, nullable = true, f = (v) => v) => ({ name, type, nullable, values: rows.map(r => r[name] === null ? null : f(r[name])) });
  const table = arrowTable([
    col('i8', new Int8()), col('i16', new Int16()), col('i32', new Int32()), col('i64', new Int64()),
    col('u8', new Uint8()), col('u16', new Uint16()), col('u32', new Uint32()), col('u64', new Uint64()),
    col('f32', new Float32()), col('f64', new Float64()), col('b', new Bool()), col('s', new Utf8()),
    col('bin', new Binary(), true, (v) => enc.encode(v)), col('fsb', new FixedSizeBinary(4), true, (v) => enc.encode(v)),
    col('req_i32', new Int32(), false), col('req_s', new Utf8(), false),
  ], rows.length);
  await finish('types_dict_v1_snappy', wasmWrite(table, { codec: 'SNAPPY', dict: true, v2: false, rowGroup: 20, pageBytes: 64, batch: 4, dictPageBytes: 64 }),
    rows, { codec: 'SNAPPY', pageType: 'DATA_PAGE', rowGroups: 3, pagesPerChunk: 3, dictionary: true, fallback: true, encodings: ['RLE_DICTIONARY', 'PLAIN'] });
  // Without dictionaries, version 2 falls back to the delta encodings (and RLE for booleans).
  await finish('types_plain_v2_zstd', wasmWrite(table, { codec: 'ZSTD', dict: false, v2: true, rowGroup: 20, pageBytes: 64, batch: 4 }),
    rows, { codec: 'ZSTD', pageType: 'DATA_PAGE_V2', rowGroups: 3, pagesPerChunk: 2, dictionary: false, encodings: ['DELTA_BINARY_PACKED', 'DELTA_BYTE_ARRAY', 'RLE'] });
  const encodings = { f32: 'BYTE_STREAM_SPLIT', f64: 'BYTE_STREAM_SPLIT', i32: 'BYTE_STREAM_SPLIT', i64: 'BYTE_STREAM_SPLIT', fsb: 'BYTE_STREAM_SPLIT',
    i8: 'DELTA_BINARY_PACKED', i16: 'DELTA_BINARY_PACKED', u8: 'DELTA_BINARY_PACKED', u16: 'DELTA_BINARY_PACKED', u32: 'DELTA_BINARY_PACKED',
    u64: 'DELTA_BINARY_PACKED', req_i32: 'DELTA_BINARY_PACKED', s: 'DELTA_LENGTH_BYTE_ARRAY', bin: 'DELTA_LENGTH_BYTE_ARRAY', req_s: 'DELTA_BYTE_ARRAY', b: 'RLE' };
  await finish('types_encodings_v1_gzip', wasmWrite(table, { codec: 'GZIP', dict: false, v2: false, rowGroup: 25, encodings }),
    rows, { codec: 'GZIP', pageType: 'DATA_PAGE', rowGroups: 2, dictionary: false,
      encodings: ['BYTE_STREAM_SPLIT', 'DELTA_BINARY_PACKED', 'DELTA_LENGTH_BYTE_ARRAY', 'DELTA_BYTE_ARRAY', 'RLE'] });
}

// ---------------------------------------------------------------------------------------------
// Nesting: nulls and empties at every level, maps, required lists and structs.

function nestedRows() {
  const LL = [null, [], [null], [[]], [[1, null, 3], [], null, [4]], [[5]], [[-7, 8], [9, 10, 11]], [[2147483647, -2147483648]]];
  const ST = [null, { a: null, b: null, c: null }, { a: 1, b: [], c: { d: null } }, { a: 2, b: ['x', null, 'yz'], c: { d: 1.5 } }, { a: -3, b: ['ü'], c: null }];
  const LS = [null, [], [null], [{ x: 1, y: null }], [{ x: null, y: [] }, { x: 3, y: [1, 2] }], [{ x: 4, y: [null] }]];
  const MS = [null, [], [['a', 1]], [['k1', null], ['k2', 2], ['ключ', 3]]];
  const MI = [null, [], [[1, 'one'], [-2, null]]];
  const RL = [[], [1], [1, 2, 3]];
  const rows = [];
  for (let i = 0; i < 30; i++) {
    rows.push({
      ll: copy(LL[i % LL.length]), st: copy(ST[i % ST.length]), ls: copy(LS[i % LS.length]),
      ms: copy(MS[i % MS.length]), mi: copy(MI[i % MI.length]), rl: copy(RL[i % RL.length]),
      rs: { p: `p${i}`, q: i % 3 ? BigInt(i) * 1000000000000n : null },
    });
  }
  return rows;
}

async function nested() {
  const rows = nestedRows();
  // A map with string keys is an object, one with integer keys an array of {key, value}.
  const expectedRows = rows.map(r => ({
    ...copy(r),
    ms: r.ms && Object.fromEntries(r.ms),
    mi: r.mi && r.mi.map(([key, value]) => ({ key, value })),
  }));
  writeExpected('nested', expectedRows);
  const entries = (k, v) => new Field('entries', new Struct([new Field('key', k, false), new Field('value', v, true)]), false);
  const table = arrowTable([
    { name: 'll', type: new List(new Field('element', new List(new Field('element', new Int32(), true)), true)), values: rows.map(r => r.ll) },
    { name: 'st', type: new Struct([new Field('a', new Int32(), true), new Field('b', new List(new Field('element', new Utf8(), true)), true),
      new Field('c', new Struct([new Field('d', new Float64(), true)]), true)]), values: rows.map(r => r.st) },
    { name: 'ls', type: new List(new Field('element', new Struct([new Field('x', new Int32(), true),
      new Field('y', new List(new Field('element', new Int32(), true)), true)]), true)), values: rows.map(r => r.ls) },
    { name: 'ms', type: new Map_(entries(new Utf8(), new Int32())), values: rows.map(r => r.ms && new Map(r.ms)) },
    { name: 'mi', type: new Map_(entries(new Int32(), new Utf8())), values: rows.map(r => r.mi && new Map(r.mi)) },
    { name: 'rl', type: new List(new Field('element', new Int32(), false)), nullable: false, values: rows.map(r => r.rl) },
    { name: 'rs', type: new Struct([new Field('p', new Utf8(), false), new Field('q', new Int64(), true)]), nullable: false, values: rows.map(r => r.rs) },
  ], rows.length);
  await finish('nested_dict_v1_snappy', wasmWrite(table, { codec: 'SNAPPY', dict: true, v2: false, rowGroup: 12, pageBytes: 32, batch: 2, dictPageBytes: 24 }),
    expectedRows, { codec: 'SNAPPY', pageType: 'DATA_PAGE', rowGroups: 3, pagesPerChunk: 3, dictionary: true, fallback: true });
  await finish('nested_plain_v2_gzip', wasmWrite(table, { codec: 'GZIP', dict: false, v2: true, rowGroup: 12, pageBytes: 32, batch: 2 }),
    expectedRows, { codec: 'GZIP', pageType: 'DATA_PAGE_V2', rowGroups: 3, dictionary: false });
}

// ---------------------------------------------------------------------------------------------
// hyparquet-writer's encodings: DELTA_BINARY_PACKED over several blocks with negative deltas and
// wrap-around, BYTE_STREAM_SPLIT, DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY, RLE booleans, DECIMAL of each
// physical type, a JSON column.

async function encodings() {
  const rand = rng(99);
  const n = 160;
  const rows = [];
  let walk = 0;
  for (let i = 0; i < n; i++) {
    walk += i % 40 === 39 ? -1000000000 : Math.floor(rand() * 2001) - 1000;
    walk = Math.max(-2147483648, Math.min(2147483647, walk));
    const big = [9223372036854775807n, -9223372036854775808n, 0n, -1n][i % 4];
    rows.push({
      dbp32: i === 100 ? 2147483647 : i === 101 ? -2147483648 : walk,
      dbp64: i % 11 === 0 ? null : i < 40 ? big : BigInt(walk) * 4294967296n + BigInt(i),
      bss_f: Math.fround(Math.sin(i) * 100),
      bss_d: i % 13 === 0 ? null : Math.cos(i) * 1e10,
      dlba: i % 17 === 0 ? null : `v${i}${'é'.repeat(i % 4)}`,
      dba: `${i < 100 ? 'train' : 'test'}/${String(Math.floor(i / 10)).padStart(3, '0')}/${i}`,
      rle_b: i % 19 === 0 ? null : Math.floor(i / 7) % 3 !== 0,
      dec_flba: i % 23 === 0 ? null : (BigInt(walk) * 10000000000n + BigInt(i)) * (i % 2 ? -1n : 1n),
      dec_i32: i % 29 === 0 ? null : BigInt(walk % 100000000),
      dec_i64: BigInt(walk) * 1000003n - BigInt(i),
      dec_ba: i % 31 === 0 ? null : i === 1 ? 0n : (12345678901234567890123456789n + BigInt(i)) * (i % 3 ? 1n : -1n),
      js: i % 37 === 0 ? null : { i, ok: i % 3 === 0, t: ['a', i % 2 ? 'odd' : 'even'] },
    });
  }
  const SCALES = { dec_flba: 4, dec_i32: 2, dec_i64: 6, dec_ba: 10 };
  const expectedRows = rows.map(r => {
    const e = { ...r };
    for (const [k, s] of Object.entries(SCALES)) e[k] = r[k] === null ? null : decimalText(r[k], s);
    e.js = r.js === null ? null : JSON.stringify(r.js);
    return e;
  });
  writeExpected('encodings_hyparquet', expectedRows);
  // hyparquet reads the JSON column as parsed JSON: compare against the text's parse there.
  const schema = [
    { name: 'schema', num_children: 12 },
    { name: 'dbp32', type: 'INT32', repetition_type: 'REQUIRED' },
    { name: 'dbp64', type: 'INT64', repetition_type: 'OPTIONAL' },
    { name: 'bss_f', type: 'FLOAT', repetition_type: 'REQUIRED' },
    { name: 'bss_d', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
    { name: 'dlba', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    { name: 'dba', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
    { name: 'rle_b', type: 'BOOLEAN', repetition_type: 'OPTIONAL' },
    { name: 'dec_flba', type: 'FIXED_LEN_BYTE_ARRAY', type_length: 9, converted_type: 'DECIMAL', scale: 4, precision: 20, repetition_type: 'OPTIONAL' },
    { name: 'dec_i32', type: 'INT32', converted_type: 'DECIMAL', scale: 2, precision: 9, repetition_type: 'OPTIONAL' },
    { name: 'dec_i64', type: 'INT64', converted_type: 'DECIMAL', scale: 6, precision: 18, repetition_type: 'REQUIRED' },
    { name: 'dec_ba', type: 'BYTE_ARRAY', converted_type: 'DECIMAL', scale: 10, precision: 38, repetition_type: 'OPTIONAL' },
    { name: 'js', type: 'BYTE_ARRAY', converted_type: 'JSON', repetition_type: 'OPTIONAL' },
  ];
  const ENC = { dbp32: 'DELTA_BINARY_PACKED', dbp64: 'DELTA_BINARY_PACKED', bss_f: 'BYTE_STREAM_SPLIT', bss_d: 'BYTE_STREAM_SPLIT',
    dlba: 'DELTA_LENGTH_BYTE_ARRAY', dba: 'DELTA_BYTE_ARRAY', rle_b: 'RLE', dec_flba: 'PLAIN', dec_i32: 'DELTA_BINARY_PACKED', dec_i64: 'PLAIN', dec_ba: 'PLAIN' };
  const bytes = new Uint8Array(parquetWriteBuffer({
    schema, rowGroupSize: [130, 30], pageSize: 1024, statistics: false,
    columnData: schema.slice(1).map(({ name }) => ({ name, data: rows.map(r => r[name]), encoding: ENC[name] })),
  }));
  fs.writeFileSync(path.join(outDir, 'encodings_hyparquet.parquet'), bytes);
  const hyRows = await readWithHyparquet(bytes);
  const wasmRows = readWithWasm(bytes);
  expectedRows.forEach((row, i) => {
    agree({ ...row, js: row.js && JSON.parse(row.js), dec_flba: null, dec_ba: null }, { ...hyRows[i], dec_flba: null, dec_ba: null }, `encodings (hyparquet) row ${i}`);
    // Wide decimals lose digits as JS numbers: compare them exactly through their unscaled integers.
    for (const k of ['dec_flba', 'dec_ba']) {
      const got = hyRows[i][k];
      if ((row[k] === null) !== (got === null || got === undefined)) throw new Error(`encodings row ${i} ${k}: null mismatch`);
    }
    agree({ ...row, js: row.js, dec_flba: null, dec_ba: null, dec_i32: null, dec_i64: null },
      { ...wasmRows[i], dec_flba: null, dec_ba: null, dec_i32: null, dec_i64: null }, `encodings (parquet-wasm) row ${i}`);
  });
  describe('encodings_hyparquet', bytes, { codec: 'SNAPPY', pageType: 'DATA_PAGE_V2', rowGroups: 2, pagesPerChunk: 2,
    encodings: ['DELTA_BINARY_PACKED', 'BYTE_STREAM_SPLIT', 'DELTA_LENGTH_BYTE_ARRAY', 'DELTA_BYTE_ARRAY', 'RLE'] });
}

// ---------------------------------------------------------------------------------------------
// Legacy layouts from parquetjs: naked repeated fields, and (after adding annotations to its footer)
// the 2-level LIST forms of LogicalTypes.md's backward-compatibility rules and a MAP_KEY_VALUE map.

function legacyRows() {
  const rows = [];
  for (let i = 0; i < 12; i++) {
    const k = i % 4;
    rows.push({
      id: i,
      tags: [null, [], ['a'], ['x', 'y', 'zé']][k],                                  // LIST, rule 1: repeated primitive
      group_tags: [null, { array: [] }, { array: ['g'] }, { array: ['h', 'i'] }][(k + 1) % 4],  // no annotation: a group
      nums: [[], [1, 2, 3], [-5], []][k],                                              // naked repeated primitive
      pts: [[], [{ x: 1, y: 2.5 }, { x: 3, y: null }], [{ x: -1, y: null }], []][k],   // naked repeated group
      pairs: [[], null, [{ k: 'a', v: 1 }], [{ k: 'b', v: null }, { k: 'c', v: 3 }]][k], // LIST, rule 2: group of 2 fields
      tuples: [[{ v: 1 }, { v: 2 }], [], null, [{ v: 7 }]][k],                         // LIST, rule 3: <name>_tuple
      arrays: [null, [{ v: 's' }, { v: null }], [], [{ v: 't' }]][k],                  // LIST, rule 3: "array"
      three: [[1, null, 3], null, [], [4]][k],                                          // LIST, 3-level
      dict: [null, {}, { a: 1, b: null }, { 'ключ': 2 }][k],                            // MAP / MAP_KEY_VALUE
      note: k === 1 ? null : `note ${i}`,
    });
  }
  return rows;
}

async function legacy() {
  const rows = legacyRows();
  writeExpected('legacy_parquetjs', rows);
  const schema = new parquetjs.ParquetSchema({
    id: { type: 'INT32' },
    tags: { optional: true, fields: { array: { type: 'UTF8', repeated: true } } },
    group_tags: { optional: true, fields: { array: { type: 'UTF8', repeated: true } } },
    nums: { type: 'INT32', repeated: true },
    pts: { repeated: true, fields: { x: { type: 'INT32' }, y: { type: 'DOUBLE', optional: true } } },
    pairs: { optional: true, fields: { pair: { repeated: true, fields: { k: { type: 'UTF8' }, v: { type: 'INT64', optional: true } } } } },
    tuples: { optional: true, fields: { tuples_tuple: { repeated: true, fields: { v: { type: 'INT32' } } } } },
    arrays: { optional: true, fields: { array: { repeated: true, fields: { v: { type: 'UTF8', optional: true } } } } },
    three: { optional: true, fields: { list: { repeated: true, fields: { element: { type: 'INT32', optional: true } } } } },
    dict: { optional: true, fields: { key_value: { repeated: true, fields: { key: { type: 'UTF8' }, value: { type: 'INT32', optional: true } } } } },
    note: { type: 'UTF8', optional: true, compression: 'SNAPPY' },
  });
  const wrap = (r) => ({
    id: r.id,
    tags: r.tags && { array: r.tags },
    group_tags: r.group_tags,
    nums: r.nums,
    pts: r.pts.map(p => (p.y === null ? { x: p.x } : p)),
    pairs: r.pairs && { pair: r.pairs.map(p => (p.v === null ? { k: p.k } : p)) },
    tuples: r.tuples && { tuples_tuple: r.tuples },
    arrays: r.arrays && { array: r.arrays.map(a => (a.v === null ? {} : a)) },
    three: r.three && { list: r.three.map(element => (element === null ? {} : { element })) },
    dict: r.dict && { key_value: Object.entries(r.dict).map(([key, value]) => (value === null ? { key } : { key, value })) },
    note: r.note,
  });
  for (const v2 of [false, true]) {
    const name = `legacy_parquetjs_${v2 ? 'v2' : 'v1'}`;
    const file = path.join(outDir, name + '.parquet');
    const w = await parquetjs.ParquetWriter.openFile(schema, file, { useDataPageV2: v2, rowGroupSize: 5 });
    for (const r of rows) await w.appendRow(wrap(r));
    await w.close();
    const bytes = annotate(new Uint8Array(fs.readFileSync(file)));
    await finish(name, bytes, rows, { pageType: v2 ? 'DATA_PAGE_V2' : 'DATA_PAGE', rowGroups: 3, dictionary: false }, { hyparquet: false });
  }
}

// Adds LIST / MAP / MAP_KEY_VALUE annotations to parquetjs's schema (its pages are unchanged).
function annotate(bytes) {
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const md = parquetMetadata(ab);
  delete md.key_value_metadata;  // empty: the thrift writer would type its element as byte, which arrow-rs rejects
  for (const e of md.schema) {
    if (['tags', 'pairs', 'tuples', 'arrays', 'three'].includes(e.name)) e.converted_type = 'LIST';
    if (e.name === 'dict') e.converted_type = 'MAP';
    if (e.name === 'key_value') e.converted_type = 'MAP_KEY_VALUE';
  }
  const w = new ByteWriter();
  writeMetadata(w, md);
  const footer = new Uint8Array(w.getBuffer());
  const footerLength = new DataView(ab).getUint32(bytes.length - 8, true);
  const body = bytes.subarray(0, bytes.length - 8 - footerLength);
  const out = new Uint8Array(body.length + footer.length + 8);
  out.set(body, 0);
  out.set(footer, body.length);
  new DataView(out.buffer).setUint32(body.length + footer.length, footer.length, true);
  out.set(new TextEncoder().encode('PAR1'), out.length - 4);
  return out;
}

// ---------------------------------------------------------------------------------------------

fs.mkdirSync(outDir, { recursive: true });
try {
  await multilingual();
  await types();
  await nested();
  await encodings();
  await legacy();
} catch (e) {
  console.log(manifest.join('\n'));
  console.error(e.stack);
  process.exit(1);
}
fs.writeFileSync(path.join(outDir, 'fixtures_manifest.txt'),
  '# Written by make_parquet_fixtures.mjs: what each fixture holds, from its page headers.\n' + manifest.join('\n') + '\n');
console.log(manifest.join('\n'));
