#include <catch2/catch.hpp>

#include "scheduler/core/job_state.h"

using namespace kiln::core;

TEST_CASE("a job goes PENDING -> RUNNING -> COMPLETED") {
  CHECK(*NextState(JobState::kPending, JobEvent::kPlaced, 0, 0) == JobState::kRunning);
  CHECK(*NextState(JobState::kRunning, JobEvent::kSucceeded, 1, 0) == JobState::kCompleted);
}

TEST_CASE("a failed attempt is retried while retries remain, then the job FAILS") {
  CHECK(*NextState(JobState::kRunning, JobEvent::kAttemptFailed, 1, 2) == JobState::kPending);
  CHECK(*NextState(JobState::kRunning, JobEvent::kAttemptFailed, 2, 2) == JobState::kPending);
  CHECK(*NextState(JobState::kRunning, JobEvent::kAttemptFailed, 3, 2) == JobState::kFailed);
  CHECK(*NextState(JobState::kRunning, JobEvent::kAttemptFailed, 1, 0) == JobState::kFailed);
}

TEST_CASE("an attempt that failed permanently FAILS the job whatever retries are left") {
  CHECK(*NextState(JobState::kRunning, JobEvent::kFailedPermanently, 1, 5) == JobState::kFailed);
  CHECK_FALSE(NextState(JobState::kPending, JobEvent::kFailedPermanently, 1, 5).ok());
  CHECK_FALSE(NextState(JobState::kFailed, JobEvent::kFailedPermanently, 1, 5).ok());
}

TEST_CASE("pending and running jobs can be cancelled") {
  CHECK(*NextState(JobState::kPending, JobEvent::kCancel, 0, 0) == JobState::kCancelled);
  CHECK(*NextState(JobState::kRunning, JobEvent::kCancel, 1, 0) == JobState::kCancelled);
}

TEST_CASE("terminal states accept no event") {
  for (JobState s : {JobState::kCompleted, JobState::kFailed, JobState::kCancelled}) {
    CHECK(IsTerminal(s));
    for (JobEvent e : {JobEvent::kPlaced, JobEvent::kSucceeded, JobEvent::kAttemptFailed,
                       JobEvent::kCancel}) {
      auto next = NextState(s, e, 1, 5);
      CHECK_FALSE(next.ok());
      CHECK(next.status().code() == kiln::StatusCode::kFailedPrecondition);
    }
  }
}

TEST_CASE("events that do not fit the state are refused") {
  CHECK_FALSE(NextState(JobState::kPending, JobEvent::kSucceeded, 0, 0).ok());
  CHECK_FALSE(NextState(JobState::kPending, JobEvent::kAttemptFailed, 0, 0).ok());
  CHECK_FALSE(NextState(JobState::kRunning, JobEvent::kPlaced, 1, 0).ok());
}

TEST_CASE("state names round-trip") {
  for (JobState s : {JobState::kPending, JobState::kRunning, JobState::kCompleted,
                     JobState::kFailed, JobState::kCancelled}) {
    CHECK(ParseJobState(JobStateName(s)) == s);
  }
  CHECK_FALSE(ParseJobState("SLEEPING").has_value());
}

TEST_CASE("a timed-out job FAILS without retry, a failed dependency fails a pending job") {
  CHECK(*NextState(JobState::kRunning, JobEvent::kTimedOut, 1, 5) == JobState::kFailed);
  CHECK_FALSE(NextState(JobState::kPending, JobEvent::kTimedOut, 0, 5).ok());
  CHECK(*NextState(JobState::kPending, JobEvent::kDependencyFailed, 0, 5) == JobState::kFailed);
  CHECK_FALSE(NextState(JobState::kRunning, JobEvent::kDependencyFailed, 1, 5).ok());
}

TEST_CASE("a requeued running job goes back to PENDING whatever its retries, a pending one cannot "
          "be requeued") {
  CHECK(*NextState(JobState::kRunning, JobEvent::kRequeued, 5, 0) == JobState::kPending);
  CHECK_FALSE(NextState(JobState::kPending, JobEvent::kRequeued, 1, 3).ok());
  CHECK_FALSE(NextState(JobState::kCompleted, JobEvent::kRequeued, 1, 3).ok());
}
