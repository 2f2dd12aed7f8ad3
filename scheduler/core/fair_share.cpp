#include "scheduler/core/fair_share.h"

#include <algorithm>
#include <cmath>

namespace kiln::core {

double FairShareLedger::MeanLifeSeconds() const { return half_life_s_ / std::log(2.0); }

double FairShareLedger::Decay(Millis from, Millis to) const {
  if (to <= from || half_life_s_ <= 0) return to <= from ? 1.0 : 0.0;
  return std::exp2(-static_cast<double>(to - from) / 1000.0 / half_life_s_);
}

void FairShareLedger::Charge(const std::string& user, double rate, Millis start, Millis end) {
  if (end <= start || rate <= 0) return;
  Entry& e = entries_[user];
  const double before = e.usage * Decay(e.as_of, end);
  // ∫ rate·2^(-(end-t)/h) dt over [start, end] = rate·τ·(1 - 2^(-(end-start)/h)), τ = h/ln 2.
  const double added = half_life_s_ > 0 ? rate * MeanLifeSeconds() * (1.0 - Decay(start, end))
                                         : 0.0;
  e.usage = before + added;
  e.as_of = std::max(e.as_of, end);
}

double FairShareLedger::Usage(const std::string& user, Millis now) const {
  auto it = entries_.find(user);
  if (it == entries_.end()) return 0.0;
  return it->second.usage * Decay(it->second.as_of, now);
}

double FairShareLedger::RunningCharge(double rate, Millis start, Millis now) const {
  const double tau = MeanLifeSeconds();
  return rate * tau * (1.0 - Decay(start, now)) + rate * tau;
}

}  // namespace kiln::core
