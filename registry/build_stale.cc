#include "registry/build_stale.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "fs/mountinfo.h"
#include "registry/build_run.h"

namespace imgfs {
namespace {

// Field 22 of /proc/PID/stat (start time in clock ticks), "" when there is no such pid.
std::string StartTime(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string all;
  if (!std::getline(in, all)) return "";
  size_t paren = all.rfind(')');
  if (paren == std::string::npos) return "";
  std::istringstream ss(all.substr(paren + 2));
  std::string f;
  for (int i = 3; i <= 22 && ss >> f; i++) {
    if (i == 22) return f;
  }
  return "";
}

std::string TmpBase() {
  const char* t = std::getenv("TMPDIR");
  return t && *t ? t : "/var/tmp";
}

}  // namespace

Status MarkBuildDir(const std::string& dir) {
  std::string pid = std::to_string(::getpid());
  std::ofstream f(dir + "/owner", std::ios::trunc);
  f << pid << " " << StartTime(pid) << "\n";
  f.close();
  if (!f) return Status::FromErrno(dir + "/owner");
  return Status::Ok();
}

int CleanStaleBuilds(std::FILE* log) {
  std::string base = TmpBase();
  DIR* d = ::opendir(base.c_str());
  if (!d) return 0;
  std::vector<std::string> dirs;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.rfind("imgfs-build-", 0) == 0) dirs.push_back(base + "/" + n);
  }
  ::closedir(d);
  // The dead builds' directories.
  std::vector<std::pair<std::string, std::string>> dead;  // dir, pid
  for (const auto& dir : dirs) {
    // Only what this user made (mkdtemp: a real directory, ours, 0700). $TMPDIR may be
    // /var/tmp, where anyone can put an imgfs-build-* with an owner file naming a pid
    // (a live build's, to have its container killed) or links for remove_all.
    struct stat st, ost;
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() ||
        (st.st_mode & 077) != 0 || ::lstat((dir + "/owner").c_str(), &ost) != 0 ||
        !S_ISREG(ost.st_mode) || ost.st_uid != ::geteuid()) {
      continue;
    }
    std::ifstream in(dir + "/owner");
    std::string pid, start;
    if (!(in >> pid >> start) || pid.empty() || !std::all_of(pid.begin(), pid.end(), ::isdigit)) {
      continue;  // not ours to judge
    }
    if (StartTime(pid) != start) dead.emplace_back(dir, pid);
  }
  if (dead.empty()) return 0;
  auto table = ReadMountInfo();
  if (!table.ok()) return 0;  // never remove a directory that may hold a mount
  // runc containers of those builds: killed and deleted.
  std::vector<std::string> ids;
  if (DIR* r = ::opendir("/run/runc")) {
    while (struct dirent* e = ::readdir(r)) ids.emplace_back(e->d_name);
    ::closedir(r);
  }
  for (const auto& [dir, pid] : dead) {
    for (const auto& id : ids) {
      if (id.rfind("imgfs-build-" + pid + "-", 0) == 0)
        (void)Spawn({"runc", "delete", "-f", id}, true);
    }
  }
  // What is mounted under them: overlays first (their lower is the store mount), then
  // the build's own store mount.
  std::vector<MountEntry> under;
  for (const auto& m : *table) {
    for (const auto& [dir, pid] : dead) {
      if (m.mount_point.rfind(dir + "/", 0) == 0) under.push_back(m);
    }
  }
  std::stable_sort(under.begin(), under.end(), [](const MountEntry& a, const MountEntry& b) {
    return (a.fstype == kImgfsFsType) < (b.fstype == kImgfsFsType);
  });
  std::vector<std::string> stuck;
  for (const auto& m : under) {
    if (m.fstype == kImgfsFsType) {
      auto rc = Spawn({SelfExe(), "umount", m.mount_point}, true);
      if (rc.ok() && *rc == 0) continue;
    }
    if (::umount2(m.mount_point.c_str(), 0) != 0 &&
        ::umount2(m.mount_point.c_str(), MNT_DETACH) != 0) {
      stuck.push_back(m.mount_point);
    }
  }
  int cleaned = 0;
  for (const auto& [dir, pid] : dead) {
    size_t mounts = 0;
    bool busy = false;
    for (const auto& m : under) mounts += m.mount_point.rfind(dir + "/", 0) == 0;
    for (const auto& p : stuck) busy = busy || p.rfind(dir + "/", 0) == 0;
    if (busy) {
      std::fprintf(log, "imgfs: build: %s of a killed build (pid %s) could not be unmounted\n",
                   dir.c_str(), pid.c_str());
      continue;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::fprintf(log,
                 "imgfs: build: cleaned up after a killed build (pid %s): %s (%zu unmounted)\n",
                 pid.c_str(), dir.c_str(), mounts);
    cleaned++;
  }
  return cleaned;
}

}  // namespace imgfs
