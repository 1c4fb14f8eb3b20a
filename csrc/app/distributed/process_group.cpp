// torchrun's environment and the c10d process group of the command line (process_group.h).
#include "csrc/app/distributed/process_group.h"

#include <algorithm>
#include <cstdlib>

#include "csrc/io/errors.h"

#ifdef MAMBA_LRP_WITH_GLOO
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace mamba_lrp {
namespace distributed {
namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, int lo, int hi) {
  const auto v = env(name);
  if (!v || v->empty()) throw io::InputError(std::string(name) + " is not set (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)");
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(*v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v->size() || x < lo || x > hi)
    throw io::InputError(std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                         "], got '" + *v + "'");
  return static_cast<int>(x);
}

}  // namespace

std::optional<World> world_from_environment() {
  if (!env("RANK") && !env("WORLD_SIZE")) return std::nullopt;
  World w;
  w.size = env_int("WORLD_SIZE", 1, 1 << 20);
  w.rank = env_int("RANK", 0, w.size - 1);
  w.local_rank = env("LOCAL_RANK") ? env_int("LOCAL_RANK", 0, 1 << 20) : 0;
  if (w.size > 1) {
    const auto addr = env("MASTER_ADDR");
    if (!addr || addr->empty()) throw io::InputError("MASTER_ADDR is not set (torchrun sets it with RANK and WORLD_SIZE)");
    w.master_addr = *addr;
    w.master_port = env_int("MASTER_PORT", 1, 65535);
  }
  const auto agent = env("TORCHELASTIC_USE_AGENT_STORE");
  w.agent_store = agent && (*agent == "True" || *agent == "true" || *agent == "1");
  return w;
}

std::pair<int64_t, int64_t> row_block(int64_t rows, int rank, int size) {
  const int64_t base = rows / size, extra = rows % size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

namespace {

// A world of one process: the collectives return what they are given.
class SingleProcess final : public ProcessGroup {
 public:
  explicit SingleProcess(const World& world) : ProcessGroup(world) {}
  std::vector<std::string> all_gather(const std::string& mine) override { return {mine}; }
  int64_t broadcast_from_rank0(int64_t value) override { return value; }
};

}  // namespace

#ifdef MAMBA_LRP_WITH_GLOO

bool has_process_groups() { return true; }

namespace {

class GlooGroup final : public ProcessGroup {
 public:
  GlooGroup(const World& world, std::chrono::milliseconds timeout) : ProcessGroup(world) {
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<std::uint16_t>(world.master_port);
      so.isServer = world.rank == 0 && !world.agent_store;
      so.numWorkers = world.size;
      so.waitWorkers = false;  // the Gloo rendezvous below waits for every rank
      so.timeout = timeout;
      auto tcp = c10::make_intrusive<c10d::TCPStore>(world.master_addr, so);
      // Our own key space in the store (torchrun's agent keeps its keys there too).
      auto store = c10::make_intrusive<c10d::PrefixStore>("mamba_lrp/", tcp);
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      // GLOO_SOCKET_IFNAME (as torch.distributed reads it) picks the network interface;
      // otherwise the address this host's name resolves to.
      const auto ifname = env("GLOO_SOCKET_IFNAME");
      options->devices.push_back(ifname && !ifname->empty()
                                     ? c10d::ProcessGroupGloo::createDeviceForInterface(*ifname)
                                     : c10d::ProcessGroupGloo::createDefaultDevice());
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, world.rank, world.size, options);
    } catch (const std::exception& e) {
      throw fail("joining the process group at " + world.master_addr + ":" + std::to_string(world.master_port), e);
    }
  }

  std::vector<std::string> all_gather(const std::string& mine) override {
    try {
      // The lengths first, then every rank's bytes padded to the longest.
      std::vector<at::Tensor> in{at::full({1}, static_cast<int64_t>(mine.size()), at::kLong)};
      std::vector<std::vector<at::Tensor>> out(1);
      for (int r = 0; r < size(); ++r) out[0].push_back(at::empty({1}, at::kLong));
      group_->allgather(out, in)->wait();
      int64_t longest = 1;
      std::vector<int64_t> lengths;
      for (const auto& t : out[0]) lengths.push_back(t.item<int64_t>()), longest = std::max(longest, lengths.back());
      at::Tensor bytes = at::zeros({longest}, at::kByte);
      std::copy(mine.begin(), mine.end(), reinterpret_cast<char*>(bytes.data_ptr<uint8_t>()));
      std::vector<at::Tensor> in2{bytes};
      std::vector<std::vector<at::Tensor>> out2(1);
      for (int r = 0; r < size(); ++r) out2[0].push_back(at::empty({longest}, at::kByte));
      group_->allgather(out2, in2)->wait();
      std::vector<std::string> all;
      for (int r = 0; r < size(); ++r)
        all.emplace_back(reinterpret_cast<const char*>(out2[0][r].data_ptr<uint8_t>()), static_cast<size_t>(lengths[r]));
      return all;
    } catch (const std::exception& e) {
      throw fail("gathering the results", e);
    }
  }

  int64_t broadcast_from_rank0(int64_t value) override {
    try {
      std::vector<at::Tensor> t{at::full({1}, value, at::kLong)};
      c10d::BroadcastOptions o;
      o.rootRank = 0;
      group_->broadcast(t, o)->wait();
      return t[0].item<int64_t>();
    } catch (const std::exception& e) {
      throw fail("receiving rank 0's value", e);
    }
  }

 private:
  CommunicationError fail(const std::string& doing, const std::exception& e) const {
    const auto* c10 = dynamic_cast<const c10::Error*>(&e);
    const std::string why = io::first_line(c10 ? c10->what_without_backtrace() : e.what());
    return CommunicationError("rank " + std::to_string(rank()) + " of " + std::to_string(size()) + ": " + doing +
                              " failed (another rank exited, or the timeout passed): " + why);
  }
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

std::unique_ptr<ProcessGroup> ProcessGroup::join(const World& world, std::chrono::milliseconds timeout) {
  if (world.size == 1) return std::make_unique<SingleProcess>(world);
  return std::make_unique<GlooGroup>(world, timeout);
}

#else  // no c10d with Gloo in this build

bool has_process_groups() { return false; }

std::unique_ptr<ProcessGroup> ProcessGroup::join(const World& world, std::chrono::milliseconds) {
  if (world.size == 1) return std::make_unique<SingleProcess>(world);
  throw io::InputError(
      "this mamba-lrp was built without torch.distributed (c10d with Gloo was not found when it was configured: "
      "Gloo's headers, e.g. Debian's libgloo-dev): run it without torchrun, or rebuild");
}

#endif

}  // namespace distributed
}  // namespace mamba_lrp
