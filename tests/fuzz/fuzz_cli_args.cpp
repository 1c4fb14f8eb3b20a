// Command-line parsing: the input split at NUL bytes into argv (after the program name),
// then every value through the number and id-list parsers the commands use.
#include <vector>

#include "csrc/app/cli/cli.h"
#include "tests/fuzz/fuzz_target.h"

FUZZ_TARGET(cli_args) {
  std::vector<std::string> words{"mamba-lrp"};
  std::string current;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      words.push_back(current);
      current.clear();
    } else {
      current.push_back(static_cast<char>(data[i]));
    }
  }
  words.push_back(current);
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  namespace cli = mamba_lrp::cli;
  mamba_lrp_fuzz::expect_input_error_only([&] { cli::wants_help(static_cast<int>(words.size()), argv.data()); });
  mamba_lrp_fuzz::expect_input_error_only([&] { cli::parse_args(static_cast<int>(words.size()), argv.data()); });
  for (const auto& w : words) {
    mamba_lrp_fuzz::expect_input_error_only([&] { cli::parse_int(w, "--value"); });
    mamba_lrp_fuzz::expect_input_error_only([&] { cli::parse_double(w, "--value"); });
    mamba_lrp_fuzz::expect_input_error_only([&] { cli::parse_id_list(w); });
  }
  return 0;
}
