// Fair share: each user's usage (rank-seconds or GPU-seconds), decaying with a half-life.
// Pure: every time is an argument. Within one priority, the user with the least usage per unit of
// weight goes first (see SchedulingPolicy).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/clock.h"

namespace kiln::core {

enum class UsageUnit { kRankSeconds, kGpuSeconds };

class FairShareLedger {
 public:
  explicit FairShareLedger(double half_life_s) : half_life_s_(half_life_s) {}

  struct Entry {
    double usage = 0;  // unit-seconds, decayed to `as_of`
    Millis as_of = 0;
  };

  // Charges `rate` units held from `start` to `end`, decayed exactly as if charged continuously.
  void Charge(const std::string& user, double rate, Millis start, Millis end);
  // Decayed usage at `now` of everything charged so far.
  double Usage(const std::string& user, Millis now) const;
  // What a running job counts for at `now`: what it has used since `start` (decayed), plus its
  // commitment (rate × mean life): the usage it would reach if it kept running. Counting the
  // commitment from the moment a job starts is what stops one user's many small jobs from all
  // starting before another user's first.
  double RunningCharge(double rate, Millis start, Millis now) const;
  double MeanLifeSeconds() const;
  double half_life_s() const { return half_life_s_; }

  const std::map<std::string, Entry>& entries() const { return entries_; }
  void Restore(const std::string& user, Entry entry) { entries_[user] = entry; }

 private:
  double Decay(Millis from, Millis to) const;  // factor in (0, 1]
  double half_life_s_;
  std::map<std::string, Entry> entries_;
};

}  // namespace kiln::core
