// mamba-lrp evaluate.
#include "csrc/cli/cli.h"
#include "csrc/errors.h"

namespace mamba_lrp {
namespace cli {

int run_evaluate(int argc, char** argv) { throw InputError("command 'evaluate' is not available yet"); }

}  // namespace cli
}  // namespace mamba_lrp
