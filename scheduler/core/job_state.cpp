#include "scheduler/core/job_state.h"

namespace kiln::core {

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kPending: return "PENDING";
    case JobState::kRunning: return "RUNNING";
    case JobState::kCompleted: return "COMPLETED";
    case JobState::kFailed: return "FAILED";
    case JobState::kCancelled: return "CANCELLED";
  }
  return "UNKNOWN";
}

std::optional<JobState> ParseJobState(const std::string& name) {
  for (JobState s : {JobState::kPending, JobState::kRunning, JobState::kCompleted,
                     JobState::kFailed, JobState::kCancelled}) {
    if (name == JobStateName(s)) return s;
  }
  return std::nullopt;
}

const char* JobEventName(JobEvent event) {
  switch (event) {
    case JobEvent::kPlaced: return "placed";
    case JobEvent::kSucceeded: return "succeeded";
    case JobEvent::kAttemptFailed: return "attempt failed";
    case JobEvent::kCancel: return "cancel";
    case JobEvent::kTimedOut: return "timed out";
    case JobEvent::kDependencyFailed: return "dependency failed";
    case JobEvent::kRequeued: return "requeued";
    case JobEvent::kFailedPermanently: return "failed permanently";
  }
  return "unknown";
}

bool IsTerminal(JobState state) {
  return state == JobState::kCompleted || state == JobState::kFailed ||
         state == JobState::kCancelled;
}

Result<JobState> NextState(JobState from, JobEvent event, int64_t attempt, int64_t max_retries) {
  switch (from) {
    case JobState::kPending:
      if (event == JobEvent::kPlaced) return JobState::kRunning;
      if (event == JobEvent::kCancel) return JobState::kCancelled;
      if (event == JobEvent::kDependencyFailed) return JobState::kFailed;
      break;
    case JobState::kRunning:
      if (event == JobEvent::kTimedOut) return JobState::kFailed;
      if (event == JobEvent::kSucceeded) return JobState::kCompleted;
      if (event == JobEvent::kCancel) return JobState::kCancelled;
      if (event == JobEvent::kRequeued) return JobState::kPending;
      if (event == JobEvent::kFailedPermanently) return JobState::kFailed;
      if (event == JobEvent::kAttemptFailed) {
        return attempt <= max_retries ? JobState::kPending : JobState::kFailed;
      }
      break;
    default:
      break;
  }
  return Status::FailedPrecondition(std::string("job is ") + JobStateName(from) + "; cannot apply " +
                                    JobEventName(event));
}

}  // namespace kiln::core
