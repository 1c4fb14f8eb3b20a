#include "csrc/app/explain/targets.h"

#include <string>

#include "csrc/io/errors.h"

namespace mamba_lrp {

void check_targets(const std::vector<int64_t>& given, int64_t batch, int64_t outputs) {
  if (!given.empty() && given.size() != 1 && static_cast<int64_t>(given.size()) != batch)
    throw io::InputError("give one target, or one per row (" + std::to_string(batch) + ")");
  for (int64_t t : given)
    if (t < 0 || t >= outputs)
      throw io::InputError("target " + std::to_string(t) + " is out of range [0, " + std::to_string(outputs) + ")");
}

at::Tensor pick_targets(const at::Tensor& logits, const std::vector<int64_t>& given) {
  const int64_t batch = logits.size(0);
  check_targets(given, batch, logits.size(-1));
  if (given.empty()) return logits.detach().argmax(-1);  // (B)
  std::vector<int64_t> t = given;
  if (t.size() == 1) t.assign(batch, t[0]);
  return at::tensor(t, at::kLong).to(logits.device());
}

}  // namespace mamba_lrp
