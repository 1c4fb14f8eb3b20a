// Many processes, one run: the rank and world of a process started by torchrun (PyTorch's
// launcher, `python3 -m torch.distributed.run`), and a c10d process group (TCPStore
// rendezvous at MASTER_ADDR:MASTER_PORT, Gloo) for the few collectives the command line
// needs: every rank's bytes to every rank, and a number from rank 0.
// Builds of mamba-lrp whose Torch has no c10d with Gloo (or without Gloo's headers) compile
// this out: has_process_groups() is false and join() fails with a message saying so.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mamba_lrp {
namespace distributed {

// torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
struct World {
  int rank = 0, size = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  // TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent already serves the TCPStore at
  // MASTER_ADDR:MASTER_PORT, so rank 0 connects to it instead of starting one.
  bool agent_store = false;
};

// The world of this process: nullopt when neither RANK nor WORLD_SIZE is set (one process,
// nothing changes). io::InputError naming the variable when they are set but incomplete or
// malformed (a rank outside [0, WORLD_SIZE), a port outside 1..65535, ...).
std::optional<World> world_from_environment();

// Whether this build can join a process group (c10d with Gloo was found at configure time).
bool has_process_groups();

// Every rank's failure on a collective (a rank died, the timeout passed) is reported as this.
struct CommunicationError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ProcessGroup {
 public:
  // Joins the group of `world`: every rank blocks until all have joined or `timeout` passes
  // (a world of one process joins nothing).
  // The same timeout bounds every collective below. CommunicationError on failure,
  // io::InputError where this build has no process groups.
  static std::unique_ptr<ProcessGroup> join(const World& world, std::chrono::milliseconds timeout);
  virtual ~ProcessGroup() = default;
  int rank() const { return world_.rank; }
  int size() const { return world_.size; }
  // Every rank's `mine`, in rank order, on every rank (sizes may differ between ranks).
  virtual std::vector<std::string> all_gather(const std::string& mine) = 0;
  // Rank 0's value on every rank.
  virtual int64_t broadcast_from_rank0(int64_t value) = 0;

 protected:
  explicit ProcessGroup(const World& world) : world_(world) {}
  World world_;
};

// The rows [begin, end) of rank `rank` of `size` when `rows` rows are split in contiguous
// blocks whose sizes differ by at most one (the first rows % size ranks take one more).
std::pair<int64_t, int64_t> row_block(int64_t rows, int rank, int size);

}  // namespace distributed
}  // namespace mamba_lrp
