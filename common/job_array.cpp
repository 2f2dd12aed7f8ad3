#include "common/job_array.h"

#include <algorithm>

namespace kiln {

using nlohmann::json;

namespace {

constexpr const char* kIndexForm =
    "use FIRST-LAST[:STEP] or a comma-separated list of them, e.g. 0-999, 0-99:10, 1,5,7-9";

// A non-negative decimal of at most 9 digits (no sign, no spaces).
std::optional<int64_t> ParseCount(const std::string& text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

Result<IndexRun> ParseRun(const std::string& token) {
  const size_t dash = token.find('-');
  const size_t colon = token.find(':');
  const std::string first_text = token.substr(0, std::min(dash, colon));
  auto first = ParseCount(first_text);
  if (!first) {
    return Status::InvalidArgument("\"" + token + "\" does not start with an index; " + kIndexForm);
  }
  IndexRun run{*first, *first, 1};
  if (dash != std::string::npos) {
    const std::string last_text =
        token.substr(dash + 1, colon == std::string::npos ? std::string::npos : colon - dash - 1);
    auto last = ParseCount(last_text);
    if (!last) return Status::InvalidArgument("\"" + token + "\": bad last index; " + kIndexForm);
    run.last = *last;
  }
  if (colon != std::string::npos) {
    if (dash == std::string::npos || colon < dash) {
      return Status::InvalidArgument("\"" + token + "\": a step needs a range; " + kIndexForm);
    }
    auto step = ParseCount(token.substr(colon + 1));
    if (!step || *step < 1) {
      return Status::InvalidArgument("\"" + token + "\": the step must be a whole number >= 1");
    }
    run.step = *step;
  }
  if (run.last < run.first) {
    return Status::InvalidArgument("\"" + token + "\" is an empty range (" +
                                   std::to_string(run.last) + " < " + std::to_string(run.first) +
                                   "); write FIRST-LAST with FIRST <= LAST");
  }
  if (run.last > kMaxArrayIndex) {
    return Status::InvalidArgument("\"" + token + "\": indices go up to " +
                                   std::to_string(kMaxArrayIndex));
  }
  run.last = run.first + (run.last - run.first) / run.step * run.step;
  if (run.first == run.last) run.step = 1;
  return run;
}

}  // namespace

Result<IndexSet> IndexSet::Parse(const std::string& text) {
  std::vector<IndexRun> runs;
  int64_t total = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    auto run = ParseRun(text.substr(start, comma - start));
    if (!run.ok()) return run.status();
    total += run->Count();
    if (total > kMaxArrayTasks) {
      return Status::InvalidArgument("more than " + std::to_string(kMaxArrayTasks) +
                                     " tasks; split the work into several arrays");
    }
    runs.push_back(*run);
    start = comma + 1;
  }
  IndexSet set;
  if (runs.size() > kMaxArrayRuns) {
    return Status::InvalidArgument("more than " + std::to_string(kMaxArrayRuns) +
                                   " ranges; write the indices as fewer FIRST-LAST[:STEP] ranges");
  }
  if (runs.size() == 1) {
    set.runs_ = std::move(runs);
    return set;
  }
  // Several runs: sort and merge their indices, then compress them into runs again.
  std::vector<int64_t> all;
  all.reserve(static_cast<size_t>(total));
  for (const auto& r : runs) {
    for (int64_t i = r.first; i <= r.last; i += r.step) all.push_back(i);
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  for (size_t i = 0; i < all.size();) {
    IndexRun r{all[i], all[i], 1};
    size_t j = i + 1;
    if (j < all.size()) {
      r.step = all[j] - all[i];
      while (j < all.size() && all[j] - all[j - 1] == r.step) ++j;
      r.last = all[j - 1];
    }
    set.runs_.push_back(r);
    i = j;
  }
  if (set.runs_.size() > kMaxArrayRuns) {
    return Status::InvalidArgument("the indices make more than " + std::to_string(kMaxArrayRuns) +
                                   " ranges once merged; write them as fewer FIRST-LAST[:STEP] "
                                   "ranges");
  }
  return set;
}

std::string IndexSet::ToString() const {
  std::string out;
  for (const auto& r : runs_) {
    if (!out.empty()) out += ',';
    out += std::to_string(r.first);
    if (r.last != r.first) out += '-' + std::to_string(r.last);
    if (r.step != 1) out += ':' + std::to_string(r.step);
  }
  return out;
}

int64_t IndexSet::Count() const {
  int64_t n = 0;
  for (const auto& r : runs_) n += r.Count();
  return n;
}

bool IndexSet::Contains(int64_t index) const {
  for (const auto& r : runs_) {
    if (index >= r.first && index <= r.last && (index - r.first) % r.step == 0) return true;
  }
  return false;
}

std::optional<int64_t> IndexSet::First() const {
  if (runs_.empty()) return std::nullopt;
  return runs_.front().first;
}

int64_t IndexSet::TakeFirst() {
  IndexRun& r = runs_.front();
  const int64_t index = r.first;
  if (r.first == r.last) {
    runs_.erase(runs_.begin());
  } else {
    r.first += r.step;
    if (r.first == r.last) r.step = 1;
  }
  return index;
}

bool IndexSet::Remove(int64_t index) {
  for (size_t k = 0; k < runs_.size(); ++k) {
    const IndexRun r = runs_[k];
    if (index < r.first || index > r.last || (index - r.first) % r.step != 0) continue;
    std::vector<IndexRun> pieces;
    if (index > r.first) pieces.push_back({r.first, index - r.step, r.step});
    if (index < r.last) pieces.push_back({index + r.step, r.last, r.step});
    for (auto& p : pieces) {
      if (p.first == p.last) p.step = 1;
    }
    runs_.erase(runs_.begin() + static_cast<std::ptrdiff_t>(k));
    runs_.insert(runs_.begin() + static_cast<std::ptrdiff_t>(k), pieces.begin(), pieces.end());
    return true;
  }
  return false;
}

std::vector<int64_t> IndexSet::Expand() const {
  std::vector<int64_t> out;
  for (const auto& r : runs_) {
    for (int64_t i = r.first; i <= r.last; i += r.step) out.push_back(i);
  }
  return out;
}

Result<ArraySpec> ParseArraySpec(const std::string& text) {
  ArraySpec spec;
  const size_t percent = text.find('%');
  auto indices = IndexSet::Parse(text.substr(0, percent));
  if (!indices.ok()) return Status::InvalidArgument("array: " + indices.status().message());
  spec.indices = std::move(*indices);
  if (percent != std::string::npos) {
    auto max = ParseCount(text.substr(percent + 1));
    if (!max || *max < 1) {
      return Status::InvalidArgument(
          "array: after '%' comes how many tasks may run at once, "
          "a whole number >= 1 (e.g. 0-99%4), got \"" +
          text.substr(percent + 1) + "\"");
    }
    spec.max_running = *max;
  }
  return spec;
}

namespace {

json Substitute(const json& value, const std::string& index_text, int64_t index) {
  static const std::string kToken = "${array_index}";
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    if (s == kToken) return index;
    if (s.find(kToken) == std::string::npos) return value;
    std::string out;
    size_t from = 0;
    for (size_t at; (at = s.find(kToken, from)) != std::string::npos; from = at + kToken.size()) {
      out.append(s, from, at - from).append(index_text);
    }
    out.append(s, from, std::string::npos);
    return out;
  }
  if (value.is_array()) {
    json out = json::array();
    for (const auto& v : value) out.push_back(Substitute(v, index_text, index));
    return out;
  }
  if (value.is_object()) {
    json out = json::object();
    for (auto it = value.begin(); it != value.end(); ++it) {
      out[it.key()] = Substitute(it.value(), index_text, index);
    }
    return out;
  }
  return value;
}

}  // namespace

json SubstituteArrayIndex(const json& spec, int64_t index) {
  if (!spec.is_object()) return spec;
  const std::string index_text = std::to_string(index);
  json out = json::object();
  for (auto it = spec.begin(); it != spec.end(); ++it) {
    // What the scheduler itself reads stays the array's: every task is placed, ordered, retried
    // and limited as the array is (a "${array_index}" there is refused as a bad value).
    const bool scheduler_field = it.key() == "resources" || it.key() == "depends_on" ||
                                 it.key() == "priority" || it.key() == "max_retries" ||
                                 it.key() == "time_limit";
    out[it.key()] = scheduler_field ? it.value() : Substitute(it.value(), index_text, index);
  }
  return out;
}

const char* ArrayFinalState(const ArrayTally& tally) {
  if (tally.failed > 0) return "FAILED";
  if (tally.cancelled > 0) return "CANCELLED";
  return "COMPLETED";
}

std::string DescribeTally(const ArrayTally& tally) {
  std::string out = std::to_string(tally.completed) + " completed";
  if (tally.failed > 0) out += ", " + std::to_string(tally.failed) + " failed";
  if (tally.cancelled > 0) out += ", " + std::to_string(tally.cancelled) + " cancelled";
  return out;
}

std::string TaskName(int64_t array_job, int64_t index) {
  return index < 0 ? std::to_string(array_job)
                   : std::to_string(array_job) + "_" + std::to_string(index);
}

std::optional<JobRef> ParseJobRef(const std::string& text) {
  auto number = [](const std::string& s) -> std::optional<int64_t> {
    if (s.empty() || s.size() > 18) return std::nullopt;
    int64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    return v;
  };
  JobRef ref;
  const size_t underscore = text.find('_');
  auto id = number(text.substr(0, underscore));
  if (!id) return std::nullopt;
  ref.id = *id;
  if (underscore != std::string::npos) {
    auto index = number(text.substr(underscore + 1));
    if (!index) return std::nullopt;
    ref.index = *index;
  }
  return ref;
}

}  // namespace kiln
