// The /etc/passwd and /etc/group lookup of `imgfs build` USER and COPY --chown
// (registry/build_user.h) reads files of the base image, which may come from a
// registry. Input: "USER\nPASSWD\0GROUP" (the user spec cut at 64 bytes).
// Properties: no crash; an error is one of the lookup errors; a spec of 1-9 digits is
// that uid; a numeric ":GID" is that gid with no supplementary groups; supplementary
// groups are unique, never the primary gid, at most kMaxRunGroups; a user appended as
// a well-formed line (name absent from the input) is found with its uid, gid and home,
// and a group appended listing it is among its groups; the lookup is deterministic.
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "registry/build_user.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {

bool Digits(std::string_view s) {
  return !s.empty() && s.size() < 10 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void CheckUser(const Result<RunUser>& r) {
  if (!r.ok()) {
    const std::string& m = r.status().message();
    FUZZ_CHECK(m.rfind("unable to find user ", 0) == 0 ||
               m.rfind("unable to find group ", 0) == 0 || m.rfind("user ", 0) == 0);
    return;
  }
  std::set<gid_t> seen(r->groups.begin(), r->groups.end());
  FUZZ_CHECK(seen.size() == r->groups.size());
  FUZZ_CHECK(!seen.count(r->gid));
  FUZZ_CHECK(r->groups.size() <= kMaxRunGroups);
  FUZZ_CHECK(!r->home.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nl = in.find('\n');
  std::string user(in.substr(0, std::min<size_t>(nl, 64)));
  std::string_view files = nl == std::string_view::npos ? "" : in.substr(nl + 1);
  size_t nul = files.find('\0');
  std::string_view passwd = files.substr(0, nul);
  std::string_view group = nul == std::string_view::npos ? "" : files.substr(nul + 1);

  auto r = ResolveUserIn(passwd, group, user);
  CheckUser(r);
  auto again = ResolveUserIn(passwd, group, user);
  FUZZ_CHECK(r.ok() == again.ok());
  if (r.ok()) {
    FUZZ_CHECK(r->uid == again->uid && r->gid == again->gid && r->groups == again->groups &&
               r->home == again->home);
  }
  size_t colon = user.find(':');
  std::string name = user.substr(0, colon);
  if (Digits(name)) {
    bool numeric_group = colon != std::string::npos && Digits(user.substr(colon + 1));
    if (colon == std::string::npos || numeric_group) {
      FUZZ_CHECK(r.ok() && r->uid == std::stoul(name));
    }
    if (numeric_group) {
      FUZZ_CHECK(r->gid == std::stoul(user.substr(colon + 1)) && r->groups.empty());
    }
  }

  // A well-formed user and group appended to the hostile text are found.
  if (passwd.find("fzuser") == std::string_view::npos &&
      group.find("fzuser") == std::string_view::npos &&
      group.find("fzgroup") == std::string_view::npos) {
    uint32_t uid = size * 7919 % 1000000, gid = size % 60000, extra = gid + 1;
    std::string p(passwd), g(group);
    p += "\nfzuser:x:" + std::to_string(uid) + ":" + std::to_string(gid) + "::/fz/home:/bin/sh\n";
    g += "\nfzgroup:x:" + std::to_string(extra) + ":a,fzuser,b\n";
    auto u = ResolveUserIn(p, g, "fzuser");
    CheckUser(u);
    FUZZ_CHECK(u.ok() && u->uid == uid && u->gid == gid && u->home == "/fz/home");
    FUZZ_CHECK(std::count(u->groups.begin(), u->groups.end(), extra) == 1 ||
               u->groups.size() == kMaxRunGroups);
    auto ug = ResolveUserIn(p, g, "fzuser:fzgroup");
    FUZZ_CHECK(ug.ok() && ug->uid == uid && ug->gid == extra && ug->groups.empty());
  }
  return 0;
}
