#include "scheduler/cli/commands.h"

#include <iostream>

#include "common/config.h"
#include "common/credentials.h"
#include "common/job_array.h"
#include "scheduler/cli/cli_common.h"

namespace kiln::cli {

namespace {
constexpr const char* kJobRefHelp = "job id, or ARRAY_INDEX for a task of an array (12_40)";
}  // namespace

Commands::Commands(CLI::App& app) : app_(app) {
  app.add_option("--scheduler", global_.scheduler,
                 std::string("scheduler address (default: $") + kSchedulerEnvVar + " or " +
                     kDefaultSchedulerAddress + ")");
  app.add_option("--credentials", global_.credentials,
                 std::string("credentials file (default: $") + kCredentialsEnvVar +
                     " or ~/.config/kiln/credentials.json; written by kiln login)");
  app.add_option("--timeout", global_.timeout_s, "seconds to wait for each reply")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.require_subcommand(1);

  login_ = app.add_subcommand("login", "save the scheduler's address and key and your token "
                                      "(read from stdin, never from the command line)");
  login_->add_option("--server-key", server_key_, "the scheduler's public key, or a file holding "
                                                  "it (kiln-scheduler key show)")->required();
  login_->add_option("--scheduler", login_scheduler_,
                     std::string("the scheduler's address, tcp://HOST:PORT (default: kiln's "
                                 "--scheduler, $") + kSchedulerEnvVar + " or " +
                         kDefaultSchedulerAddress + ")");
  login_->add_option("--token-file", token_file_, "read the token from this file instead of stdin");
  whoami_ = app.add_subcommand("whoami", "print the user your token belongs to");
  whoami_->add_flag("--json", json_, "print {\"user\", \"admin\", \"scheduler\"}");

  submit_ = app.add_subcommand("submit", "submit a job spec; prints the new job id");
  submit_->add_option("FILE", file_, "job spec (JSON)")->required();
  submit_->add_flag("--follow,-f", follow_, "follow the job's progress until it ends");
  submit_->add_flag("--json", json_, "print {\"job_id\": N}");
  submit_->add_option("--resume-from", resume_from_,
                      "start from a checkpoint of job ID (its latest, or ID:STEP)");
  submit_->add_flag("--hold", hold_, "queue the job held: it waits until `kiln release`");
  submit_->add_option("--array", array_,
                      "submit an array: one task per index, FIRST-LAST[:STEP] or a list "
                      "(0-999, 0-99:10, 1,5,7-9), %MAX to run at most MAX at once (0-999%8); "
                      "each task's spec has ${array_index} replaced by its index, and its ranks "
                      "get KILN_ARRAY_INDEX");

  sweep_ = app.add_subcommand("sweep",
                              "run a hyperparameter sweep (docs/sweeps.md); prints its id; "
                              "`kiln sweep show ID` prints its leaderboard");
  sweep_->add_option("FILE", file_, "sweep (JSON): base, space, objective, max_trials, ...");
  sweep_->add_flag("--json", json_, "print {\"job_id\": N}");
  sweep_->add_flag("--hold", hold_, "queue the sweep held: it waits until `kiln release`");
  sweep_show_ = sweep_->add_subcommand("show",
                                       "a sweep's trials, best first, and its best "
                                       "checkpoint");
  sweep_show_->add_option("ID", job_ref_, "the sweep's id")->required();
  sweep_show_->add_flag("--json", json_, "print the sweep as JSON");

  queue_ = app.add_subcommand("queue", "list pending and running jobs");
  queue_->add_flag("--all,-a", all_, "include finished jobs");
  queue_->add_flag("--json", json_, "print a JSON array");
  queue_->add_flag("--expand", expand_,
                   "one line per array task that has not started (instead of 12[40-999])");
  queue_->add_option("--user,-u", queue_user_, "only this user's jobs");
  queue_->add_option("--state,-s", queue_states_,
                     "only jobs in these states (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED; "
                     "comma-separated or repeated)")
      ->delimiter(',');

  show_ = app.add_subcommand("show", "show one job: state, reason, metrics, events, checkpoints");
  show_->add_option("ID", job_ref_, kJobRefHelp)->required();
  show_->add_flag("--json", json_, "print a JSON object");
  show_->add_option("--metric", metric_, "print only this metric's latest value (e.g. test_accuracy)");

  metrics_ = app.add_subcommand("metrics",
                                "a job's metrics history: its epoch and training "
                                "reports, kept after it ends");
  metrics_->add_option("ID", job_ref_, kJobRefHelp)->required();
  metrics_->add_flag("--json", json_, "print {job_id, epoch: [...], step: [...]}");

  cancel_ = app.add_subcommand("cancel", "cancel a pending or running job");
  cancel_->add_option("ID", job_ref_, kJobRefHelp)->required();

  logs_ = app.add_subcommand("logs", "print a job's output (all ranks, through mpirun)");
  logs_->add_option("ID", job_ref_, kJobRefHelp)->required();
  logs_->add_flag("--follow,-f", follow_, "keep printing until the job ends");
  logs_->add_flag("--json", json_, "print JSON lines {seq, attempt, time, line}");
  logs_->add_flag("--raw", raw_, "print every line as written, Open MPI's banners included, "
                                 "without attempt markers");
  logs_->add_option("--tail,-n", tail_, "only the last N lines (with -f: then follow)")
      ->check(CLI::NonNegativeNumber);
  logs_->add_option("--since", since_,
                    "only lines written since TIME (\"2026-11-30 13:05\", local time) or for "
                    "the last DURATION (\"10m\", \"2h\")");
  logs_->add_option("--attempt", log_attempt_, "only this attempt's lines")
      ->check(CLI::PositiveNumber);
  logs_->add_option("--rank", log_rank_, "only the lines rank R wrote with its \"[rank R]\" prefix")
      ->check(CLI::NonNegativeNumber);

  nodes_ = app.add_subcommand("nodes", "list workers and their slots");
  nodes_->add_flag("--json", json_, "print a JSON array");

  CLI::App* ckpt = app.add_subcommand("ckpt", "checkpoints of a job");
  ckpt->require_subcommand(1);
  ckpt_ls_ = ckpt->add_subcommand("ls", "list a job's checkpoints");
  ckpt_ls_->add_option("ID", job_ref_, kJobRefHelp)->required();
  ckpt_ls_->add_flag("--json", json_, "print a JSON array of {step, epoch, metrics, bytes, sha256}");
  ckpt_pull_ = ckpt->add_subcommand("pull", "download a checkpoint, verified by its sha256");
  ckpt_pull_->add_option("ID", job_ref_, kJobRefHelp)->required();
  auto* pull_step = ckpt_pull_->add_option("--step", step_, "checkpoint step (default: latest)");
  ckpt_pull_->add_flag("--best", best_, "the best by the job's keep_best metric "
                                        "(default test_accuracy)")->excludes(pull_step);
  ckpt_pull_->add_option("-o,--output-dir", out_dir_, "folder to write into")->capture_default_str();
  ckpt_rm_ = ckpt->add_subcommand("rm", "delete a checkpoint");
  ckpt_rm_->add_option("ID", job_ref_, kJobRefHelp)->required();
  ckpt_rm_->add_option("--step", step_, "checkpoint step")->required();

  hold_cmd_ = app.add_subcommand("hold", "keep a pending job from being scheduled (its owner or an admin)");
  hold_cmd_->add_option("ID", job_ref_, kJobRefHelp)->required();
  release_ = app.add_subcommand("release", "let a held job be scheduled again (its owner or an admin)");
  release_->add_option("ID", job_ref_, kJobRefHelp)->required();
  priority_cmd_ = app.add_subcommand("priority", "set a job's priority, higher goes first (its owner may lower it; only an admin may raise it)");
  priority_cmd_->add_option("ID", job_ref_, kJobRefHelp)->required();
  priority_cmd_->add_option("PRIORITY", priority_, "new priority")->required();
  CLI::App* node = app.add_subcommand("node", "admin: drain, resume or remove a worker node");
  node->require_subcommand(1);
  drain_ = node->add_subcommand("drain", "no new jobs on the node; running jobs finish");
  drain_->add_option("NAME", node_, "node name (see kiln nodes)")->required();
  drain_->add_option("--reason", drain_reason_, "shown by kiln nodes");
  drain_->add_flag("--requeue", requeue_, "also stop the jobs running there now: each saves a "
                                          "checkpoint on SIGTERM and waits to resume elsewhere "
                                          "(no retry is used up)");
  node_resume_ = node->add_subcommand("resume", "let a drained node take jobs again");
  node_resume_->add_option("NAME", node_, "node name")->required();
  node_remove_ = node->add_subcommand("remove", "forget a DOWN node (a retired machine, or one "
                                                "whose key was revoked)");
  node_remove_->add_option("NAME", node_, "node name")->required();

  predict_ = app.add_subcommand("predict", "predict with a job's trained model, or a service");
  auto* predict_job = predict_->add_option("ID", job_ref_, kJobRefHelp);
  predict_
      ->add_option("--service", service_name_,
                   "ask the service's ready replicas (over HTTP) instead of a local model")
      ->excludes(predict_job);
  auto* predict_step = predict_->add_option("--step", step_, "checkpoint step (default: latest)");
  predict_->add_flag("--best", best_, "the best checkpoint by the job's keep_best metric")
      ->excludes(predict_step);
  predict_->add_option("--input", input_, "CSV rows of features, or IDX images (.gz or not)")
      ->required();
  predict_->add_option("--labels", labels_, "true labels (IDX, or one per line) to report accuracy");
  predict_->add_option("--output", output_, "write predictions here instead of stdout");
  predict_->add_flag("--json", json_, "one JSON object per prediction");

  deploy_ = app.add_subcommand("deploy", "serve a job's checkpoint as a live prediction service");
  deploy_
      ->add_option("JOB[:STEP]", model_ref_,
                   "the trained job, and a checkpoint step "
                   "(default: its latest)")
      ->required();
  auto* deploy_name = deploy_->add_option("--name", service_name_,
                                          "the new service's name (the model's name in URLs)");
  deploy_
      ->add_option("--update", update_name_,
                   "roll the existing service NAME to this checkpoint, one replica at a time")
      ->excludes(deploy_name);
  deploy_->add_flag("--best", best_, "the job's best checkpoint by its keep_best metric");
  deploy_->add_option("--replicas", replicas_, "replicas to run (default 1)")
      ->check(CLI::Range(0, 64));
  deploy_
      ->add_option("--cpus-per-replica", cpus_per_replica_, "slots and threads of each (default 1)")
      ->check(CLI::Range(1, 1024));
  deploy_->add_option("--memory-per-replica", memory_per_replica_, "memory of each, like 2G");
  deploy_->add_option("--gpus-per-replica", gpus_per_replica_, "GPUs of each (default 0)")
      ->check(CLI::Range(0, 64));
  deploy_->add_option("--max-batch", max_batch_, "rows per forward pass at most (default 32)")
      ->check(CLI::Range(1, 4096));
  deploy_
      ->add_option("--max-delay-ms", max_delay_ms_,
                   "longest a request waits for others to batch with (default 2)")
      ->check(CLI::Range(0.0, 10000.0));
  deploy_
      ->add_option("--wait", wait_s_,
                   "seconds to wait for every replica to be ready "
                   "(0: return at once)")
      ->capture_default_str();
  deploy_->add_flag("--json", json_, "print the service as JSON");
  undeploy_ = app.add_subcommand("undeploy", "stop a service's replicas and remove it");
  undeploy_->add_option("NAME", service_name_, "service name")->required();
  services_ = app.add_subcommand("services", "list services: state, model, replicas, endpoints");
  services_->add_option("NAME", service_name_, "only this service");
  services_->add_flag("--json", json_, "print a JSON array");
  CLI::App* service = app.add_subcommand("service", "who may call a service");
  service->require_subcommand(1);
  service_grant_ = service->add_subcommand("grant", "let USER call the service with their token");
  service_grant_->add_option("NAME", service_name_, "service name")->required();
  service_grant_->add_option("USER", grant_user_, "user name")->required();
  service_revoke_ = service->add_subcommand("revoke", "stop letting USER call the service");
  service_revoke_->add_option("NAME", service_name_, "service name")->required();
  service_revoke_->add_option("USER", grant_user_, "user name")->required();
  service_token_ = service->add_subcommand(
      "token",
      "print your token for calling the service's replicas (Authorization: Bearer ...); "
      "it opens only that service, never the scheduler");
  service_token_->add_option("NAME", service_name_, "service name")->required();
}

int Commands::RunSelected() {
  if (!job_ref_.empty()) {
    auto ref = ParseJobRef(job_ref_);
    if (!ref) {
      return ReportError(Status::InvalidArgument(
          "ID: expected a job id (12) or an array task (12_40), got \"" + job_ref_ + "\""));
    }
    job_id_ = ref->id;
    array_index_ = ref->index;
    // These act on a task by its index; the others need the task's own job id.
    const bool by_index = show_->parsed() || cancel_->parsed() || hold_cmd_->parsed() ||
                          release_->parsed() || priority_cmd_->parsed();
    if (array_index_ && !by_index) {
      if (int code = ResolveArrayTask(); code != 0) return code;
    }
  }
  if (login_->parsed()) return Login();
  if (whoami_->parsed()) return WhoAmI();
  if (submit_->parsed()) return Submit();
  if (sweep_show_->parsed()) return SweepShow();
  if (sweep_->parsed()) return SweepSubmit();
  if (queue_->parsed()) return Queue();
  if (show_->parsed()) return Show();
  if (metrics_->parsed()) return Metrics();
  if (cancel_->parsed()) return Cancel();
  if (logs_->parsed()) return Logs();
  if (nodes_->parsed()) return Nodes();
  if (ckpt_ls_->parsed()) return CheckpointsList();
  if (ckpt_pull_->parsed()) return CheckpointsPull();
  if (ckpt_rm_->parsed()) return CheckpointsRemove();
  if (predict_->parsed()) return service_name_.empty() ? Predict() : PredictWithService();
  if (deploy_->parsed()) return Deploy();
  if (undeploy_->parsed()) return Undeploy();
  if (services_->parsed()) return Services();
  if (service_grant_->parsed()) return ServiceGrant(false);
  if (service_revoke_->parsed()) return ServiceGrant(true);
  if (service_token_->parsed()) return ServiceToken();
  if (hold_cmd_->parsed()) return JobAdmin("hold");
  if (release_->parsed()) return JobAdmin("release");
  if (priority_cmd_->parsed()) return JobAdmin("priority");
  if (drain_->parsed()) return NodeAdmin(requeue_ ? "drain_requeue" : "drain");
  if (node_resume_->parsed()) return NodeAdmin("resume");
  if (node_remove_->parsed()) return NodeAdmin("remove");
  std::cerr << app_.help();
  return kExitUsage;
}

}  // namespace kiln::cli
