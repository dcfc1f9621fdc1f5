// docker's `images --filter` and `image prune --filter` (dangling=, reference=, before=,
// since=, label=, until=), matched against one listing row at a time.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "index/status.h"
#include "index/store.h"

namespace imgfs {

class ImageFilter {
 public:
  // Parses KEY=VALUE filters; `allowed` lists the keys the command takes. Filters with
  // the same key are alternatives (reference=a or reference=b); different keys all
  // hold. InvalidArgument naming the filter on an unknown key or a bad value.
  Status Parse(const Store& store, const std::vector<std::string>& filters,
               const std::vector<std::string>& allowed = {"dangling", "reference", "before",
                                                          "since", "label"});
  bool empty() const { return by_key_.empty(); }
  // One row: the image, its repository and tag ("<none>" when absent), and whether
  // the image has no tag at all.
  bool Match(const Store& store, const ImageRecord& img, const std::string& repo,
             const std::string& tag, bool untagged) const {
    return Match(store, img.id, img.created_unix, repo, tag, untagged);
  }
  // The same, for the image `id` created at `created_unix`.
  bool Match(const Store& store, const Digest& id, int64_t created_unix, const std::string& repo,
             const std::string& tag, bool untagged) const;

 private:
  std::map<std::string, std::vector<std::string>> by_key_;
  int64_t before_ = 0, since_ = 0, until_ = 0;
  int dangling_ = -1;  // -1: not given
};

// Go's time.ParseDuration ("1h30m", "10s", "-2h"); seconds.
Result<int64_t> ParseGoDuration(const std::string& s);
// docker's --filter until=: a duration before now, a Unix time, or an RFC 3339 time.
Result<int64_t> ParseUntil(const std::string& s, int64_t now);
// An image's config labels (its "config"."Labels"), empty when it has none.
Result<std::map<std::string, std::string>> ImageLabels(const Store& store, const Digest& id);

}  // namespace imgfs
