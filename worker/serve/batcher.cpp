#include "worker/serve/batcher.h"

#include <chrono>
#include <exception>

namespace kiln::serve {

namespace {
using SteadyClock = std::chrono::steady_clock;
}

bool ShouldRunBatch(int64_t queued_rows, int64_t oldest_wait_us, int64_t arriving,
                    const BatchPolicy& policy) {
  if (queued_rows <= 0) return false;
  return queued_rows >= policy.max_batch_rows || oldest_wait_us >= policy.max_delay_us ||
         arriving <= 0;
}

size_t RequestsInBatch(const std::vector<int64_t>& queued_rows, const BatchPolicy& policy) {
  if (queued_rows.empty()) return 0;
  size_t n = 1;
  int64_t rows = queued_rows[0];
  while (n < queued_rows.size() && rows + queued_rows[n] <= policy.max_batch_rows) {
    rows += queued_rows[n];
    ++n;
  }
  return n;
}

struct DynamicBatcher::Pending {
  std::vector<float> values;
  int64_t rows = 0;
  SteadyClock::time_point queued_at;
  bool done = false;
  Result<std::vector<RowPrediction>> result = Status::Internal("not run");
};

DynamicBatcher::DynamicBatcher(BatchPolicy policy, Model model)
    : policy_(policy), model_(std::move(model)) {
  thread_ = std::thread([this] { Loop(); });
}

DynamicBatcher::~DynamicBatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

DynamicBatcher::Arrival::Arrival(DynamicBatcher& batcher) : batcher_(&batcher) {
  std::lock_guard<std::mutex> lock(batcher_->mu_);
  ++batcher_->arriving_;
}

DynamicBatcher::Arrival::~Arrival() { Done(); }

void DynamicBatcher::Arrival::Done() {
  if (batcher_ == nullptr) return;
  batcher_->EndArrival();
  batcher_ = nullptr;
}

void DynamicBatcher::EndArrival() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --arriving_;
  }
  wake_.notify_all();
}

Result<std::vector<RowPrediction>> DynamicBatcher::Infer(std::vector<float> values, int64_t rows,
                                                         Arrival* arrival) {
  auto pending = std::make_shared<Pending>();
  pending->values = std::move(values);
  pending->rows = rows;
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return Status::Unavailable("the server is stopping");
  if (arrival != nullptr && arrival->batcher_ == this) {
    --arriving_;
    arrival->batcher_ = nullptr;
  }
  if (queue_.empty() && !running_ && arriving_ <= 0) {
    // Nobody to batch with and the model idle: run it on this thread, sparing two hand-offs
    // (what a lone client's latency is made of).
    running_ = true;
    lock.unlock();
    Result<std::vector<RowPrediction>> out = RunModel(pending->values, rows);
    lock.lock();
    running_ = false;
    ++batches_;
    batched_rows_ += rows;
    lock.unlock();
    wake_.notify_all();
    return out;
  }
  pending->queued_at = SteadyClock::now();
  queue_.push_back(pending);
  queued_rows_ += rows;
  lock.unlock();
  wake_.notify_all();
  lock.lock();
  wake_.wait(lock, [&] { return pending->done; });
  return std::move(pending->result);
}

Result<std::vector<RowPrediction>> DynamicBatcher::RunModel(const std::vector<float>& values,
                                                            int64_t rows) {
  Result<std::vector<RowPrediction>> out = Status::Internal("the model gave no answer");
  try {
    out = model_(values, rows);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("the model failed: ") + e.what());
  } catch (...) {
    return Status::Internal("the model failed");
  }
  if (out.ok() && static_cast<int64_t>(out->size()) != rows) {
    return Status::Internal("the model answered " + std::to_string(out->size()) + " rows of " +
                            std::to_string(rows));
  }
  return out;
}

int64_t DynamicBatcher::batches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_;
}

int64_t DynamicBatcher::batched_rows() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batched_rows_;
}

void DynamicBatcher::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (stopping_) break;
    if (queue_.empty() || running_) {  // running_: a request runs the model on its own thread
      wake_.wait(lock);
      continue;
    }
    const auto now = SteadyClock::now();
    const int64_t waited_us =
        std::chrono::duration_cast<std::chrono::microseconds>(now - queue_.front()->queued_at)
            .count();
    if (!ShouldRunBatch(queued_rows_, waited_us, arriving_, policy_)) {
      wake_.wait_for(lock, std::chrono::microseconds(policy_.max_delay_us - waited_us));
      continue;
    }
    std::vector<int64_t> rows;
    rows.reserve(queue_.size());
    for (const auto& p : queue_) rows.push_back(p->rows);
    const size_t take = RequestsInBatch(rows, policy_);
    std::vector<std::shared_ptr<Pending>> batch(queue_.begin(), queue_.begin() + take);
    queue_.erase(queue_.begin(), queue_.begin() + take);
    int64_t total = 0;
    for (const auto& p : batch) total += p->rows;
    queued_rows_ -= total;
    running_ = true;
    lock.unlock();

    std::vector<float> values;
    if (batch.size() == 1) {
      values = std::move(batch[0]->values);
    } else {
      values.reserve(static_cast<size_t>(total) *
                     (batch[0]->values.size() / static_cast<size_t>(batch[0]->rows)));
      for (const auto& p : batch) values.insert(values.end(), p->values.begin(), p->values.end());
    }
    Result<std::vector<RowPrediction>> out = RunModel(values, total);
    lock.lock();
    running_ = false;
    ++batches_;
    batched_rows_ += total;
    int64_t offset = 0;
    for (const auto& p : batch) {
      if (!out.ok()) {
        p->result = out.status();
      } else {
        p->result =
            std::vector<RowPrediction>(out->begin() + offset, out->begin() + offset + p->rows);
      }
      offset += p->rows;
      p->done = true;
    }
    wake_.notify_all();
  }
  for (const auto& p : queue_) {
    p->result = Status::Unavailable("the server is stopping");
    p->done = true;
  }
  queue_.clear();
  wake_.notify_all();
}

}  // namespace kiln::serve
