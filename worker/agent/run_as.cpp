#include "worker/agent/run_as.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

extern char** environ;

namespace kiln::agent {

namespace {

// getpwnam_r into `buffer`; false when there is no such account (or the lookup failed).
bool LookUp(const std::string& account, passwd* entry, std::vector<char>* buffer) {
  buffer->assign(16384, '\0');
  passwd* found = nullptr;
  while (true) {
    const int error = ::getpwnam_r(account.c_str(), entry, buffer->data(), buffer->size(), &found);
    if (error == ERANGE && buffer->size() < (1u << 20)) {
      buffer->resize(buffer->size() * 2);
      continue;
    }
    return error == 0 && found != nullptr;
  }
}

}  // namespace

int64_t LookUpUid(const std::string& account) {
  passwd entry;
  std::vector<char> buffer;
  if (!LookUp(account, &entry, &buffer)) return -1;
  return static_cast<int64_t>(entry.pw_uid);
}

std::string OwnAccount() {
  std::vector<char> buffer(16384);
  passwd entry;
  passwd* found = nullptr;
  if (::getpwuid_r(::geteuid(), &entry, buffer.data(), buffer.size(), &found) == 0 &&
      found != nullptr) {
    return entry.pw_name;
  }
  return "uid " + std::to_string(::geteuid());
}

Result<RunAs> ResolveRunAs(const std::string& account, bool allow_root,
                           const std::string& node_name) {
  passwd entry;
  std::vector<char> buffer;
  if (account.empty() || !LookUp(account, &entry, &buffer)) {
    return Status::NotFound("Account: node " + node_name + " has no account " + account);
  }
  RunAs who;
  who.account = account;
  who.uid = entry.pw_uid;
  who.gid = entry.pw_gid;
  who.home = entry.pw_dir != nullptr ? entry.pw_dir : "/";
  who.shell = entry.pw_shell != nullptr ? entry.pw_shell : "/bin/sh";
  if (who.uid == 0 && !allow_root) {
    return Status::PermissionDenied("Account: account " + account + " is uid 0 on node " +
                                    node_name + ", and its user is not allowed root");
  }
  if (::geteuid() != 0 && who.uid != ::geteuid()) {
    return Status::PermissionDenied("Account: the agent of node " + node_name + " runs as " +
                                    OwnAccount() + ", not root, and cannot start jobs as " +
                                    account);
  }
  int count = 64;
  std::vector<gid_t> groups(static_cast<size_t>(count));
  while (::getgrouplist(account.c_str(), who.gid, groups.data(), &count) < 0) {
    if (count > 65536) return Status::Internal("Account: " + account + " has too many groups");
    groups.resize(static_cast<size_t>(count));
  }
  groups.resize(static_cast<size_t>(count));
  who.groups = std::move(groups);
  return who;
}

Status GiveTree(const std::string& dir, const RunAs& who) {
  auto give = [&](const std::string& path) -> Status {
    if (::fchownat(AT_FDCWD, path.c_str(), who.uid, who.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::IoError("cannot give " + path + " to " + who.account + ": " +
                             std::strerror(errno));
    }
    return Status::Ok();
  };
  std::error_code ec;
  // The tree is the agent's own yet (made just now, before any process of the job ran), so a
  // walk that does not follow links cannot be led outside it.
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    KILN_RETURN_IF_ERROR(give(it->path().string()));
  }
  if (ec) return Status::IoError("cannot walk " + dir + ": " + ec.message());
  KILN_RETURN_IF_ERROR(give(dir));
  if (::chmod(dir.c_str(), 0700) != 0) {
    return Status::IoError("cannot chmod " + dir + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

std::vector<std::pair<std::string, std::string>> CleanEnvironment(const RunAs& who) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"HOME", who.home}, {"USER", who.account}, {"LOGNAME", who.account}, {"SHELL", who.shell}};
  if (std::getenv("PATH") == nullptr) env.push_back({"PATH", "/usr/local/bin:/usr/bin:/bin"});
  // What the admin set for the node's tools: where programs and libraries are, the locale, and
  // OpenMPI's settings (an OpenMPI built elsewhere needs its OPAL_/PMIX_ prefixes).
  static const char* const kNames[] = {"PATH", "LD_LIBRARY_PATH", "LANG",          "LC_ALL",
                                       "TZ",   "TMPDIR",          "KILN_LOG_LEVEL"};
  static const char* const kPrefixes[] = {"OMPI_MCA_", "OPAL_", "PMIX_", "HWLOC_"};
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const size_t eq = entry.find('=');
    if (eq == std::string::npos) continue;
    const std::string name = entry.substr(0, eq);
    bool pass = false;
    for (const char* n : kNames) pass = pass || name == n;
    for (const char* p : kPrefixes) pass = pass || name.rfind(p, 0) == 0;
    if (pass) env.push_back({name, entry.substr(eq + 1)});
  }
  return env;
}

}  // namespace kiln::agent
