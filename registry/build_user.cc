#include "registry/build_user.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace imgfs {
namespace {

// Up to 9 digits: always fits uid_t/gid_t (a longer one is not a number here).
bool IsNumber(std::string_view s) {
  return !s.empty() && s.size() < 10 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

uint32_t Number(std::string_view s) {
  uint32_t v = 0;
  for (char c : s) v = v * 10 + static_cast<uint32_t>(c - '0');
  return v;
}

// Calls f(fields, count) for each line of the text that is not empty or a comment, with
// its first `N` ':'-separated fields (views into the text; `count` = how many the line
// has, capped at N+1 so "more than N" shows).
template <size_t N, typename F>
void ForEachLine(std::string_view text, F f) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line[0] == '#') continue;
    std::string_view fields[N];
    size_t count = 0;
    for (std::string_view rest = line;; count++) {
      size_t colon = rest.find(':');
      if (count < N) fields[count] = rest.substr(0, colon);
      if (colon == std::string_view::npos || count == N) {
        count++;
        break;
      }
      rest = rest.substr(colon + 1);
    }
    if (!f(fields, count)) return;
  }
}

}  // namespace

Result<RunUser> ResolveUserIn(std::string_view passwd_text, std::string_view group_text,
                              const std::string& user) {
  RunUser u;
  if (user.empty()) return u;
  size_t colon = user.find(':');
  std::string name = user.substr(0, colon);
  std::string group = colon == std::string::npos ? "" : user.substr(colon + 1);
  bool numeric = IsNumber(name);
  // The user's entry: name, uid, gid, home.
  bool found = false;
  std::string entry_name, entry_uid, entry_gid;
  ForEachLine<7>(passwd_text, [&](const std::string_view* f, size_t n) {
    if (n < 7) return true;
    if (numeric ? f[2] != name : f[0] != name) return true;
    found = true;
    entry_name = f[0];
    entry_uid = f[2];
    entry_gid = f[3];
    if (!f[5].empty()) u.home = f[5];
    return false;
  });
  if (numeric) {
    u.uid = Number(name);
  } else if (found && IsNumber(entry_uid)) {
    u.uid = Number(entry_uid);
  } else {
    return Status::InvalidArgument("unable to find user " + name +
                                   ": no matching entries in passwd file");
  }
  if (found && IsNumber(entry_gid)) u.gid = Number(entry_gid);
  if (!group.empty()) {
    if (IsNumber(group)) {
      u.gid = Number(group);
      return u;
    }
    bool got = false;
    ForEachLine<3>(group_text, [&](const std::string_view* f, size_t n) {
      if (n < 3 || f[0] != group || !IsNumber(f[2])) return true;
      u.gid = Number(f[2]);
      got = true;
      return false;
    });
    if (!got) {
      return Status::InvalidArgument("unable to find group " + group +
                                     ": no matching entries in group file");
    }
    return u;
  }
  if (!found) return u;
  // Supplementary groups: those listing the user by name (docker, runc's user package).
  std::set<gid_t> seen = {u.gid};
  Status too_many = Status::Ok();
  ForEachLine<4>(group_text, [&](const std::string_view* f, size_t n) {
    if (n < 4 || !IsNumber(f[2])) return true;
    std::string_view members = f[3];
    while (!members.empty()) {
      size_t comma = members.find(',');
      std::string_view m = members.substr(0, comma);
      members = comma == std::string_view::npos ? std::string_view() : members.substr(comma + 1);
      if (m != entry_name) continue;
      gid_t g = Number(f[2]);
      if (!seen.insert(g).second) break;
      if (u.groups.size() == kMaxRunGroups) {
        too_many =
            Status::InvalidArgument("user " + name + " is in more than " +
                                    std::to_string(kMaxRunGroups) + " groups in the group file");
        return false;
      }
      u.groups.push_back(g);
      break;
    }
    return true;
  });
  if (!too_many.ok()) return too_many;
  return u;
}

}  // namespace imgfs
