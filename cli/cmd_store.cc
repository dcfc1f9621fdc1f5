// imgfs subcommands. The store: prune, verify.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <simdjson.h>

#include "cli/cli_common.h"
#include "cli/ls_format.h"
#include "fs/fuse_adapter.h"
#include "fs/image_view.h"
#include "fs/unpack_cache.h"
#include "index/lazy_layer.h"
#include "index/seek_index.h"
#include "index/store.h"
#include "registry/credentials.h"
#include "registry/daemon_config.h"
#include "registry/image_loader.h"
#include "registry/json.h"
#include "registry/puller.h"
#include "registry/reference.h"

namespace imgfs {
namespace {

int CmdPrune(const std::string& root, const Args& a) {
  auto store = OpenStore(root);
  auto lock = GcLock::Acquire(*store, true);
  if (!lock.ok()) return Fail(lock.status(), "prune");
  auto live = store->LiveBlobs();
  if (!live.ok()) return Fail(live.status(), "prune");
  auto all = store->blobs().List();
  if (!all.ok()) return Fail(all.status(), "prune");
  uint64_t freed = 0, nblobs = 0, ncache = 0, ningest = 0;
  for (const Digest& d : *all) {
    if (live->count(d)) continue;
    auto sz = store->blobs().Size(d);
    Status st = store->blobs().Delete(d);
    if (!st.ok()) return Fail(st, "prune");
    freed += sz.ok() ? *sz : 0;
    nblobs++;
  }
  auto sweep = [&](const std::string& dir, bool only_stale, uint64_t* count) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return;
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      UniqueFd busy_lock;  // held while a partial file is removed
      if (only_stale && name.rfind("partial-", 0) == 0) {
        // A resumable download's file: removed unless a pull holds its blob lock.
        auto lk = OpenFile(dir + "/locks/" + name.substr(8), O_RDWR | O_CREAT, 0600);
        if (lk.ok() && ::flock(lk->get(), LOCK_EX | LOCK_NB) != 0) continue;
        if (lk.ok()) busy_lock = std::move(*lk);
      } else if (only_stale) {
        // ingest files are "<pid>-…": remove only those whose writer is gone.
        pid_t pid = static_cast<pid_t>(std::atol(name.c_str()));
        if (pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM)) continue;
      }
      struct stat st;
      std::string p = dir + "/" + name;
      if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::unlink(p.c_str()) == 0) {
        freed += static_cast<uint64_t>(st.st_size);
        (*count)++;
      }
    }
    ::closedir(d);
  };
  sweep(store->blobs().IngestDir(), true, &ningest);
  // Unpacked copies in use by another process (flocked) are kept: unpack_cache.h.
  auto unpacked = UnpackCache::Prune(*store);
  if (!unpacked.ok()) return Fail(unpacked.status(), "prune");
  ncache = unpacked->removed;
  freed += unpacked->bytes;
  // Lazy layers (index/lazy_layer.h) no layer names any more, and temp directories of
  // lazy pulls that died.
  if (DIR* d = ::opendir((root + "/lazy").c_str())) {
    std::vector<std::string> gone;
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      auto dg = Digest::FromHex(name);
      if (!dg.ok() || !live->count(*dg)) gone.push_back(name);
    }
    ::closedir(d);
    for (const std::string& name : gone) {
      if (LazyDir{root + "/lazy/" + name}.Remove().ok()) ncache++;
    }
  }
  // Seek indexes whose layer is gone (index/seek_index.h).
  auto seek = PruneSeekIndexes(*store);
  if (!seek.ok()) return Fail(seek.status(), "prune");
  freed += seek->bytes;
  std::printf("Deleted %llu blobs, %llu unpacked layer caches, %llu stale ingest files\n",
              (unsigned long long)nblobs, (unsigned long long)ncache, (unsigned long long)ningest);
  if (seek->removed)
    std::printf("Deleted %llu seek indexes of removed layers\n", (unsigned long long)seek->removed);
  if (unpacked->busy)
    std::printf("Kept %llu unpacked layer caches in use\n", (unsigned long long)unpacked->busy);
  if (a.Has("--compact")) {
    auto shrunk = store->ShrinkTrees();
    if (!shrunk.ok()) return Fail(shrunk.status(), "prune --compact");
    auto index = store->Compact();
    if (!index.ok()) return Fail(index.status(), "prune --compact");
    std::printf("Index: %zu whole trees replaced by root records, %s returned\n", *shrunk,
                HumanSize(static_cast<double>(*index)).c_str());
    freed += *index;
  }
  std::printf("Total reclaimed space: %s\n", HumanSize(static_cast<double>(freed)).c_str());
  return 0;
}

