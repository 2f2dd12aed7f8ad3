// The only source of time in kiln. Logic takes a Clock& (or a Time argument) instead of reading
// std::chrono clocks, so tests drive time with FakeClock instead of sleeping.
#pragma once

#include <atomic>
#include <cstdint>

namespace kiln {

// Milliseconds. Monotonic time for timeouts; wall time (Unix epoch ms) for records shown to people.
using Millis = int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Millis MonotonicMs() const = 0;
  virtual Millis WallMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  Millis MonotonicMs() const override;
  Millis WallMs() const override;
};

// Test clock: time moves only when Advance() is called. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(Millis start = 1'000'000) : now_(start) {}
  Millis MonotonicMs() const override { return now_.load(); }
  Millis WallMs() const override { return now_.load(); }
  void Advance(Millis ms) { now_ += ms; }

 private:
  std::atomic<Millis> now_;
};

}  // namespace kiln
