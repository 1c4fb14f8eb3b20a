// The command line: build/mamba-lrp (DESIGN.md §5), commands explain, forward, evaluate, train and
// generate (cli::usage has their options). `mamba-lrp`, `mamba-lrp --help` and `mamba-lrp help`
// print the usage of every command, `mamba-lrp CMD --help` (or -h) and `mamba-lrp help CMD`
// that of one, on stdout with exit status 0.
// Exit status: 0 success, 2 bad input (one line on stderr), 1 internal error (or, under
// torchrun, a lost contact with another rank).
#include <c10/util/Exception.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "csrc/app/cli/cli.h"
#include "csrc/io/errors.h"
#include "csrc/app/blas_threads.h"
#include "csrc/app/process_memory.h"

namespace cli = mamba_lrp::cli;

namespace {

int run(int argc, char** argv) {
  try {
    const std::string command = argc > 1 ? argv[1] : "";
    if (argc < 2 || command == "--help" || command == "-h" || command == "help") {
      const std::string topic = command == "help" && argc > 2 ? argv[2] : "";
      const std::string text = cli::usage(topic);
      if (text.empty()) throw mamba_lrp::io::InputError("unknown command '" + topic + "'");
      std::cout << text;
      return 0;
    }
    if (cli::usage(command).empty()) throw mamba_lrp::io::InputError("unknown command '" + command + "'");
    if (cli::wants_help(argc, argv)) {
      std::cout << cli::usage(command);
      return 0;
    }
    // evaluate, train and generate parse their own options.
    if (command == "evaluate") return cli::run_evaluate(argc, argv);
    if (command == "train") return cli::run_train(argc, argv);
    if (command == "generate") return cli::run_generate(argc, argv);
    const cli::Args a = cli::parse_args(argc, argv);
    if (a.command == "explain") {
      if (a.model.empty()) throw mamba_lrp::io::InputError("explain needs --model DIR");
      return cli::read_model_type(a.model) == "vim" ? cli::run_explain_vim(a) : cli::run_explain_lm(a);
    }
    if (a.command == "forward") return cli::run_forward_lm(a);
    throw mamba_lrp::io::InputError("unknown command '" + a.command + "'");
  } catch (const mamba_lrp::io::InputError& e) {
    std::string msg = e.what();
    std::cerr << "mamba-lrp: " << msg.substr(0, msg.find('\n') == std::string::npos ? msg.size() : msg.find('\n'))
              << "\n";
    return 2;
  } catch (const mamba_lrp::distributed::CommunicationError& e) {
    std::cerr << "mamba-lrp: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "mamba-lrp: internal error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mamba-lrp: internal error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

// Runs before any library's static initialiser (an executable's DT_PREINIT_ARRAY; the
// libraries are loaded and relocated by then): the heap they fill gets huge pages, which cut
// the faults of starting mamba-lrp from 17 200 to 6 400 here.
namespace {
void before_library_initialisers(int, char**, char**) { mamba_lrp::advise_huge_pages_for_heap(); }
}  // namespace
__attribute__((section(".preinit_array"), used)) static void (*preinit_entry)(int, char**, char**) =
    &before_library_initialisers;

int main(int argc, char** argv) {
  mamba_lrp::retain_freed_memory();
  mamba_lrp::match_blas_threads_to_intra_op();
  const int status = run(argc, argv);
  // Every output file was written and closed inside run(); what is left is the teardown of
  // libtorch's static operator registry and of the heap, which an exiting process does not
  // need (the kernel frees its memory at once). Flush the streams and leave without it.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  std::_Exit(status);
}
