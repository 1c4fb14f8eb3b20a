#include "models/vim_config.h"

#include <cmath>

#include "csrc/io/errors.h"
#include "csrc/io/json_file.h"

namespace mamba_lrp {

namespace {

// The range of each key (validate() checks the same on a config built in code).
constexpr int64_t kMaxImgSize = 1 << 14, kMaxChannels = 64, kMaxEmbedDim = 1 << 16, kMaxDepth = 4096, kMaxState = 256,
                  kMaxConv = 64, kMaxExpand = 64, kMaxRank = 1 << 16, kMaxClasses = 1 << 24;

std::vector<double> get_triple(const nlohmann::json& j, const char* key, std::vector<double> fallback,
                               const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const auto& v = j[key];
  std::vector<double> out;
  if (v.is_array())
    for (const auto& x : v) {
      if (!x.is_number()) {
        out.clear();
        break;
      }
      out.push_back(x.get<double>());
    }
  if (out.empty()) throw io::InputError(origin + ": config key \"" + key + "\" must be a list of numbers, got " + v.dump());
  return out;
}

}  // namespace

VimConfig VimConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) throw io::InputError(origin + ": config.json must hold a JSON object");
  if (j.contains("model_type") && j["model_type"] != "vim")
    throw io::InputError(origin + ": model_type is " + j["model_type"].dump() + ", expected \"vim\"");
  VimConfig c;
  // Every key is range-checked as it is read, before arithmetic or an allocation uses it;
  // products of checked keys fit in 64 bits (expand * embed_dim <= 2^22).
  using io::config_int_in;
  c.img_size(config_int_in(j, "img_size", 224, 1, kMaxImgSize, origin));
  c.patch_size(config_int_in(j, "patch_size", 16, 1, c.img_size(), origin));
  c.stride(config_int_in(j, "stride", c.patch_size(), 1, kMaxImgSize, origin));
  const int64_t channels = config_int_in(j, "channels", 3, 1, kMaxChannels, origin);
  c.in_chans(config_int_in(j, "in_chans", channels, 1, kMaxChannels, origin));
  c.embed_dim(config_int_in(j, "embed_dim", 192, 1, kMaxEmbedDim, origin));
  c.depth(config_int_in(j, "depth", 24, 1, kMaxDepth, origin));
  c.d_state(config_int_in(j, "d_state", 16, 1, kMaxState, origin));
  const nlohmann::json ssm = j.contains("ssm_cfg") && j["ssm_cfg"].is_object() ? j["ssm_cfg"] : nlohmann::json::object();
  c.d_conv(config_int_in(j, "d_conv", config_int_in(ssm, "d_conv", 4, 1, kMaxConv, origin), 1, kMaxConv, origin));
  c.expand(config_int_in(j, "expand", config_int_in(ssm, "expand", 2, 1, kMaxExpand, origin), 1, kMaxExpand, origin));
  c.dt_rank((c.embed_dim() + 15) / 16);
  for (const nlohmann::json* src : {&ssm, &j})
    if (src->contains("dt_rank") && !(*src)["dt_rank"].is_null() &&
        !((*src)["dt_rank"].is_string() && (*src)["dt_rank"] == "auto"))
      c.dt_rank(config_int_in(*src, "dt_rank", c.dt_rank(), 1, kMaxRank, origin));
  c.num_classes(config_int_in(j, "num_classes", 1000, 0, kMaxClasses, origin));
  c.norm_epsilon(io::config_value<double>(j, "norm_epsilon", 1e-5, origin));
  c.rms_norm(io::config_value<bool>(j, "rms_norm", true, origin));
  c.residual_in_fp32(io::config_value<bool>(j, "residual_in_fp32", true, origin));
  c.final_pool_type(io::config_value<std::string>(j, "final_pool_type", "mean", origin));
  c.if_abs_pos_embed(io::config_value<bool>(j, "if_abs_pos_embed", true, origin));
  c.bimamba_type(io::config_value<std::string>(j, "bimamba_type", "v2", origin));
  c.if_cls_token(io::config_value<bool>(j, "if_cls_token", true, origin));
  c.use_middle_cls_token(io::config_value<bool>(j, "use_middle_cls_token", true, origin));
  if (j.contains("if_divide_out") && j.contains("if_devide_out") &&
      io::config_value<bool>(j, "if_divide_out", true, origin) != io::config_value<bool>(j, "if_devide_out", true, origin))
    throw io::InputError(origin + ": if_divide_out and if_devide_out disagree");
  c.if_divide_out(io::config_value<bool>(j, "if_divide_out", io::config_value<bool>(j, "if_devide_out", true, origin), origin));
  if (c.in_chans() != 3) {  // ImageNet's statistics averaged over the colours, one per channel
    c.mean(std::vector<double>(c.in_chans(), (0.485 + 0.456 + 0.406) / 3));
    c.std(std::vector<double>(c.in_chans(), (0.229 + 0.224 + 0.225) / 3));
  }
  c.mean(get_triple(j, "mean", c.mean(), origin));
  c.std(get_triple(j, "std", c.std(), origin));
  c.crop_pct(io::config_value<double>(j, "crop_pct", 0.875, origin));
  // Vim features this implementation does not have: refuse rather than compute something else.
  for (const char* key : {"if_rope", "if_rope_residual", "if_bidirectional", "use_double_cls_token", "if_bimamba"})
    if (io::config_value<bool>(j, key, false, origin))
      throw io::InputError(origin + ": " + key + " = true is not supported");
  if (j.contains("init_layer_scale") && !j["init_layer_scale"].is_null())
    throw io::InputError(origin + ": init_layer_scale is not supported");
  c.validate(origin);
  return c;
}

