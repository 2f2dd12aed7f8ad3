#include "scheduler/cli/commands.h"

#include <termios.h>
#include <unistd.h>

#include <iostream>

#include "common/config.h"
#include "common/credentials.h"
#include "common/file_util.h"
#include "common/transport/curve.h"
#include "scheduler/cli/cli_common.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

// The token, from a file or stdin (without echo on a terminal), trimmed.
Result<std::string> ReadToken(const std::string& file) {
  std::string token;
  if (!file.empty()) {
    auto text = ReadFile(file);
    if (!text.ok()) return Status::InvalidArgument("--token-file: " + text.status().message());
    token = *text;
  } else {
    const bool tty = ::isatty(STDIN_FILENO);
    termios saved{};
    if (tty) {
      std::cerr << "token: " << std::flush;
      ::tcgetattr(STDIN_FILENO, &saved);
      termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    std::getline(std::cin, token);
    if (tty) {
      ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
      std::cerr << "\n";
    }
  }
  token = TrimWhitespace(token);
  if (!LooksLikeAccessToken(token)) {
    return Status::InvalidArgument("that is not a kiln token (kiln_ and 64 hex digits, as "
                                   "kiln-scheduler user add printed it)");
  }
  return token;
}

}  // namespace

int Commands::Login() {
  auto key = transport::ResolvePublicKey(server_key_);
  if (!key.ok()) return ReportError(Status::InvalidArgument("--server-key: " + key.status().message()));
  auto token = ReadToken(token_file_);
  if (!token.ok()) return ReportError(token.status());
  ClientSettings settings;
  settings.address =
      ResolveSchedulerAddress(login_scheduler_.empty() ? global_.scheduler : login_scheduler_);
  settings.server_key = *key;
  settings.token = *token;
  settings.timeout_ms = static_cast<int>(global_.timeout_s * 1000);
  SchedulerClient client(settings);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::WhoAmIRequest{}));
  if (!reply.ok()) return ReportError(reply.status());
  const std::string user = reply->data.value("user", "");
  const std::string path = CredentialsPath(global_);
  Status saved = SaveCredentials(path, {settings.address, *key, user, *token});
  if (!saved.ok()) return ReportError(saved);
  std::cout << "logged in to " << settings.address << " as " << user
            << (reply->data.value("admin", false) ? " (admin)" : "") << "; credentials in "
            << path << std::endl;
  return 0;
}

int Commands::WhoAmI() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::WhoAmIRequest{}));
  if (!reply.ok()) return ReportError(reply.status());
  if (json_) {
    std::cout << json{{"user", reply->data.value("user", "")},
                      {"admin", reply->data.value("admin", false)},
                      {"scheduler", client.address()}}
                     .dump()
              << std::endl;
    return 0;
  }
  std::cout << reply->data.value("user", "") << (reply->data.value("admin", false) ? " (admin)" : "")
            << " at " << client.address() << std::endl;
  return 0;
}

}  // namespace kiln::cli