// A compressed layer's seek index (index/seek_index.h): a sidecar that is there must
// match its layer, and every span's value and prefix values must match the blob's
// bytes (SeekIndex::Verify: the whole layer decoded once, what reads would check). With
// repair, a missing or bad one is built from the blob (a missing one is otherwise built
// on first read, so it is not a problem).
// A blob that failed its own hash or size check is reported already (blob_ok false):
// its spans are not checked.
void CheckSeekIndex(const Store& store, const LayerRecord& lr, bool blob_ok, bool repair,
                    std::vector<std::string>* problems, uint64_t* repaired) {
  std::string path = SeekIndexPath(store, lr.diff_id);
  bool there = PathExists(path);
  auto fd = OpenFile(store.blobs().BlobPath(lr.blob), O_RDONLY);
  Status st = Status::NotFound(path);
  if (there) {
    auto idx = SeekIndex::Open(path, lr);
    st = idx.status();
    if (st.ok() && fd.ok() && blob_ok) {
      st = (*idx)->Verify(fd->get());
      if (!st.ok())
        st = Status::Corruption("it does not match its blob, whose digest is right: " +
                                st.message());
    }
  }
  if (st.ok() || (!there && !repair)) return;
  if (!repair) {
    problems->push_back("layer " + lr.diff_id.str() + ": seek index: " + st.message());
    return;
  }
  auto built = fd.ok() ? BuildSeekIndex(lr, fd->get()) : Result<std::string>(fd.status());
  Status w = built.ok() ? WriteSeekIndex(store, lr.diff_id, *built) : built.status();
  if (!w.ok()) {
    problems->push_back("layer " + lr.diff_id.str() + ": seek index not rebuilt: " + w.message());
    return;
  }
  (*repaired)++;
}

