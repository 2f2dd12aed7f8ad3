// Dynamic batching: requests that arrive together run through the model as one batch. A batch
// runs when it holds max_batch rows, when its oldest request has waited max_delay, or when no
// other request is on its way in (being read and parsed): so a lone client never waits for a
// delay that cannot fill the batch, and concurrent clients share forward passes. A request that
// finds the model idle and nobody else coming runs it on its own thread (no hand-off); the
// model is never run by two threads at once.
// The decisions are pure functions (unit-tested); DynamicBatcher is their thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"
#include "worker/serve/inference_codec.h"

namespace kiln::serve {

struct BatchPolicy {
  int64_t max_batch_rows = 32;
  int64_t max_delay_us = 2000;
};

// Whether the queued requests should run now.
bool ShouldRunBatch(int64_t queued_rows, int64_t oldest_wait_us, int64_t arriving,
                    const BatchPolicy& policy);
// How many queued requests (oldest first, rows each) make the next batch: the first always,
// then each that still fits in max_batch_rows.
size_t RequestsInBatch(const std::vector<int64_t>& queued_rows, const BatchPolicy& policy);

class DynamicBatcher {
 public:
  // Runs `rows` rows of `features` values each; called on the batcher's thread only.
  using Model =
      std::function<std::vector<RowPrediction>(const std::vector<float>& values, int64_t rows)>;
  DynamicBatcher(BatchPolicy policy, Model model);
  ~DynamicBatcher();  // answers what is queued with an error and joins the thread
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Counts a request as on its way in from its construction until Infer (or its destruction).
  class Arrival {
   public:
    explicit Arrival(DynamicBatcher& batcher);
    ~Arrival();
    Arrival(const Arrival&) = delete;
    Arrival& operator=(const Arrival&) = delete;
    void Done();

   private:
    friend class DynamicBatcher;
    DynamicBatcher* batcher_;
  };

  // Runs the request's rows in the next batch that takes them; blocks until they are answered.
  Result<std::vector<RowPrediction>> Infer(std::vector<float> values, int64_t rows,
                                           Arrival* arrival = nullptr);

  // Batches run and rows they held, since start.
  int64_t batches() const;
  int64_t batched_rows() const;

 private:
  struct Pending;
  void Loop();
  // Calls the model (at most one caller at a time: running_), turning a throw into an error.
  Result<std::vector<RowPrediction>> RunModel(const std::vector<float>& values, int64_t rows);
  void EndArrival();

  BatchPolicy policy_;
  Model model_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Pending>> queue_;
  int64_t queued_rows_ = 0;
  int64_t arriving_ = 0;
  bool running_ = false;  // the model runs now (on the loop's thread or a request's)
  int64_t batches_ = 0, batched_rows_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kiln::serve
