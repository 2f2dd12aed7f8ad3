// What the daemons do for systemd (libsystemd): readiness and reload notices for Type=notify
// units, and logs straight to the journal, with priorities, when systemd runs them.
#pragma once

#include <string>

namespace kiln {

// sd_notify(state) when NOTIFY_SOCKET is set (a Type=notify unit); nothing otherwise.
void NotifySystemd(const std::string& state);

// InitLogging, and when stderr is the journal (JOURNAL_STREAM names it) logs go to the journal
// through sd_journal with each line's priority, without kiln's own timestamps.
void InitDaemonLogging(const std::string& component, const std::string& level);

}  // namespace kiln
