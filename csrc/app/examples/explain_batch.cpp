// Explaining a batch with the C++ API: the program C++ users start from.
//
//   build/explain_batch MODEL_DIR [IDS ...]      e.g. build/explain_batch build/demo_model 5,17,9 3,4,8
//
// Loads a Hugging Face Mamba directory, explains each row's predicted next token with
// MambaLRP (and with Gradient x Input for contrast) and prints the relevance per token.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "csrc/io/errors.h"
#include "csrc/app/explain/explain.h"
#include "models/mamba.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [comma-separated ids per row ...]\n", argv[0]);
    return 2;
  }
  try {
    mamba_lrp::MambaForCausalLM model = mamba_lrp::load_mamba_lm(argv[1], at::kDouble);

    // Rows of equal length (left-pad with an attention mask for unequal ones).
    std::vector<std::vector<int64_t>> rows;
    for (int i = 2; i < argc; ++i) {
      std::vector<int64_t> row;
      std::stringstream ss(argv[i]);
      for (std::string s; std::getline(ss, s, ',');) row.push_back(std::stoll(s));
      rows.push_back(row);
    }
    if (rows.empty()) rows = {{1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1}};
    const int64_t L = static_cast<int64_t>(rows[0].size());
    at::Tensor ids = torch::empty({static_cast<int64_t>(rows.size()), L}, at::kLong);  // (B, L)
    for (size_t b = 0; b < rows.size(); ++b) {
      if (static_cast<int64_t>(rows[b].size()) != L) throw mamba_lrp::io::InputError("rows must have one length");
      for (int64_t t = 0; t < L; ++t) ids[b][t] = rows[b][t];
    }

    for (const char* method : {"mambalrp", "gi"}) {
      mamba_lrp::ExplainOptions options;
      options.method = method;
      options.zero_bias = true;  // so that sum R = f is checkable
      const mamba_lrp::Explanation e = mamba_lrp::explain(model, ids, /*attention_mask=*/{}, options);
      std::printf("== %s ==\n", method);
      bool conserved = true;
      for (int64_t b = 0; b < ids.size(0); ++b) {
        const double f = e.logits[b].item<double>(), sum = e.relevance[b].sum().item<double>();
        conserved = conserved && std::abs(sum - f) <= 1e-8 * std::max(1.0, std::abs(f));
        std::printf("row %ld: target %ld, f = %.6f, sum R = %.6f\n   R:", (long)b, (long)e.targets[b].item<int64_t>(),
                    e.logits[b].item<double>(), e.relevance[b].sum().item<double>());
        for (int64_t t = 0; t < L; ++t) std::printf(" %+.4f", e.relevance[b][t].item<double>());
        std::printf("\n");
      }
      std::printf("sum R = f on every row (conservation): %s\n", conserved ? "yes" : "no");
    }
  } catch (const mamba_lrp::io::InputError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
