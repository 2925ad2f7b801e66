#!/usr/bin/env python3
"""Parquet fixtures written by pyarrow (and by Hugging Face `datasets`, which writes the hub's files), for
tests/io/parquet_test.cpp: each NAME.parquet comes with NAME.expected.json, its rows as pyarrow reads them
(Table.to_pylist, with a map of string keys as an object, as src/io/parquet.h gives it; binary values
are ASCII here so they compare as text).

Run where pyarrow is installed (the GPU box has it; this machine has no Python packages):
    python3 tests/io/data/pyarrow/make_pyarrow_fixtures.py OUT_DIR
then copy OUT_DIR/* into tests/io/data/pyarrow/. The files here came from pyarrow 25.0.1 on the GPU box
(2026-12-01), which has no `datasets`, so thinking_hf_datasets is not among them.
"""
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

# Rows in the schema of HuggingFaceH4/Multilingual-Thinking (the gpt-oss SFT recipe's dataset).
THINKING = [
    {
        "reasoning_language": "French",
        "developer": "You are a helpful assistant.",
        "user": "What is 2+2?",
        "analysis": "L'utilisateur demande une addition simple : 2+2=4.",
        "final": "2+2 = 4.",
        "messages": [
            {"content": "reasoning language: French\n\nYou are a helpful assistant.", "role": "system", "thinking": None},
            {"content": "What is 2+2?", "role": "user", "thinking": None},
            {"content": "2+2 = 4.", "role": "assistant", "thinking": "L'utilisateur demande une addition simple : 2+2=4."},
        ],
    },
    {
        "reasoning_language": "German",
        "developer": "Antworte knapp.",
        "user": "Größte Stadt Europas?",
        "analysis": "Die Frage: größte Stadt – Istanbul oder Moskau. Ich wähle Istanbul.",
        "final": "Istanbul ist die größte Stadt Europas. 🌍",
        "messages": [
            {"content": "reasoning language: German\n\nAntworte knapp.", "role": "system", "thinking": None},
            {"content": "Größte Stadt Europas?", "role": "user", "thinking": None},
            {"content": "Istanbul ist die größte Stadt Europas. 🌍", "role": "assistant",
             "thinking": "Die Frage: größte Stadt – Istanbul oder Moskau. Ich wähle Istanbul."},
        ],
    },
]
# More rows (repeated text compresses and dictionary-encodes the way real data does).
for i in range(2, 40):
    lang = ["Spanish", "Italian", "French", "German"][i % 4]
    THINKING.append({
        "reasoning_language": lang,
        "developer": "You are a concise assistant.",
        "user": f"Question {i}: what is {i} squared?",
        "analysis": f"{i} * {i} = {i * i}." * (1 + i % 3),
        "final": f"{i * i}",
        "messages": [
            {"content": f"reasoning language: {lang}\n\nYou are a concise assistant.", "role": "system", "thinking": None},
            {"content": f"Question {i}: what is {i} squared?", "role": "user", "thinking": None},
            {"content": f"{i * i}", "role": "assistant", "thinking": f"{i} * {i} = {i * i}." * (1 + i % 3)},
        ],
    })


def expected(table):
    def fix(v):
        if isinstance(v, bytes):
            return v.decode("ascii")
        if isinstance(v, list):
            if v and all(isinstance(x, tuple) for x in v):  # a map: its (key, value) entries
                if all(isinstance(x[0], str) for x in v):
                    return {x[0]: fix(x[1]) for x in v}
                return [{"key": fix(x[0]), "value": fix(x[1])} for x in v]
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v
    return [fix(r) for r in table.to_pylist()]


