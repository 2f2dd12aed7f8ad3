// How a service's replicas move towards what its owner asked for: N replicas of one checkpoint.
// Pure: the scheduler calls PlanRollout with the replicas that are live (PENDING or RUNNING jobs
// of the service) after anything changed, and starts and stops what it says.
//
// Rules (a surge of one, never fewer than N ready while the service is healthy, and so never
// fewer than N-1 when one replica fails during a rollout):
//   - fewer than N live: start the missing ones, of the wanted checkpoint;
//   - replicas of an older checkpoint live: when every replica of the wanted one is ready, start
//     one more of it (N+1 live); when N+1 are live and the new ones are all ready, stop one old
//     replica (one that is not ready first, else the oldest); old replicas that are not ready are
//     stopped at once when they hold the surge's place; when the surge replica waits for room
//     (the cluster is full), one ready old replica makes room for it: N-1 ready for a moment;
//   - more than N live, all of the wanted checkpoint: stop the extra ones (not ready first).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::core {

struct ModelRef {
  int64_t job = 0;
  int64_t step = -1;
  bool operator==(const ModelRef& o) const { return job == o.job && step == o.step; }
  bool operator!=(const ModelRef& o) const { return !(*this == o); }
};

struct ReplicaStatus {
  int64_t job_id = 0;
  ModelRef model;
  bool ready = false;             // its model is loaded, warmed up and answering
  bool waiting_for_room = false;  // PENDING, and the last scheduling pass could not place it
  bool on_drained_node = false;   // stopping it frees no room for new work
};

struct RolloutPlan {
  int64_t start = 0;          // new replicas of the wanted checkpoint to create
  std::vector<int64_t> stop;  // replica jobs to stop
  bool rolling = false;       // replicas of another checkpoint are still live
};

RolloutPlan PlanRollout(int64_t replicas, const ModelRef& model,
                        const std::vector<ReplicaStatus>& live);

}  // namespace kiln::core
