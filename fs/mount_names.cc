// The mount's names at one generation (Snapshot), and which image instances the kernel
// still holds under names the store no longer shows (MountFs::StaleNames, HandOut).
#include <algorithm>
#include <ctime>
#include <mutex>
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

// Why a name the kernel caches for a year is never left showing an image the store no
// longer shows there, with no time window. Every atomic below is seq_cst, so all of
// them are in one total order S:
//
//   request (lookup, readdirplus)          mover (whoever swaps in a newer snapshot)
//   builds e from snapshot s, gen g        reads gen G > g from the store, then raises
//   HandOut: handed = true                   latest_generation_ to G, or finds it ≥ G
//            kernel_refs += 1                there: the operation O
//            L = latest_generation_ (R)    StaleNames(snapshot ≥ G): kernel_refs > 0?
//            L > g: settle (below)           not shown? handed.exchange(false)?
//   reply                                    → notify (parent, name)
//
// latest_generation_ only grows, and O wrote or read a value ≥ G. So if R reads less
// than G, R comes before O in S, and both of the request's writes come before
// StaleNames' reads: the mover sees the count and the mark and reports the name. Its
// notification takes the parent's i_rwsem exclusively, which a LOOKUP or getdents
// holds until its reply is linked, so the reply cannot overtake it (a revalidating
// LOOKUP holds no lock, but its dentry exists already: the notification unhashes it,
// and the reply only sets the timeout of an unhashed dentry). If R reads at least G,
// then L > g and the request settles the entry itself: it keeps the long timeout only
// if a snapshot at least as new as L (snap_, no store read) still shows the image
// under that name, since every move past that snapshot has its O after R and reports
// the name as above; otherwise the entry gets the name timeout. A move the watcher
// notices late, or whose snapshot build failed, changes nothing: latest_generation_
// is raised before the build, and the mover that finally swaps runs StaleNames after
// its own O. A snapshot's refs are read after its generation, so it is never older
// than its label. Hence no recheck after a move (there was one for 2 s).
//
// Once per hand-out, not per move: the notification goes by name and drops whatever
// the name is now. A held old instance (an open file or a working directory in it)
// would otherwise invalidate the name's current, correct dentry at every later store
// change (LOOKUP and GETXATTR churn, mounts under it detached). After the
// notification the kernel can show this instance under the name again only through a
// new reply, which marks it again. The mark is per instance rather than "the instance
// last handed out per name": the kernel may link two replies for one name in another
// order than they were built (a readdirplus from an old snapshot after a lookup).
void MountFs::HandOut(Entry* e) {
  // ino = instance << 32 | node (mount_fs.h)
  const Instance* in = GetInstance(static_cast<uint32_t>(e->ino >> 32));
  if (!in) return;  // the namespace (instance 0) and a negative entry are not counted
  if (e->name_root) in->handed.store(true);
  in->kernel_refs.fetch_add(1);
  if (!e->name_root || in->layer || e->entry_timeout <= options_.name_timeout) return;
  uint64_t latest = latest_generation_.load();
  if (e->generation >= latest) return;  // a later move reports it
  std::shared_ptr<const Snapshot> now;
  {
    std::lock_guard<std::mutex> l(snap_mu_);
    now = snap_;
  }
  if (now && now->generation >= latest && now->Shows(in->path, in->image)) return;
  e->entry_timeout = options_.name_timeout;
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
    if (!in->handed.exchange(false)) continue;  // reported since it was last handed out
    size_t slash = in->path.rfind('/');
    out.push_back({in->parent_ino, in->path.substr(slash == std::string::npos ? 0 : slash + 1)});
  }
  return out;
}

}  // namespace imgfs
