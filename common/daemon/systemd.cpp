#include "common/daemon/systemd.h"

#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/logging.h"

namespace kiln {

void NotifySystemd(const std::string& state) { (void)sd_notify(0, state.c_str()); }

namespace {
// systemd sets JOURNAL_STREAM to "DEV:INODE" of the stream it connected to the journal.
bool StderrIsJournal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  return dev == static_cast<unsigned long long>(st.st_dev) &&
         ino == static_cast<unsigned long long>(st.st_ino);
}
}  // namespace

void InitDaemonLogging(const std::string& component, const std::string& level) {
  InitLogging(component, level);
  if (!StderrIsJournal()) return;
  auto sink = std::make_shared<spdlog::sinks::systemd_sink_mt>(component);
  auto logger = std::make_shared<spdlog::logger>(component, sink);
  logger->set_level(spdlog::default_logger()->level());
  logger->set_pattern("%v");
  spdlog::set_default_logger(logger);
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace kiln
