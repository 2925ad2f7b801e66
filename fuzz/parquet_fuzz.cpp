// libFuzzer target: the Parquet reader on arbitrary bytes (the files `gptoss train` downloads from the hub
// are untrusted input).
//
// Each input is written to a file (the reader maps files) and read whole: the footer, then every row group
// with every column. Invariant: nothing but gptoss::InputError escapes (anything else terminates, which
// libFuzzer reports); ASan/UBSan catch out-of-bounds reads and undefined behaviour. Seeds: the test
// fixtures in tests/io/data (scripts/fuzz.sh parquet).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "io/parquet.h"

namespace {

const std::string& input_path() {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("gptoss_parquet_fuzz_" + std::to_string(::getpid()) + ".parquet"))
          .string();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = input_path();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  try {
    gptoss::io::ParquetReader reader(path);
    for (int g = 0; g < reader.num_row_groups(); ++g) reader.read_row_group(g);
  } catch (const gptoss::InputError&) {
  }
  return 0;
}
