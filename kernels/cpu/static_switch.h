// Runtime flags made compile-time ones, so that a few template variants of a loop are
// picked once per call (STYLE.md §3; the role of mamba's static_switch.h, as a function
// rather than a macro). bool_switch(flag, fn) calls fn(std::true_type{}) or
// fn(std::false_type{}); in a generic lambda, decltype(arg)::value is then the flag as a
// constant expression. Nested calls pick among combinations of flags:
//   bool_switch(is_f64, [&](auto kF64) {
//     bool_switch(decay_only, [&](auto kDecayOnly) {
//       row<std::conditional_t<decltype(kF64)::value, double, float>, decltype(kDecayOnly)::value>(...);
//     });
//   });
#pragma once
#include <type_traits>
#include <utility>

namespace mamba_lrp {
namespace kernels {
namespace cpu {

template <typename Fn>
inline decltype(auto) bool_switch(bool flag, Fn&& fn) {
  if (flag) return std::forward<Fn>(fn)(std::true_type{});
  return std::forward<Fn>(fn)(std::false_type{});
}

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
