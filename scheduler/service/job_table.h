// The scheduler's jobs. Every state change of a job goes through JobTable::Transition, which
// writes the job's row, its event, and the end of its attempt to the store (inside the turn's
// transaction) and keeps the view of unfinished jobs that scheduling reads: by id, the PENDING
// ones in queue order, the RUNNING ones, and the final state of finished jobs that others depend
// on. The view holds nothing the store does not: Track rebuilds it from job rows (at start, and
// after a message's writes were rolled back); a pending job's latest reason is the one field
// kept only here (every pass recomputes it).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/job_array.h"
#include "common/job_spec.h"
#include "scheduler/core/accounts.h"
#include "scheduler/core/job_state.h"
#include "scheduler/core/metric_history.h"
#include "scheduler/core/scheduling_policy.h"
#include "scheduler/core/service_rollout.h"
#include "scheduler/core/sweep.h"
#include "scheduler/service/store.h"

namespace kiln::service {

// An array's pending indices and limits, kept in its row's `array` column (JobRecord::array).
struct ArrayState {
  std::string indices;      // every task's index, canonical (IndexSet::ToString)
  int64_t tasks = 0;        // how many
  int64_t max_running = 0;  // tasks RUNNING at once (0: no limit)
  IndexSet pending;         // indices with no row yet: they start from the array's own queue entry
  int64_t cancelled = 0;    // pending indices a cancel of the whole array dropped
  // A sweep (kiln sweep): its document (without "base", which is the row's spec), parsed, and
  // ASHA's record; each task is a trial, its spec TrialSpec(index).
  nlohmann::json sweep_doc;
  std::optional<core::SweepSpec> sweep;
  core::SweepState sweep_state;
  nlohmann::json TrialSpec(const nlohmann::json& base, int64_t index) const;
  // Task `index`'s spec errors as a submit reports them: "task 3: ...", or for a sweep's
  // parameter "space.PATH: ...".
  std::vector<std::string> TaskSpecErrors(int64_t index,
                                          const std::vector<SpecError>& errors) const;
  nlohmann::json ToJson() const;
  static ArrayState FromJson(const nlohmann::json& j);
};

// A job row's spec as parsed for scheduling; an array's with its first index in (every task
// has the array's resources).
SpecParseResult ParseTaskSpecOf(const JobRecord& row);

// An unfinished job as scheduling needs it; specs, logs and events stay in the database.
struct ActiveJob {
  core::QueuedJob queued;  // id, user, priority, resources, time limit, held, dependencies
  core::JobState state = core::JobState::kPending;
  int64_t attempt = 0;
  Millis started_at = 0;                                            // wall clock, current attempt
  std::vector<std::pair<std::string, core::NodeShare>> allocation;  // node name, share
  std::string reason;       // why it waits (pending), from the latest pass
  std::string unplaceable;  // set when this scheduler cannot place it at all (multi-node)
  // Its metrics history series (step, epoch), read from the store at the first report.
  std::optional<core::SeriesState> history[2];
  // A service's replica (spec.serve): its service and the checkpoint it serves.
  std::string service;
  core::ModelRef model;
  // An array's own entry: PENDING until its last task has ended; queued while indices are pending.
  std::optional<ArrayState> array;
  // A task of an array: the array's id and the task's index.
  int64_t array_job = 0;
  int64_t array_index = -1;
  int64_t train_epochs = 0;  // its spec's, for a sweep's rungs
  // Its current attempt's progress (for its expected end): the first step it reported and when,
  // and the latest step of how many.
  int64_t first_step = -1;
  Millis first_step_at = 0;
  int64_t step = 0;
  Millis step_at = 0;
  int64_t total_steps = 0;
  // When it should start (core/start_estimate.h), from the latest pass: 0 when not estimated,
  // -1 when unknown; and the jobs whose ends make room, and the nodes.
  Millis start_estimate = 0;
  std::vector<int64_t> start_after;
  std::vector<std::string> start_nodes;
};

class JobTable {
 public:
  // `multi_node` off: every gang must fit on one node; those that ask for several are marked
  // unplaceable when tracked.
  JobTable(Store& store, bool multi_node) : store_(store), multi_node_(multi_node) {}