VimConfig VimConfig::from_file(const std::string& path) {
  return from_json(io::read_json_file(path, "a Vim model needs config.json"), path);
}

void VimConfig::validate(const std::string& origin) const {
  auto positive = [&](int64_t v, const char* key, int64_t limit) {
    if (v < 1 || v > limit)
      throw io::InputError(origin + ": config key \"" + key + "\" must be in [1, " + std::to_string(limit) + "], got " +
                       std::to_string(v));
  };
  positive(img_size(), "img_size", kMaxImgSize);
  positive(patch_size(), "patch_size", img_size());
  positive(stride(), "stride", kMaxImgSize);
  positive(in_chans(), "in_chans", kMaxChannels);
  positive(embed_dim(), "embed_dim", kMaxEmbedDim);
  positive(depth(), "depth", kMaxDepth);
  positive(d_state(), "d_state", kMaxState);
  positive(d_conv(), "d_conv", kMaxConv);
  positive(expand(), "expand", kMaxExpand);
  positive(dt_rank(), "dt_rank", kMaxRank);
  if (num_classes() < 0 || num_classes() > kMaxClasses)
    throw io::InputError(origin + ": config key \"num_classes\" must be in [0, 16777216], got " +
                     std::to_string(num_classes()));
  if (!(norm_epsilon() > 0) || !std::isfinite(norm_epsilon()))
    throw io::InputError(origin + ": config key \"norm_epsilon\" must be a positive number");
  if (bimamba_type() != "v2" && bimamba_type() != "none")
    throw io::InputError(origin + ": bimamba_type \"" + bimamba_type() + "\" is not supported (expected \"v2\" or \"none\")");
  if (final_pool_type() != "mean" && final_pool_type() != "none" && final_pool_type() != "max")
    throw io::InputError(origin + ": final_pool_type \"" + final_pool_type() +
                     "\" is not supported (expected \"mean\", \"none\" or \"max\")");
  if (static_cast<int64_t>(mean().size()) != in_chans() || static_cast<int64_t>(std().size()) != in_chans())
    throw io::InputError(origin + ": config keys \"mean\" and \"std\" need one value per channel (" +
                     std::to_string(in_chans()) + ")");
  for (double s : std())
    if (!(s > 0) || !std::isfinite(s)) throw io::InputError(origin + ": config key \"std\" must hold positive numbers");
  for (double m : mean())
    if (!std::isfinite(m)) throw io::InputError(origin + ": config key \"mean\" must hold finite numbers");
  if (!(crop_pct() > 0 && crop_pct() <= 1))
    throw io::InputError(origin + ": config key \"crop_pct\" must be in (0, 1]");
}

}  // namespace mamba_lrp