int CmdVerify(const std::string& root, const Args& a) {
  auto store = OpenStore(root);
  std::vector<std::string> problems;
  uint64_t repaired = 0;
  auto all = store->blobs().List();
  if (!all.ok()) return Fail(all.status(), "verify");
  std::set<Digest> present(all->begin(), all->end());
  std::set<Digest> bad_blobs;  // unreadable, or hashing to another digest
  std::vector<char> buf(1 << 20);
  for (const Digest& d : *all) {
    auto fd = OpenFile(store->blobs().BlobPath(d), O_RDONLY);
    if (!fd.ok()) {
      problems.push_back("blob " + d.str() + ": " + fd.status().message());
      bad_blobs.insert(d);
      continue;
    }
    Sha256 h;
    Status st;
    for (;;) {
      auto n = ReadSome(fd->get(), buf.data(), buf.size());
      if (!n.ok()) {
        st = n.status();
        break;
      }
      if (*n == 0) break;
      h.Update(buf.data(), *n);
    }
    Digest got = h.Finish();
    if (!st.ok() || !(got == d)) bad_blobs.insert(d);
    if (!st.ok())
      problems.push_back("blob " + d.str() + ": " + st.message());
    else if (!(got == d))
      problems.push_back("blob " + d.str() + ": content hashes to " + got.str());
  }
  auto images = store->ListImages();
  if (!images.ok()) return Fail(images.status(), "verify");
  std::set<std::string> image_ids;
  uint64_t nlayers = 0;
  std::set<std::string> seen_layers;
  for (const ImageRecord& img : *images) {
    image_ids.insert(img.id.hex());
    std::string what = "image " + img.id.Short();
    if (!present.count(img.id)) problems.push_back(what + ": config blob is missing");
    auto md = Digest::Parse(img.manifest_digest);
    if (md.ok() && !present.count(*md))
      problems.push_back(what + ": manifest blob " + md->str() + " is missing");
    for (const Digest& d : img.diff_ids) {
      auto l = store->GetLayer(d);
      if (!l.ok() || !l->has_value()) {
        problems.push_back(what + ": layer " + d.str() + " is not indexed");
        continue;
      }
      if (!seen_layers.insert(d.hex()).second) continue;
      nlayers++;
      const LayerRecord& lr = **l;
      // A lazily pulled layer (index/lazy_layer.h): partial is not a problem (said on
      // stdout), one whose completion found a mismatch is.
      LazyDir lazy = LazyDir::For(store->root(), lr.blob);
      if (lazy.Exists()) {
        std::string why = lazy.BrokenReason();
        if (!why.empty()) {
          problems.push_back("layer " + d.str() + ": " + why);
        } else if (!present.count(lr.blob)) {
          auto ranges = lazy.LoadRanges(lr.blob_size);
          if (!ranges.ok()) {
            problems.push_back("layer " + d.str() +
                               ": lazy range map: " + ranges.status().message());
          } else {
            std::printf("layer %s: partial (lazy pull): %s of %s local\n", d.str().c_str(),
                        HumanSize(static_cast<double>(ranges->Total())).c_str(),
                        HumanSize(static_cast<double>(lr.blob_size)).c_str());
          }
          continue;
        }
      }
      bool blob_ok = present.count(lr.blob) && !bad_blobs.count(lr.blob);
      if (!present.count(lr.blob))
        problems.push_back("layer " + d.str() + ": blob " + lr.blob.str() + " is missing");
      else if (auto sz = store->blobs().Size(lr.blob); sz.ok() && *sz != lr.blob_size) {
        problems.push_back("layer " + d.str() + ": blob size " + std::to_string(*sz) +
                           " != recorded " + std::to_string(lr.blob_size));
        blob_ok = false;
      }
      if (lr.compression != Compression::kNone && present.count(lr.blob))
        CheckSeekIndex(*store, lr, blob_ok, a.Has("--repair"), &problems, &repaired);
      auto entries = store->GetEntries(d);
      if (!entries.ok())
        problems.push_back("layer " + d.str() + ": " + entries.status().message());
      else if (entries->size() != lr.entry_count)
        problems.push_back("layer " + d.str() + ": entry count mismatch");
    }
    auto tree = store->GetTree(img.id);
    if (!tree.ok()) problems.push_back(what + ": " + tree.status().message());
  }
  auto refs = store->ListRefs();
  if (!refs.ok()) return Fail(refs.status(), "verify");
  for (auto& [name, rec] : *refs) {
    if (!image_ids.count(rec.image_id))
      problems.push_back("reference " + name + " names missing image " + rec.image_id);
  }
  for (const std::string& p : problems) std::fprintf(stderr, "imgfs: verify: %s\n", p.c_str());
  if (!problems.empty()) {
    std::fprintf(stderr, "imgfs: verify: %zu problem(s) found\n", problems.size());
    return 1;
  }
  if (repaired) std::printf("Rebuilt %llu seek indexes\n", (unsigned long long)repaired);
  std::printf("store %s is clean: %zu blobs, %zu images, %llu layers, %zu references\n",
              root.c_str(), all->size(), images->size(), (unsigned long long)nlayers, refs->size());
  return 0;
}

}  // namespace

std::vector<Command> StoreCommands() {
  return {
      {"prune",
       "imgfs prune [--compact]",
       "Remove blobs no image uses, unpacked layer caches and stale partial downloads.\n"
       "  --compact          also shrink the index: replace trees stored whole by older\n"
       "                     versions with root records, and rewrite the index file without\n"
       "                     its free pages (refused while a mount or load has the store open)",
       {},
       {},
       CmdPrune},
      {"verify",
       "imgfs verify [--repair]",
       "Re-hash every blob, check every index reference, and decode every compressed\n"
       "layer through its seek index, checking what reads check (fsck). Exit 1 on problems.\n"
       "  --repair   build missing or damaged seek indexes of compressed layers",
       {},
       {},
       CmdVerify},
  };
}

}  // namespace imgfs
