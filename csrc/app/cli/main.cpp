// The command line: build/mamba-lrp (DESIGN.md §5).
//   mamba-lrp explain --model DIR (--input FILE | --ids 1,2,3 | --text "..." | --image F.png) ...
//   mamba-lrp forward --model DIR (--input FILE | --ids ... | --text ...) --output OUT.safetensors
// Exit status: 0 success, 2 bad input (one line on stderr), 1 internal error.
#include <c10/util/Exception.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "csrc/app/cli/cli.h"
#include "csrc/io/errors.h"
#include "csrc/app/process_memory.h"

using mamba_lrp::io::InputError;
namespace cli = mamba_lrp::cli;

namespace {

int run(int argc, char** argv) {
  try {
    // evaluate and train parse their own options.
    const std::string command = argc > 1 ? argv[1] : "";
    if (command == "evaluate") return cli::run_evaluate(argc, argv);
    if (command == "train") return cli::run_train(argc, argv);
    cli::Args a = cli::parse_args(argc, argv);
    if (a.command == "explain") {
      if (a.model.empty()) throw mamba_lrp::io::InputError("explain needs --model DIR");
      return cli::read_model_type(a.model) == "vim" ? cli::run_explain_vim(a) : cli::run_explain_lm(a);
    }
    if (a.command == "forward") return cli::run_forward_lm(a);
    if (a.command == "--help" || a.command == "-h" || a.command == "help") {
      std::cout << cli::kUsage;
      return 0;
    }
    throw mamba_lrp::io::InputError("unknown command '" + a.command + "'\n" + std::string(cli::kUsage));
  } catch (const mamba_lrp::io::InputError& e) {
    std::string msg = e.what();
    std::cerr << "mamba-lrp: " << msg.substr(0, msg.find('\n') == std::string::npos ? msg.size() : msg.find('\n'))
              << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "mamba-lrp: internal error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mamba-lrp: internal error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  mamba_lrp::retain_freed_memory();
  const int status = run(argc, argv);
  // Every output file was written and closed inside run(); what is left is the teardown of
  // libtorch's static operator registry and of the heap, about 60 ms of a 0.85 s run here,
  // which an exiting process does not need. Flush the streams and leave without it.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  std::_Exit(status);
}
