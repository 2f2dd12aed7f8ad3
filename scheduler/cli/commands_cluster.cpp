#include "scheduler/cli/commands.h"

#include <iostream>

#include "scheduler/cli/cli_common.h"
#include "scheduler/cli/output.h"

namespace kiln::cli {

using nlohmann::json;

int Commands::NodeAdmin(const std::string& action) {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(
      client.Call(protocol::NodeAdminRequest{node_, action, drain_reason_}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << "node " << reply->data.value("name", node_) << " "
            << reply->data.value("state", "") << std::endl;
  return 0;
}

int Commands::Nodes() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::NodesRequest{}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << (json_ ? reply->data.dump(2) + "\n" : FormatNodes(reply->data));
  return 0;
}

}  // namespace kiln::cli
