// The kiln CLI's subcommands. Each returns the process exit code: 0 success, 1 the operation
// failed (job failed, not found), 2 bad usage or input, 3 scheduler unreachable, 4 refused (not
// logged in, a wrong token or server key, or not allowed on that job).
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::cli {

class SchedulerClient;

struct GlobalOptions {
  std::string scheduler;    // empty: $KILN_SCHEDULER, the credentials file, or the default
  std::string credentials;  // empty: $KILN_CREDENTIALS or ~/.config/kiln/credentials.json
  double timeout_s = 5.0;
};

// Adds every subcommand to `app`; after parsing, RunSelected runs the chosen one.
class Commands {
 public:
  explicit Commands(CLI::App& app);
  int RunSelected();

 private:
  int Login();
  int WhoAmI();
  int Submit();
  int SweepSubmit();  // commands_sweeps.cpp
  int SweepShow();
  int Queue();
  int Show();
  int Metrics();
  int Cancel();
  int Logs();
  int Nodes();
  int CheckpointsList();
  int CheckpointsPull();
  int CheckpointsRemove();
  int Predict();
  int PredictWithService();
  // Replaces this process with kiln-predict: `model_args` (the model: a checkpoint, or a
  // service's replicas), then --input and the output options given.
  int RunPredict(std::vector<std::string> model_args);
  int Deploy();
  int Undeploy();
  int Services();
  int ServiceGrant(bool revoke);
  int ServiceToken();
  int JobAdmin(const std::string& action);
  int NodeAdmin(const std::string& action);
  // The step chosen by --step / --best (-1: the latest).
  Result<int64_t> ChosenStep(SchedulerClient& client);
  int Follow(int64_t job_id);

  CLI::App& app_;
  GlobalOptions global_;
  std::string file_;
  // Resolves "ARRAY_INDEX" to the task's own job id (it must have started).
  int ResolveArrayTask();
  std::string job_ref_;  // the ID argument: "12" or "12_40"
  int64_t job_id_ = 0;
  std::optional<int64_t> array_index_;
  std::string array_;
  bool expand_ = false;
  bool follow_ = false;
  bool json_ = false;
  bool all_ = false;
  bool raw_ = false;
  std::string queue_user_;
  std::vector<std::string> queue_states_;
  int64_t tail_ = -1;  // -1: all lines
  std::string since_;
  int64_t log_attempt_ = 0;
  int64_t log_rank_ = -1;
  std::string metric_;
  std::string resume_from_;
  int64_t step_ = -1;
  bool best_ = false;
  bool hold_ = false;
  bool requeue_ = false;
  int64_t priority_ = 0;
  std::string node_, drain_reason_;
  std::string out_dir_ = ".";
  std::string input_, labels_, output_;
  // Services (commands_services.cpp).
  std::string service_name_, update_name_, model_ref_, grant_user_, memory_per_replica_;
  int64_t replicas_ = -1, cpus_per_replica_ = 0, gpus_per_replica_ = -1, max_batch_ = 0;
  double max_delay_ms_ = -1;
  double wait_s_ = 300;
  CLI::App* deploy_;
  CLI::App* undeploy_;
  CLI::App* services_;
  CLI::App* service_grant_;
  CLI::App* service_revoke_;
  CLI::App* service_token_;
  std::string server_key_, token_file_, login_scheduler_;
  CLI::App* login_;
  CLI::App* whoami_;
  CLI::App* submit_;
  CLI::App* sweep_;
  CLI::App* sweep_show_;
  CLI::App* queue_;
  CLI::App* show_;
  CLI::App* metrics_;
  CLI::App* cancel_;
  CLI::App* logs_;
  CLI::App* nodes_;
  CLI::App* ckpt_ls_;
  CLI::App* ckpt_pull_;
  CLI::App* ckpt_rm_;
  CLI::App* predict_;
  CLI::App* hold_cmd_;
  CLI::App* release_;
  CLI::App* priority_cmd_;
  CLI::App* drain_;
  CLI::App* node_resume_;
  CLI::App* node_remove_;
};

}  // namespace kiln::cli
