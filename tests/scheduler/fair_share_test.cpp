#include <catch2/catch.hpp>

#include "scheduler/core/fair_share.h"

using kiln::core::FairShareLedger;

TEST_CASE("usage halves every half-life") {
  FairShareLedger ledger(100.0);
  ledger.Charge("alice", 1.0, 0, 1000);  // 1 rank for 1 s: ~1 rank-second
  const double now = ledger.Usage("alice", 1000);
  CHECK(now == Approx(1.0).epsilon(0.01));
  CHECK(ledger.Usage("alice", 101'000) == Approx(now / 2));
  CHECK(ledger.Usage("bob", 1000) == 0.0);
}

TEST_CASE("a long stretch converges to rate times mean life") {
  FairShareLedger ledger(10.0);
  ledger.Charge("alice", 4.0, 0, 10'000'000);
  CHECK(ledger.Usage("alice", 10'000'000) == Approx(4.0 * ledger.MeanLifeSeconds()));
}

TEST_CASE("charges add up after decay") {
  FairShareLedger ledger(100.0);
  ledger.Charge("alice", 1.0, 0, 1000);
  ledger.Charge("alice", 1.0, 100'000, 101'000);
  CHECK(ledger.Usage("alice", 101'000) == Approx(1.0 / 2 + 1.0).epsilon(0.01));
}

TEST_CASE("a running job counts from its start, with its commitment") {
  FairShareLedger ledger(100.0);
  CHECK(ledger.RunningCharge(2.0, 0, 0) == Approx(2.0 * ledger.MeanLifeSeconds()));
  CHECK(ledger.RunningCharge(2.0, 0, 50'000) > ledger.RunningCharge(2.0, 0, 0));
}
