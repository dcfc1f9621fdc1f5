// The mount's names at one generation (Snapshot), and which image instances the kernel
// still holds under names the store no longer shows (MountFs::StaleNames).
#include <algorithm>
#include <ctime>
#include <set>

#include "fs/mount_fs.h"
#include "index/file_util.h"
#include "index/json_writer.h"
#include "index/names.h"

namespace imgfs {

std::shared_ptr<const Snapshot> Snapshot::Build(
    const std::vector<std::pair<std::string, std::string>>& refs, const std::vector<Digest>& images,
    uint64_t generation, const struct timespec& not_before) {
  auto s = std::make_shared<Snapshot>();
  s->generation = generation;
  ::clock_gettime(CLOCK_REALTIME, &s->built_at);
  if (s->built_at.tv_sec < not_before.tv_sec ||
      (s->built_at.tv_sec == not_before.tv_sec && s->built_at.tv_nsec <= not_before.tv_nsec)) {
    s->built_at = not_before;  // strictly later than the snapshot it replaces
    if (++s->built_at.tv_nsec == 1000000000) {
      s->built_at.tv_nsec = 0;
      s->built_at.tv_sec++;
    }
  }
  s->dirs[""];
  struct Leaf {
    std::string dir, name;
    Digest image;
  };
  std::vector<Leaf> leaves;
  std::map<std::string, std::map<std::string, std::string>> repos;  // familiar → name → id
  for (const auto& [ref, id_hex] : refs) {
    auto id = Digest::FromHex(id_hex);
    if (!id.ok()) continue;
    RefParts parts = SplitCanonicalRef(ref);
    std::string fam = FamiliarizeName(parts.name);
    std::string dir;
    for (std::string_view comp : SplitPath(fam)) {
      std::string child = dir.empty() ? std::string(comp) : dir + "/" + std::string(comp);
      s->dirs[dir].try_emplace(std::string(comp), Child{false, Digest(), child});
      s->dirs[child];
      dir = child;
    }
    leaves.push_back({dir, parts.leaf, *id});
    repos[fam][fam + (parts.is_digest ? "@" : ":") + parts.leaf] = id->str();
  }
  // Tags (and digests) go in last: a tag shadows a same-named sub-repository.
  for (const Leaf& l : leaves) {
    s->dirs[l.dir].insert_or_assign(l.name, Child{true, l.image, l.dir + "/" + l.name});
  }
  s->images = images;
  std::sort(s->images.begin(), s->images.end());
  JsonWriter w;
  w.BeginObject().Key("Repositories").BeginObject();
  for (const auto& [repo, names] : repos) {
    w.Key(repo).BeginObject();
    for (const auto& [n, id] : names) w.Key(n).String(id);
    w.EndObject();
  }
  w.EndObject().EndObject();
  s->repositories_json = w.str() + "\n";
  return s;
}

const Digest* Snapshot::ResolveId(std::string_view prefix) const {
  if (prefix.size() < 12 || prefix.size() > 64 || !IsLowerHex(prefix)) return nullptr;
  auto it = std::lower_bound(images.begin(), images.end(), prefix,
                             [](const Digest& d, std::string_view n) { return d.hex() < n; });
  if (it == images.end() || it->hex().compare(0, prefix.size(), prefix) != 0) return nullptr;
  if (it + 1 != images.end() && (it + 1)->hex().compare(0, prefix.size(), prefix) == 0) {
    return nullptr;  // ambiguous prefix
  }
  return &*it;
}

bool Snapshot::Shows(const std::string& path, const Digest& image) const {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash);
  std::string name = path.substr(slash == std::string::npos ? 0 : slash + 1);
  if (dir == ".id") {
    const Digest* id = ResolveId(name);
    return id && *id == image;
  }
  auto d = dirs.find(dir);
  if (d == dirs.end()) return false;
  auto c = d->second.find(name);
  return c != d->second.end() && c->second.is_image && c->second.image == image;
}

std::vector<MountFs::StaleName> MountFs::StaleNames(const Snapshot& snap) {
  std::vector<StaleName> out;
  uint32_t n = instance_count_.load(std::memory_order_acquire);
  for (uint32_t i = 1; i < n; i++) {
    const Instance* in = slots_[i].load(std::memory_order_acquire);
    if (in->kernel_refs.load() <= 0) continue;  // no dentry of it in the kernel
    bool shown;
    if (in->layer) {
      auto rec = store_->GetLayer(in->image);
      shown = !rec.ok() || *rec;  // an unreadable store: leave the kernel's entry alone
    } else {
      shown = snap.Shows(in->path, in->image);
    }
    if (shown) continue;
    size_t slash = in->path.rfind('/');
    out.push_back({in->parent_ino, in->path.substr(slash == std::string::npos ? 0 : slash + 1)});
  }
  return out;
}

}  // namespace imgfs
