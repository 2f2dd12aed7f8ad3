// The job state machine. Pure: no I/O, no clock.
//
//   PENDING --placed--> RUNNING --succeeded--> COMPLETED
//      ^                   |
//      +--attempt failed---+  (while retries remain; otherwise --> FAILED)
//   PENDING | RUNNING --cancel--> CANCELLED
//   RUNNING --timed out--> FAILED         (past its time limit: never retried)
//   PENDING --dependency failed--> FAILED (it can never run)
//   RUNNING --requeued--> PENDING         (an admin drained its node with --requeue; no retry used)
//
// COMPLETED, FAILED and CANCELLED are terminal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace kiln::core {

enum class JobState { kPending, kRunning, kCompleted, kFailed, kCancelled };
// kFailedPermanently: the attempt failed in a way no retry can cure (a missing input, a bad
// spec): the job fails whatever retries it has left.
enum class JobEvent { kPlaced, kSucceeded, kAttemptFailed, kCancel, kTimedOut, kDependencyFailed,
                      kRequeued, kFailedPermanently };

const char* JobStateName(JobState state);
std::optional<JobState> ParseJobState(const std::string& name);
const char* JobEventName(JobEvent event);
bool IsTerminal(JobState state);

// `attempt` counts the attempts that used up a retry (1 for the first; requeued attempts do not
// count); a failed attempt is retried while attempt <= max_retries. Returns FailedPrecondition for an event the state does not
// accept (e.g. cancel of a COMPLETED job).
Result<JobState> NextState(JobState from, JobEvent event, int64_t attempt, int64_t max_retries);

}  // namespace kiln::core