  // Forgets the view (before tracking every unfinished job again).
  void Clear();
  // Adds an unfinished job to the view, from its row and its parsed spec.
  ActiveJob& Track(const JobRecord& job, const JobSpec& spec);

  // What a transition ended, for fair-share charging: the attempt that ran, when it left RUNNING.
  struct EndedAttempt {
    std::string user;
    core::ResourceRequest request;
    Millis started_at = 0;
  };
  // Moves `job` through `event` (core::NextState) at wall time `now`: the row, an event and the
  // attempt's end are written; the view follows (a finished job leaves it).
  Result<std::optional<EndedAttempt>> Transition(JobRecord& job, core::JobEvent event,
                                                 const std::string& reason, Millis now);
  // A PENDING or RUNNING job's new priority (the row is the caller's to write).
  void SetPriority(ActiveJob& job, int64_t priority);

  // Arrays. Removes `index` (the lowest pending one when absent) from an array's pending
  // indices; the array leaves the queue once none is left. Returns the index, or nullopt when
  // it was not pending. The row is the caller's to write (ArrayState::ToJson).
  std::optional<int64_t> TakeArrayTask(ActiveJob& array, std::optional<int64_t> index);
  // Drops every pending index (a cancel of the whole array); returns how many.
  int64_t DropPendingTasks(ActiveJob& array);
  // Tasks of the array that have a row and have not ended.
  int64_t LiveTasks(int64_t array_job) const;
  // The array has nothing left to run: no pending index and no live task.
  bool ArrayDone(const ActiveJob& array) const;
  // Ends an array whose tasks are done: its row takes `state`, with an event; it leaves the view.
  Status FinishArray(JobRecord& row, core::JobState state, const std::string& reason, Millis now);
  // The array's live tasks' ids.
  std::vector<int64_t> TasksOf(int64_t array_job) const;

  // Calls f(id, job) for every job in the view, in no particular order.
  template <typename F>
  void ForEach(F f) const {
    for (const auto& [id, job] : active_) f(id, job);
  }
  ActiveJob* Find(int64_t id);
  const ActiveJob* Find(int64_t id) const;
  ActiveJob& At(int64_t id);  // a job the view holds (throws std::out_of_range otherwise)
  // PENDING jobs by (-priority, id): the order the policy wants its queue in.
  const std::map<std::pair<int64_t, int64_t>, ActiveJob*>& pending() const { return pending_; }
  const std::set<int64_t>& running() const { return running_; }
  // A job's state, for dependency checks: from the view, a cache of finished ones, or the store.
  std::optional<core::JobState> StateOf(int64_t id);
  size_t size() const { return active_.size(); }
  // How many PENDING jobs the user has (for the max_pending quota).
  int64_t PendingOf(const std::string& user) const;

  // The account label (scheduler/core/accounts.h) each user's jobs need, by user; a user not
  // named (removed from the database) gets one that no node carries. Jobs already tracked
  // whose user's label changed are relabelled. Returns whether any was.
  bool SetAccountLabels(std::unordered_map<std::string, std::string> labels);
  std::string AccountLabelOf(const std::string& user) const;

  // Users are numbered in the order they are first seen (the policy's UserShare index).
  int32_t UserIndex(const std::string& user);
  const std::vector<std::string>& user_names() const { return user_names_; }

 private:
  Store& store_;
  bool multi_node_;
  std::unordered_map<int64_t, ActiveJob> active_;
  std::map<std::pair<int64_t, int64_t>, ActiveJob*> pending_;
  std::set<int64_t> running_;
  std::vector<int64_t> pending_by_user_;  // by user index
  std::unordered_map<int64_t, core::JobState> finished_states_;
  std::unordered_map<int64_t, int64_t> live_tasks_;  // by array id
  // How many pending tasks a queued entry stands for (an array: its pending indices).
  static int64_t PendingWeight(const ActiveJob& a);
  std::vector<std::string> user_names_;
  std::unordered_map<std::string, int32_t> user_index_;
  std::unordered_map<std::string, std::string> account_labels_;  // by user name
};

}  // namespace kiln::service
