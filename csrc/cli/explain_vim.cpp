// mamba-lrp explain for Vision Mamba models.
#include "csrc/cli/cli.h"
#include "csrc/errors.h"

namespace mamba_lrp {
namespace cli {

int run_explain_vim(const Args& a) { throw InputError(a.model + ": Vision Mamba models are not available yet"); }

}  // namespace cli
}  // namespace mamba_lrp
