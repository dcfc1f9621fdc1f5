// docker's image filters (cli/image_filter.h).
#include "cli/image_filter.h"

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <ctime>

#include "cli/cli_common.h"
#include "cli/go_template.h"
#include "registry/json.h"

namespace imgfs {

Result<int64_t> ParseGoDuration(const std::string& s) {
  IMGFS_ASSIGN_OR_RETURN(int64_t ns, ParseGoDurationNs(s));
  return ns / 1000000000;
}

Result<int64_t> ParseUntil(const std::string& s, int64_t now) {
  if (auto d = ParseGoDuration(s); d.ok()) return now - *d;
  char* end = nullptr;
  long long t = std::strtoll(s.c_str(), &end, 10);
  if (!s.empty() && *end == '\0') return static_cast<int64_t>(t);
  if (int64_t r = ParseRfc3339(s); r != 0) return r;
  return Status::InvalidArgument("bad time \"" + s +
                                 "\" (a duration like 24h, a Unix time or RFC 3339)");
}

Result<std::map<std::string, std::string>> ImageLabels(const Store& store, const Digest& id) {
  IMGFS_ASSIGN_OR_RETURN(auto bytes, store.blobs().Read(id));
  IMGFS_ASSIGN_OR_RETURN(auto v, TemplateValueFromJson(bytes));
  std::map<std::string, std::string> out;
  const TemplateValue* cfg = v.Find("config");
  const TemplateValue* labels = cfg ? cfg->Find("Labels") : nullptr;
  if (labels && labels->kind() == TemplateValue::Kind::kObject) {
    for (size_t i = 0; i < labels->keys().size(); i++)
      out[labels->keys()[i]] = TemplateValuePrint(labels->items()[i]);
  }
  return out;
}

Status ImageFilter::Parse(const Store& store, const std::vector<std::string>& filters,
                          const std::vector<std::string>& allowed) {
  for (const std::string& f : filters) {
    size_t eq = f.find('=');
    if (eq == std::string::npos)
      return Status::InvalidArgument("bad format of filter \"" + f + "\" (expected name=value)");
    std::string key = f.substr(0, eq), value = f.substr(eq + 1);
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      return Status::InvalidArgument("invalid filter '" + key + "'");
    if (key == "dangling") {
      if (value == "true" || value == "1") {
        dangling_ = 1;
      } else if (value == "false" || value == "0") {
        dangling_ = 0;
      } else {
        return Status::InvalidArgument("invalid filter 'dangling=" + value + "'");
      }
    } else if (key == "before" || key == "since") {
      auto id = ResolveImage(store, value);
      if (!id.ok()) return id.status().WithContext("filter " + key);
      auto img = store.GetImage(*id);
      if (!img.ok()) return img.status().WithContext("filter " + key);
      if (!img->has_value()) return Status::NotFound("filter " + key + ": no such image: " + value);
      int64_t t = (*img)->created_unix;
      if (key == "before") before_ = before_ ? std::min(before_, t) : t;
      if (key == "since") since_ = std::max(since_, t);
    } else if (key == "until") {
      auto t = ParseUntil(value, ::time(nullptr));
      if (!t.ok()) return t.status().WithContext("filter until");
      until_ = *t;
    }
    by_key_[key].push_back(value);
  }
  return Status::Ok();
}

bool ImageFilter::Match(const Store& store, const Digest& id, int64_t created_unix,
                        const std::string& repo, const std::string& tag, bool untagged) const {
  if (dangling_ == 1 && !untagged) return false;
  if (dangling_ == 0 && repo == "<none>") return false;
  if (by_key_.count("before") && created_unix >= before_) return false;
  if (by_key_.count("since") && created_unix <= since_) return false;
  if (by_key_.count("until") && created_unix >= until_) return false;
  if (auto it = by_key_.find("reference"); it != by_key_.end()) {
    if (repo == "<none>") return false;
    bool any = false;
    std::string full = repo + (tag == "<none>" ? "" : ":" + tag);
    for (const std::string& pat : it->second) {
      // path.Match: '*' stops at '/'; the name with its tag, then the name alone.
      if (::fnmatch(pat.c_str(), full.c_str(), FNM_PATHNAME) == 0 ||
          ::fnmatch(pat.c_str(), repo.c_str(), FNM_PATHNAME) == 0)
        any = true;
    }
    if (!any) return false;
  }
  if (auto it = by_key_.find("label"); it != by_key_.end()) {
    auto labels = ImageLabels(store, id);
    if (!labels.ok()) return false;
    for (const std::string& want : it->second) {
      size_t eq = want.find('=');
      std::string k = want.substr(0, eq);
      auto l = labels->find(k);
      if (l == labels->end()) return false;
      if (eq != std::string::npos && l->second != want.substr(eq + 1)) return false;
    }
  }
  return true;
}

}  // namespace imgfs