def write(name, table, **kw):
    path = os.path.join(out, name + ".parquet")
    try:
        pq.write_table(table, path, **kw)
    except Exception as e:  # an option this pyarrow lacks: say so, write the others
        print(name, "NOT WRITTEN:", e)
        return
    back = pq.read_table(path)
    assert back.equals(table), name
    with open(os.path.join(out, name + ".expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected(back), f, ensure_ascii=False, indent=0)
    meta = pq.ParquetFile(path).metadata
    cols = meta.row_group(0)
    print(name, meta.num_rows, "rows,", meta.num_row_groups, "row groups,",
          sorted({cols.column(c).compression for c in range(cols.num_columns)}),
          sorted({e for c in range(cols.num_columns) for e in cols.column(c).encodings}))


thinking = pa.Table.from_pylist(THINKING)

# 1. What the hub serves: `datasets` writes the dataset's Arrow table to Parquet.
try:
    import datasets
    path = os.path.join(out, "thinking_hf_datasets.parquet")
    datasets.Dataset.from_list(THINKING).to_parquet(path)
    back = pq.read_table(path)
    with open(os.path.join(out, "thinking_hf_datasets.expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected(back), f, ensure_ascii=False, indent=0)
    print("thinking_hf_datasets written by datasets", datasets.__version__)
except ImportError:
    print("no datasets library: thinking_hf_datasets skipped")

# 2. pyarrow's defaults (snappy, dictionary, data page v1).
write("thinking_pyarrow_default", thinking)
# 3. zstd, data page v2, no dictionary, small pages and row groups (several of each).
write("thinking_zstd_v2_pages", thinking, compression="zstd", data_page_version="2.0", use_dictionary=False,
      data_page_size=512, row_group_size=7)
# 4. gzip, dictionary with small pages (dictionary fallback to plain when the dictionary page fills).
write("thinking_gzip_dict_fallback", thinking, compression="gzip", dictionary_pagesize_limit=256,
      data_page_size=300, row_group_size=16)

# 5. Other types and encodings.
n = 50
types = pa.table({
    "i8": pa.array([(i * 37) % 256 - 128 for i in range(n)], pa.int8()),
    "i32": pa.array([None if i % 7 == 0 else (i - 25) * 1000003 for i in range(n)], pa.int32()),
    "i64": pa.array([(i - 25) * 123456789012 for i in range(n)], pa.int64()),
    "u32": pa.array([i * 4000000 for i in range(n)], pa.uint32()),
    "f32": pa.array([i * 0.25 - 3 for i in range(n)], pa.float32()),
    "f64": pa.array([None if i % 5 == 0 else i / 3 for i in range(n)], pa.float64()),
    "flag": pa.array([None if i % 11 == 0 else i % 3 == 0 for i in range(n)], pa.bool_()),
    "text": pa.array([f"row {i} " + "é" * (i % 4) for i in range(n)], pa.string()),
    "blob": pa.array([bytes([65 + i % 26, 48 + i % 10, 90]) * (i % 3) for i in range(n)], pa.binary()),
    "nested": pa.array([None if i % 9 == 0 else [[j for j in range(k)] for k in range(i % 4)] for i in range(n)],
                       pa.list_(pa.list_(pa.int32()))),
    "point": pa.array([None if i % 6 == 0 else {"x": i, "tags": ["a"] * (i % 3)} for i in range(n)],
                      pa.struct([("x", pa.int64()), ("tags", pa.list_(pa.string()))])),
    "attrs": pa.array([[("k" + str(j), j) for j in range(1 + i % 3)] for i in range(n)], pa.map_(pa.string(), pa.int32())),
})
write("types_default", types)
write("types_delta_bss_v2", types, compression="snappy", data_page_version="2.0", use_dictionary=False,
      column_encoding={"i32": "DELTA_BINARY_PACKED", "i64": "DELTA_BINARY_PACKED", "f32": "BYTE_STREAM_SPLIT",
                       "f64": "BYTE_STREAM_SPLIT", "text": "DELTA_BYTE_ARRAY", "blob": "DELTA_LENGTH_BYTE_ARRAY"},
      data_page_size=128, row_group_size=20)
write("types_uncompressed", types, compression="none")
