// Many rows in one run: the process group of a torchrun start, the row-by-row explain loop,
// and --jsonl with --resume (cli.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <c10/util/Exception.h>

#include "csrc/app/cli/cli.h"
#include "csrc/io/errors.h"

namespace mamba_lrp {
namespace cli {
namespace {

// What each rank sends for its row of a round: 'O' and the row's JSON, 'I' (bad input) or
// 'E' (internal error) and the message, or 'N' when the round has no row for this rank.
std::string row_payload(char kind, const std::string& body) { return std::string(1, kind) + body; }

// The rows already in an interrupted --jsonl file: its complete lines, each the JSON of row
// 0, 1, ... in order and of `method`. A last line without its newline (the run stopped
// while writing it) is cut off. io::InputError when the file holds something else.
int64_t complete_rows(const std::string& path, const std::string& method) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io::InputError(path + ": cannot read (--resume)");
  int64_t rows = 0;
  std::streamoff good_end = 0;
  std::string line;
  while (std::getline(f, line)) {
    if (f.eof()) break;  // no newline after it: incomplete
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("row") || j["row"] != rows || j.value("method", "") != method)
      throw io::InputError(path + ": line " + std::to_string(rows + 1) + " is not row " + std::to_string(rows) +
                           " of method " + method + " (--resume continues the same run)");
    ++rows;
    good_end = f.tellg();
  }
  f.close();
  std::filesystem::resize_file(path, static_cast<uintmax_t>(good_end));
  return rows;
}

}  // namespace

std::unique_ptr<distributed::ProcessGroup> join_process_group(const Args& a) {
  const int64_t seconds = parse_int(a.timeout, "--timeout");
  if (seconds < 1) throw io::InputError("--timeout must be at least 1 (seconds)");
  const std::optional<distributed::World> world = distributed::world_from_environment();
  return distributed::ProcessGroup::join(world.value_or(distributed::World{}), std::chrono::seconds(seconds));
}

bool runs_row_by_row(const Args& a) {
  if (a.resume && a.jsonl.empty()) throw io::InputError("--resume continues a --jsonl run: give --jsonl OUT");
  return !a.jsonl.empty() || distributed::world_from_environment().has_value();
}

std::string device_of_rank(const std::string& device) {
  const auto world = distributed::world_from_environment();
  if (!world || device != "cuda") return device;
  return "cuda:" + std::to_string(world->local_rank);
}

std::vector<nlohmann::json> explain_rows(const Args& a, distributed::ProcessGroup& group, int64_t rows, bool keep,
                                         const ExplainRowsFn& explain) {
  const int rank = group.rank(), size = group.size();
  const int64_t per_rank = a.batch_size.empty() ? 32 : parse_int(a.batch_size, "--batch-size");
  if (per_rank < 1) throw io::InputError("--batch-size must be at least 1");
  if (a.jsonl == "-") throw io::InputError("--jsonl needs a file name (stdout is for --json -)");
  const std::string partial = a.jsonl + ".partial";
  // Rank 0 decides where the run starts; every rank learns it.
  int64_t start = 0;
  std::ofstream out;
  if (rank == 0 && !a.jsonl.empty()) {
    if (a.resume) {
      // A finished file is resumed too (it has every row: nothing left to do).
      if (!std::filesystem::exists(partial) && std::filesystem::exists(a.jsonl)) std::filesystem::rename(a.jsonl, partial);
      if (std::filesystem::exists(partial)) start = complete_rows(partial, a.method);
    }
    out.open(partial, std::ios::binary | (start > 0 ? std::ios::app : std::ios::trunc));
    if (!out) throw io::InputError(a.jsonl + ": cannot write " + partial);
  }
  start = group.broadcast_from_rank0(start);
  if (rank == 0 && start > 0) std::fprintf(stderr, "mamba-lrp: resuming %s after its %lld rows\n", a.jsonl.c_str(),
                                           static_cast<long long>(start));

  std::vector<nlohmann::json> kept;
  using Clock = std::chrono::steady_clock;
  double explaining = 0, gathering = 0;  // seconds, for the summary line of a run of many processes
  for (int64_t first = start; first < rows; first += size * per_rank) {
    // rank r's rows of this round: [mine, mine + count)
    const int64_t mine = first + rank * per_rank, count = std::max<int64_t>(0, std::min(per_rank, rows - mine));
    std::string payload = row_payload('N', "");
    const auto t0 = Clock::now();
    if (count > 0) {
      try {
        payload = row_payload('O', nlohmann::json(explain(mine, count)).dump());
      } catch (const io::InputError& e) {
        payload = row_payload('I', e.what());
      } catch (const c10::Error& e) {
        payload = row_payload('E', io::first_line(e.what_without_backtrace()));
      } catch (const std::exception& e) {
        payload = row_payload('E', e.what());
      }
    }
    const auto t1 = Clock::now();
    const std::vector<std::string> all = group.all_gather(payload);
    explaining += std::chrono::duration<double>(t1 - t0).count();
    gathering += std::chrono::duration<double>(Clock::now() - t1).count();
    for (int r = 0; r < size; ++r) {  // the first failing rank fails everyone, in the same words
      if (all[r][0] != 'I' && all[r][0] != 'E') continue;
      const int64_t theirs = first + r * per_rank, last = std::min(theirs + per_rank, rows) - 1;
      const std::string why = "rank " + std::to_string(r) + " failed on row" +
                              (last > theirs ? "s " + std::to_string(theirs) + ".." : " ") + std::to_string(last) + ": " +
                              all[r].substr(1);
      if (all[r][0] == 'I') throw io::InputError(why);
      throw std::runtime_error(why);
    }
    if (rank != 0) continue;
    int64_t row = first;
    for (int r = 0; r < size; ++r) {
      if (all[r][0] != 'O') continue;
      for (nlohmann::json& j : nlohmann::json::parse(all[r].substr(1))) {
        if (out.is_open()) {
          nlohmann::json line = {{"row", row}, {"method", a.method}};
          line.update(j);
          out << line.dump() << '\n';
        }
        ++row;
        if (keep) kept.push_back(std::move(j));
      }
    }
    if (out.is_open()) {
      out.flush();
      if (!out) throw io::InputError(a.jsonl + ": write failed (" + partial + ")");
    }
  }
  if (rank == 0)
    std::fprintf(stderr, "mamba-lrp: rank 0 of %d: %lld rows, %.3f s explaining its rows, %.3f s gathering (with waiting for "
                 "the slowest rank)\n", size, static_cast<long long>(rows - start), explaining, gathering);
  if (out.is_open()) {
    out.close();
    std::error_code ec;
    if (out) std::filesystem::rename(partial, a.jsonl, ec);
    if (!out || ec) throw io::InputError(a.jsonl + ": write failed (" + partial + ")");
  }
  return kept;
}

}  // namespace cli
}  // namespace mamba_lrp
