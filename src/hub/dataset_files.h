// The data files of one split of a dataset: a local file or folder, or a Hugging Face hub dataset repo
// (from the cache, else downloaded), chosen the way the `datasets` library's load_dataset(name, subset,
// split=...) chooses them for a repo without a loading script:
//  1. The README.md's YAML header, when it has `configs:`: the config named `subset` (none given: the one
//     marked `default: true`, else the one named "default", else the only one), and its `data_files`
//     entry for the split (a pattern or list of patterns per split; a bare pattern or list is "train").
//  2. Otherwise the library's default patterns: files whose name has the split's keyword as a word
//     ("train"/"training"; "validation"/"valid"/"val"/"dev"; "test"/"testing"/"eval"/"evaluation"),
//     e.g. data/train-00000-of-00002.parquet or train.jsonl, else folders named so (train/part-0.parquet);
//     when no file names any split, every data file is "train".
// Data files are *.parquet, *.jsonl and *.json; files and folders starting with "." or "__" are not data.
// A hub download fetches README.md and the split's files only, into the cache layout
// <cache>/datasets--ORG--NAME/snapshots/<commit>/ (see hub.h for the cache, token and offline rules);
// a cached snapshot is used as it is when it holds the split's files and every shard of an
// "-NNNNN-of-MMMMM" series.
#pragma once

#include <string>
#include <vector>

#include "hub/hub.h"

namespace gptoss {

// The split's files, sorted (shards in order). `name_or_path`: an existing file (returned alone), an
// existing folder, or a hub id ORG/NAME. `split` is a split name ("train"; no slicing). InputError when
// nothing matches (naming the dataset, the split and the splits or configs there are), when the subset
// does not exist, or when the download fails / is off and the cache lacks the files.
std::vector<std::string> resolve_dataset_files(const std::string& name_or_path, const std::string& subset,
                                               const std::string& split, const HubOptions& opt = {});

// --- the pieces, for tests ------------------------------------------------------------------------

// The paths (relative, '/'-separated) among `files` that hold `split`, by rule 1 when `readme` (the
// README.md's text, "" if none) has configs, else rule 2. `what` names the dataset in messages.
std::vector<std::string> split_data_files(const std::vector<std::string>& files, const std::string& readme,
                                          const std::string& subset, const std::string& split,
                                          const std::string& what);

// fsspec-style glob: '*' and '?' within one path segment, "[...]" classes ("[-._ 0-9]", "[!x]"), "**"
// any number of segments ("**/" also none).
bool glob_match(const std::string& pattern, const std::string& path);

}  // namespace gptoss
