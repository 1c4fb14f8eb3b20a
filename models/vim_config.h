// Configuration of a Vision Mamba model: hustvl/Vim's VisionMamba constructor keys
// (DESIGN.md §4), one TORCH_ARG per key, with the constructor's defaults for missing keys;
// plus the image preprocessing (mean, std, crop_pct) that timm keeps beside the model.
#pragma once
#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mamba_lrp {

struct VimConfig {
  // `origin` names the file in error messages (io::InputError).
  static VimConfig from_json(const nlohmann::json& j, const std::string& origin);
  static VimConfig from_file(const std::string& path);
  void validate(const std::string& origin) const;

  TORCH_ARG(int64_t, img_size) = 224;
  TORCH_ARG(int64_t, patch_size) = 16;
  TORCH_ARG(int64_t, stride) = 16;  // the patch embedding's stride; Vim's models use patch_size
  TORCH_ARG(int64_t, in_chans) = 3;  // also "channels"
  TORCH_ARG(int64_t, embed_dim) = 192;
  TORCH_ARG(int64_t, depth) = 24;
  TORCH_ARG(int64_t, d_state) = 16;
  TORCH_ARG(int64_t, d_conv) = 4;    // also ssm_cfg.d_conv
  TORCH_ARG(int64_t, expand) = 2;    // also ssm_cfg.expand
  TORCH_ARG(int64_t, dt_rank) = 12;  // "auto": ceil(embed_dim / 16)
  TORCH_ARG(int64_t, num_classes) = 1000;
  TORCH_ARG(double, norm_epsilon) = 1e-5;
  TORCH_ARG(bool, rms_norm) = true;  // false: LayerNorm (weight and bias)
  TORCH_ARG(bool, residual_in_fp32) = true;
  // With a cls token the head always reads the cls token (as Vim does, whatever this says);
  // without one: "mean" over the tokens, "none" the last token, "max" the head on every
  // token and the max over tokens.
  TORCH_ARG(std::string, final_pool_type) = "mean";
  TORCH_ARG(bool, if_abs_pos_embed) = true;
  TORCH_ARG(std::string, bimamba_type) = "v2";  // "v2", or "none" (one direction)
  TORCH_ARG(bool, if_cls_token) = true;
  TORCH_ARG(bool, use_middle_cls_token) = true;
  TORCH_ARG(bool, if_divide_out) = true;  // also "if_devide_out" (Vim's spelling)
  // Preprocessing of --image: shorter side resized to img_size / crop_pct, centre crop,
  // normalised per channel. ImageNet's statistics by default (timm's, used by Vim).
  TORCH_ARG(std::vector<double>, mean) = std::vector<double>({0.485, 0.456, 0.406});
  TORCH_ARG(std::vector<double>, std) = std::vector<double>({0.229, 0.224, 0.225});
  TORCH_ARG(double, crop_pct) = 0.875;

 public:  // (TORCH_ARG leaves the section private)
  int64_t d_inner() const { return expand() * embed_dim(); }
  int64_t grid() const { return (img_size() - patch_size()) / stride() + 1; }  // rows = cols
  int64_t num_patches() const { return grid() * grid(); }
  int64_t num_tokens() const { return num_patches() + (if_cls_token() ? 1 : 0); }
  // Index of the cls token in the sequence the first block sees; -1 without one.
  int64_t cls_position() const {
    return if_cls_token() ? (use_middle_cls_token() ? num_patches() / 2 : 0) : -1;
  }
  bool bidirectional() const { return bimamba_type() == "v2"; }
};

}  // namespace mamba_lrp
