// Helpers shared by the CLI's subcommand files: exit codes, error reporting, and the client
// settings resolved from flags, the environment and the credentials file.
#pragma once

#include <string>

#include "common/status.h"
#include "scheduler/cli/commands.h"
#include "scheduler/cli/scheduler_client.h"

namespace kiln::cli {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr int kExitRefused = 4;

// Prints "kiln: <message>" to stderr and returns the exit code for the status.
int ReportError(const Status& status);
void SleepMs(int ms);
std::string CredentialsPath(const GlobalOptions& g);
// Address: --scheduler, $KILN_SCHEDULER, the credentials file, the default. Server key:
// $KILN_SERVER_KEY (a key or a file), else the credentials file. Token: the credentials file.
ClientSettings ResolveSettings(const GlobalOptions& g);
SchedulerClient MakeClient(const GlobalOptions& g);

}  // namespace kiln::cli
