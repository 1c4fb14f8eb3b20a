// mamba-lrp train.
#include "csrc/cli/cli.h"
#include "csrc/errors.h"

namespace mamba_lrp {
namespace cli {

int run_train(int argc, char** argv) { throw InputError("command 'train' is not available yet"); }

}  // namespace cli
}  // namespace mamba_lrp
