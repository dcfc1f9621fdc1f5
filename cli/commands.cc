// imgfs subcommands. Each command: parse its flags, open the store, call the model,
// print. Errors: one line "imgfs: <what>: <why>" on stderr, exit 1 (2 for usage).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
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

#include "cli/ls_format.h"
#include "fs/fuse_adapter.h"
#include "fs/image_view.h"
#include "fs/unpack_cache.h"
#include "index/store.h"
#include "registry/credentials.h"
#include "registry/daemon_config.h"
#include "registry/image_loader.h"
#include "registry/json.h"
#include "registry/puller.h"
#include "registry/reference.h"

namespace imgfs {
namespace {

struct Args {
  std::vector<std::string> pos;
  std::map<std::string, std::string>
      opts;  // "--flag" → value ("" for booleans), the last one given
  std::multimap<std::string, std::string> all;  // every value of every flag
  std::vector<std::string> Multi(const std::string& f) const {
    std::vector<std::string> v;
    for (auto [it, end] = all.equal_range(f); it != end; ++it) v.push_back(it->second);
    return v;
  }
  bool Has(const std::string& f) const { return opts.count(f) > 0; }
  std::string Get(const std::string& f, const std::string& def = "") const {
    auto it = opts.find(f);
    return it == opts.end() ? def : it->second;
  }
};

struct Command {
  const char* name;
  const char* usage;
  const char* summary;
  std::vector<std::string> value_flags;  // flags that take a value
  std::map<std::string, std::string> aliases;
  std::function<int(const std::string& root, const Args&)> run;
};

[[noreturn]] void Die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "imgfs: %s\n", msg.c_str());
  std::exit(code);
}

int Fail(const Status& st, const std::string& context = "") {
  std::fprintf(stderr, "imgfs: %s\n",
               (context.empty() ? st : st.WithContext(context)).message().c_str());
  return 1;
}

std::string DefaultRoot() {
  if (const char* e = std::getenv("IMGFS_ROOT"); e && *e) return e;
  if (::geteuid() == 0) return "/var/lib/imgfs";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/imgfs";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/share/imgfs";
}

std::unique_ptr<Store> OpenStore(const std::string& root) {
  auto s = Store::Open(root);
  if (!s.ok()) Die(s.status().message());
  return std::move(*s);
}

// "3 weeks ago", as docker's units.HumanDuration.
std::string HumanSince(int64_t t) {
  int64_t s = ::time(nullptr) - t;
  if (s < 1) return "Less than a second ago";
  if (s == 1) return "1 second ago";
  if (s < 60) return std::to_string(s) + " seconds ago";
  int64_t m = s / 60, h = s / 3600;
  if (m == 1) return "About a minute ago";
  if (m < 60) return std::to_string(m) + " minutes ago";
  if (h == 1) return "About an hour ago";
  if (h < 48) return std::to_string(h) + " hours ago";
  if (h < 24 * 7 * 2) return std::to_string(h / 24) + " days ago";
  if (h < 24 * 30 * 2) return std::to_string(h / 24 / 7) + " weeks ago";
  if (h < 24 * 365 * 2) return std::to_string(h / 24 / 30) + " months ago";
  return std::to_string(h / 24 / 365) + " years ago";
}

// "4.26MB", as docker's units.HumanSizeWithPrecision(size, 3) (decimal units).
std::string HumanSize(double v) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  int i = 0;
  while (v >= 1000 && i < 5) {
    v /= 1000;
    i++;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g%s", v, units[i]);
  return buf;
}

// Resolves what a user typed to an image: a reference first, then an ID (prefix).
Result<Digest> ResolveImage(const Store& store, const std::string& s) {
  bool pinned = s.rfind("sha256:", 0) == 0;  // "sha256:<hex prefix>" is always an ID
  std::string hex = pinned ? s.substr(7) : s;
  bool may_be_id = !hex.empty() && hex.size() <= 64 && IsLowerHex(hex);
  // Result: the one image whose ID starts with hex, NotFound, or ambiguous.
  auto by_prefix = [&]() -> Result<Digest> {
    IMGFS_ASSIGN_OR_RETURN(auto ids, store.FindImagesByPrefix(hex));
    if (ids.size() > 1) return Status::InvalidArgument("ambiguous image ID prefix " + s);
    if (ids.empty()) return Status::NotFound("no such image: " + s);
    return ids[0];
  };
  auto ref = ParseDockerRef(s);
  if (may_be_id && (pinned || !ref.ok())) return by_prefix();
  if (!ref.ok()) return ref.status();
  // docker's order: a name first, then an ID prefix ("abc" may be both).
  IMGFS_ASSIGN_OR_RETURN(auto rec, store.GetRef(ref->String()));
  if (rec) return Digest::FromHex(rec->image_id);
  if (may_be_id) return by_prefix();
  return Status::NotFound("no such image: " + s);
}

// Names of each image, split into tags and digests.
struct Names {
  std::vector<Reference> tags, digests;
};
Result<std::map<std::string, Names>> NamesByImage(const Store& store) {
  IMGFS_ASSIGN_OR_RETURN(auto refs, store.ListRefs());
  std::map<std::string, Names> out;
  for (auto& [name, rec] : refs) {
    auto r = ParseReference(name);
    if (!r.ok()) continue;
    (r->digest.empty() ? out[rec.image_id].tags : out[rec.image_id].digests).push_back(*r);
  }
  return out;
}

// --------------------------------------------------------------------------------

int CmdLoad(const std::string& root, const Args& a) {
  if (a.pos.size() != 1 && !a.Has("--input"))
    Die("load: want exactly one FILE or DIR (see imgfs load --help)", 2);
  std::string path = a.Has("--input") ? a.Get("--input") : a.pos[0];
  auto store = OpenStore(root);
  LoadOptions opt;
  opt.repository = a.Get("--name");
  if (!opt.repository.empty()) {
    auto r = ParseReference(opt.repository);
    if (!r.ok() || !r->tag.empty() || !r->digest.empty())
      Die("load: --name wants a repository without tag");
  }
  bool quiet = a.Has("--quiet");
  // Progress goes to stdout like docker's, and only to a terminal: stderr stays for
  // the one error line, and scripts see only the "Loaded image" lines.
  if (!quiet && ::isatty(STDOUT_FILENO)) {
    opt.progress = [](const std::string& l) {
      std::printf("%s\n", l.c_str());
      std::fflush(stdout);
    };
  }
  auto out = LoadImages(*store, path, opt);
  if (!out.ok()) return Fail(out.status(), "load");
  for (const LoadedImage& img : *out) {
    if (img.names.empty()) {
      std::printf("Loaded image ID: %s\n", img.id.str().c_str());
      if (!quiet && !opt.repository.empty()) continue;
    }
    for (const std::string& n : img.names) {
      auto r = ParseReference(n);
      std::printf("Loaded image: %s\n", r.ok() ? r->FamiliarString().c_str() : n.c_str());
    }
  }
  return 0;
}

int CmdImport(const std::string& root, const Args& a) {
  if (a.pos.size() != 2) Die("import: want TARBALL REFERENCE (see imgfs import --help)", 2);
  auto ref = ParseDockerRef(a.pos[1]);
  if (!ref.ok()) return Fail(ref.status(), "import");
  if (!ref->digest.empty()) Die("import: the reference must be a tag, not a digest");
  auto store = OpenStore(root);
  auto out = ImportRootfs(*store, a.pos[0], *ref, LoadOptions{});
  if (!out.ok()) return Fail(out.status(), "import");
  std::printf("%s\n", out->id.str().c_str());
  return 0;
}

int CmdImages(const std::string& root, const Args& a) {
  auto store = OpenStore(root);
  auto images = store->ListImages();
  if (!images.ok()) return Fail(images.status(), "images");
  auto names = NamesByImage(*store);
  if (!names.ok()) return Fail(names.status(), "images");
  std::sort(images->begin(), images->end(), [](const ImageRecord& x, const ImageRecord& y) {
    return x.created_unix != y.created_unix ? x.created_unix > y.created_unix : x.id < y.id;
  });
  std::string filter_repo, filter_tag;
  if (!a.pos.empty()) {
    auto r = ParseReference(a.pos[0]);
    if (!r.ok()) return Fail(r.status(), "images");
    filter_repo = r->Name();
    filter_tag = r->tag;
  }
  bool digests = a.Has("--digests"), no_trunc = a.Has("--no-trunc"), quiet = a.Has("--quiet");
  std::string format = a.Get("--format", "table");
  if (format != "table" && format != "json") Die("images: --format is table or json", 2);
  struct Row {
    std::string repo, tag, digest;
    const ImageRecord* img;
  };
  std::vector<Row> rows;
  for (const ImageRecord& img : *images) {
    const Names& n = (*names)[img.id.hex()];
    std::set<std::string> repos_with_tag;
    for (const Reference& t : n.tags) {
      std::string dg;
      for (const Reference& d : n.digests) {
        if (d.Name() == t.Name()) dg = d.digest;
      }
      rows.push_back({t.FamiliarName(), t.tag, dg, &img});
      repos_with_tag.insert(t.Name());
    }
    for (const Reference& d : n.digests) {
      if (!repos_with_tag.count(d.Name()))
        rows.push_back({d.FamiliarName(), "<none>", d.digest, &img});
    }
    if (n.tags.empty() && n.digests.empty() && filter_repo.empty())
      rows.push_back({"<none>", "<none>", "", &img});
  }
  if (!filter_repo.empty()) {
    std::erase_if(rows, [&](const Row& r) {
      auto ref = ParseReference(r.repo);
      return !ref.ok() || ref->Name() != filter_repo ||
             (!filter_tag.empty() && r.tag != filter_tag);
    });
  }
  auto id_of = [&](const ImageRecord& img) { return no_trunc ? img.id.str() : img.id.Short(); };
  if (quiet) {
    std::set<std::string> seen;
    for (const Row& r : rows) {
      if (seen.insert(r.img->id.hex()).second) std::printf("%s\n", id_of(*r.img).c_str());
    }
    return 0;
  }
  if (format == "json") {
    for (const Row& r : rows) {
      JsonWriter w;
      w.BeginObject();
      w.Key("Repository").String(r.repo).Key("Tag").String(r.tag);
      w.Key("Digest").String(r.digest.empty() ? "<none>" : r.digest);
      w.Key("ID").String(id_of(*r.img));
      w.Key("CreatedAt").String(r.img->created);
      w.Key("CreatedSince")
          .String(r.img->created.empty() ? "N/A" : HumanSince(r.img->created_unix));
      w.Key("Size").String(HumanSize(static_cast<double>(r.img->size)));
      w.Key("VirtualSize").Uint(r.img->size);
      w.EndObject();
      std::printf("%s\n", w.str().c_str());
    }
    return 0;
  }
  std::vector<std::vector<std::string>> table;
  std::vector<std::string> head = {"REPOSITORY", "TAG"};
  if (digests) head.push_back("DIGEST");
  for (const char* h : {"IMAGE ID", "CREATED", "SIZE"}) head.push_back(h);
  table.push_back(head);
  for (const Row& r : rows) {
    std::vector<std::string> row = {r.repo, r.tag};
    if (digests) row.push_back(r.digest.empty() ? "<none>" : r.digest);
    row.push_back(id_of(*r.img));
    row.push_back(r.img->created.empty() ? "N/A" : HumanSince(r.img->created_unix));
    row.push_back(HumanSize(static_cast<double>(r.img->size)));
    table.push_back(row);
  }
  std::vector<size_t> width(head.size(), 0);
  for (auto& row : table) {
    for (size_t i = 0; i < row.size(); i++) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (auto& row : table) {
    std::string line;
    for (size_t i = 0; i < row.size(); i++) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 3, ' ');
    }
    out += line + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

// Indents compact JSON (strings are copied verbatim).
std::string PrettyJson(const std::string& in) {
  std::string out;
  int depth = 0;
  bool in_str = false;
  auto nl = [&] { out += "\n" + std::string(depth * 4, ' '); };
  for (size_t i = 0; i < in.size(); i++) {
    char c = in[i];
    if (in_str) {
      out += c;
      if (c == '\\')
        out += in[++i];
      else if (c == '"')
        in_str = false;
      continue;
    }
    switch (c) {
      case '"':
        in_str = true;
        out += c;
        break;
      case '{':
      case '[':
        if (i + 1 < in.size() && (in[i + 1] == '}' || in[i + 1] == ']')) {
          out += c;
          out += in[++i];
          break;
        }
        out += c;
        depth++;
        nl();
        break;
      case '}':
      case ']':
        depth--;
        nl();
        out += c;
        break;
      case ',':
        out += c;
        nl();
        break;
      case ':':
        out += ": ";
        break;
      default:
        out += c;
    }
  }
  return out;
}

int CmdInspect(const std::string& root, const Args& a) {
  if (a.pos.empty()) Die("inspect: want at least one IMAGE", 2);
  auto store = OpenStore(root);
  auto names = NamesByImage(*store);
  if (!names.ok()) return Fail(names.status(), "inspect");
  JsonWriter w;
  w.BeginArray();
  for (const std::string& s : a.pos) {
    auto id = ResolveImage(*store, s);
    if (!id.ok()) return Fail(id.status(), "inspect");
    auto view = ImageView::Open(*store, *id);
    if (!view.ok()) return Fail(view.status(), "inspect " + s);
    const ImageRecord& img = (*view)->image();
    auto cfg_bytes = store->blobs().Read(img.id);
    if (!cfg_bytes.ok()) return Fail(cfg_bytes.status(), "inspect " + s);
    auto cfg = ParseConfig(*cfg_bytes);
    if (!cfg.ok()) return Fail(cfg.status(), "inspect " + s);
    const Names& n = (*names)[img.id.hex()];
    w.BeginObject();
    w.Key("Id").String(img.id.str());
    w.Key("RepoTags").BeginArray();
    for (const Reference& t : n.tags) w.String(t.FamiliarString());
    w.EndArray();
    w.Key("RepoDigests").BeginArray();
    for (const Reference& d : n.digests) w.String(d.FamiliarString());
    w.EndArray();
    w.Key("Created").String(img.created);
    w.Key("Os").String(img.os);
    w.Key("Architecture").String(img.architecture);
    if (!img.variant.empty()) w.Key("Variant").String(img.variant);
    w.Key("Size").Uint(img.size);
    w.Key("Config").Raw(cfg->config_json);
    w.Key("RootFS").BeginObject().Key("Type").String("layers").Key("Layers").BeginArray();
    for (const Digest& d : img.diff_ids) w.String(d.str());
    w.EndArray().EndObject();
    w.Key("Manifest").String(img.manifest_digest);
    w.Key("Layers").BeginArray();
    for (const LayerRecord& l : (*view)->layers()) {
      w.BeginObject();
      w.Key("Digest").String(l.blob.str()).Key("DiffID").String(l.diff_id.str());
      w.Key("MediaType").String(l.media_type).Key("Size").Uint(l.blob_size);
      w.Key("UncompressedSize").Uint(l.size).Key("Entries").Uint(l.entry_count);
      w.EndObject();
    }
    w.EndArray();
    w.Key("Metadata")
        .BeginObject()
        .Key("AddedAt")
        .String(FormatRfc3339(img.added_unix))
        .EndObject();
    w.EndObject();
  }
  w.EndArray();
  std::printf("%s\n", PrettyJson(w.str()).c_str());
  return 0;
}

int CmdTag(const std::string& root, const Args& a) {
  if (a.pos.size() != 2) Die("tag: want SOURCE_IMAGE TARGET_IMAGE[:TAG]", 2);
  auto dst = ParseDockerRef(a.pos[1]);
  if (!dst.ok()) return Fail(dst.status(), "tag");
  if (!dst->digest.empty()) Die("tag: refusing to create a tag with a digest reference");
  auto store = OpenStore(root);
  auto id = ResolveImage(*store, a.pos[0]);
  if (!id.ok()) return Fail(id.status(), "tag");
  Status st = store->SetRef(dst->String(), RefRecord{id->hex(), ""});
  if (!st.ok()) return Fail(st, "tag");
  return 0;
}

Status DeleteBlobs(const Store& store, const std::vector<Digest>& freed) {
  IMGFS_ASSIGN_OR_RETURN(auto live, store.LiveBlobs());
  for (const Digest& d : freed) {
    if (live.count(d)) continue;
    IMGFS_RETURN_IF_ERROR(store.blobs().Delete(d));
    ::unlink(store.UnpackedPath(d).c_str());
  }
  return Status::Ok();
}

int CmdRmi(const std::string& root, const Args& a) {
  if (a.pos.empty()) Die("rmi: want at least one IMAGE", 2);
  auto store = OpenStore(root);
  auto lock = GcLock::Acquire(*store, true);
  if (!lock.ok()) return Fail(lock.status(), "rmi");
  bool force = a.Has("--force");
  int rc = 0;
  for (const std::string& s : a.pos) {
    auto id = ResolveImage(*store, s);
    if (!id.ok()) {
      rc = Fail(id.status(), "rmi");
      continue;
    }
    auto names = NamesByImage(*store);
    if (!names.ok()) return Fail(names.status(), "rmi");
    const Names& n = (*names)[id->hex()];
    std::string hex = s.rfind("sha256:", 0) == 0 ? s.substr(7) : s;
    auto as_ref = ParseDockerRef(s);
    bool by_name = false;
    if (as_ref.ok()) {
      auto rec = store->GetRef(as_ref->String());
      by_name = rec.ok() && rec->has_value();
    }
    if (by_name) {
      // docker's rule (moby ImageDelete): remove the name; when it was a tag and no other
      // tag of that repository is left, the repository's digest references go with it.
      // Only when no name at all is left is the image deleted.
      std::vector<Reference> also;  // digest references removed with the tag
      bool other_tag_in_repo = false;
      for (auto& t : n.tags) {
        if (t.String() != as_ref->String() && t.Name() == as_ref->Name()) other_tag_in_repo = true;
      }
      if (as_ref->digest.empty() && !other_tag_in_repo) {
        for (auto& d : n.digests) {
          if (d.Name() == as_ref->Name()) also.push_back(d);
        }
      }
      size_t left = n.tags.size() + n.digests.size() - 1 - also.size();
      if (left > 0) {
        Status st = store->DeleteRef(as_ref->String());
        for (auto& d : also) {
          if (st.ok()) st = store->DeleteRef(d.String());
        }
        if (!st.ok()) return Fail(st, "rmi");
        std::printf("Untagged: %s\n", as_ref->FamiliarString().c_str());
        for (auto& d : also) std::printf("Untagged: %s\n", d.FamiliarString().c_str());
        continue;
      }
    }
    if (!by_name) {
      std::set<std::string> repos;
      for (auto& t : n.tags) repos.insert(t.Name());
      for (auto& d : n.digests) repos.insert(d.Name());
      if (repos.size() > 1 && !force) {
        rc = Fail(Status::InvalidArgument(
                      "conflict: unable to delete " + id->Short() +
                      " (must be forced) - image is referenced in multiple repositories"),
                  "rmi");
        continue;
      }
    }
    for (auto& t : n.tags) std::printf("Untagged: %s\n", t.FamiliarString().c_str());
    for (auto& d : n.digests) std::printf("Untagged: %s\n", d.FamiliarString().c_str());
    auto freed = store->DeleteImage(*id);
    if (!freed.ok()) return Fail(freed.status(), "rmi");
    Status st = DeleteBlobs(*store, *freed);
    if (!st.ok()) return Fail(st, "rmi");
    std::printf("Deleted: %s\n", id->str().c_str());
  }
  return rc;
}

int CmdLs(const std::string& root, const Args& a) {
  if (a.pos.empty() || a.pos.size() > 2) Die("ls: want IMAGE [PATH]", 2);
  auto store = OpenStore(root);
  auto id = ResolveImage(*store, a.pos[0]);
  if (!id.ok()) return Fail(id.status(), "ls");
  auto view = ImageView::Open(*store, *id);
  if (!view.ok()) return Fail(view.status(), "ls");
  std::string path = a.pos.size() > 1 ? a.pos[1] : "/";
  std::string format = a.Get("--format", "ls");
  if (format != "ls" && format != "tsv") Die("ls: --format is ls or tsv", 2);
  UnpackCache cache(*store);
  LsOptions o;
  o.longfmt = a.Has("--long");
  o.recursive = a.Has("--recursive");
  o.tsv = format == "tsv";
  o.sha = a.Has("--sha256");
  // Quoted as GNU ls does: shell-escape on a terminal, backslash escapes otherwise.
  o.quoting = ::isatty(STDOUT_FILENO) ? NameQuoting::kShellEscape : NameQuoting::kEscape;
  bool follow = !o.longfmt || (!path.empty() && path.back() == '/');
  auto n = (*view)->tree().Resolve(path, follow);
  if (!n.ok()) return Fail(n.status(), "ls " + path);
  if (*n == 0) return Fail(Status::NotFound("no such file or directory"), "ls " + path);
  Status st = ListTree(**view, cache, *n, path, o, stdout);
  if (!st.ok()) return Fail(st, "ls");
  return 0;
}

int CmdCat(const std::string& root, const Args& a) {
  if (a.pos.size() < 2) Die("cat: want IMAGE PATH...", 2);
  auto store = OpenStore(root);
  auto id = ResolveImage(*store, a.pos[0]);
  if (!id.ok()) return Fail(id.status(), "cat");
  auto view = ImageView::Open(*store, *id);
  if (!view.ok()) return Fail(view.status(), "cat");
  UnpackCache cache(*store);
  std::vector<char> buf(1 << 20);
  for (size_t i = 1; i < a.pos.size(); i++) {
    auto n = (*view)->tree().Resolve(a.pos[i], true);
    if (!n.ok()) return Fail(n.status(), "cat " + a.pos[i]);
    if (*n == 0) return Fail(Status::NotFound("no such file or directory"), "cat " + a.pos[i]);
    if (!S_ISREG((*view)->tree().node(*n).mode))
      return Fail(Status::InvalidArgument("not a regular file"), "cat " + a.pos[i]);
    uint64_t off = 0;
    for (;;) {
      auto got = (*view)->Read(cache, *n, buf.data(), buf.size(), off);
      if (!got.ok()) return Fail(got.status(), "cat " + a.pos[i]);
      if (*got == 0) break;
      if (std::fwrite(buf.data(), 1, *got, stdout) != *got)
        return Fail(Status::FromErrno("write"), "cat");
      off += *got;
    }
  }
  return 0;
}

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
      if (only_stale) {
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
  std::printf("Deleted %llu blobs, %llu unpacked layer caches, %llu stale ingest files\n",
              (unsigned long long)nblobs, (unsigned long long)ncache, (unsigned long long)ningest);
  if (unpacked->busy)
    std::printf("Kept %llu unpacked layer caches in use\n", (unsigned long long)unpacked->busy);
  std::printf("Total reclaimed space: %s\n", HumanSize(static_cast<double>(freed)).c_str());
  return 0;
}

int CmdVerify(const std::string& root, const Args& a) {
  auto store = OpenStore(root);
  std::vector<std::string> problems;
  auto all = store->blobs().List();
  if (!all.ok()) return Fail(all.status(), "verify");
  std::set<Digest> present(all->begin(), all->end());
  std::vector<char> buf(1 << 20);
  for (const Digest& d : *all) {
    auto fd = OpenFile(store->blobs().BlobPath(d), O_RDONLY);
    if (!fd.ok()) {
      problems.push_back("blob " + d.str() + ": " + fd.status().message());
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
      if (!present.count(lr.blob))
        problems.push_back("layer " + d.str() + ": blob " + lr.blob.str() + " is missing");
      else if (auto sz = store->blobs().Size(lr.blob); sz.ok() && *sz != lr.blob_size) {
        problems.push_back("layer " + d.str() + ": blob size " + std::to_string(*sz) +
                           " != recorded " + std::to_string(lr.blob_size));
      }
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
  std::printf("store %s is clean: %zu blobs, %zu images, %llu layers, %zu references\n",
              root.c_str(), all->size(), images->size(), (unsigned long long)nlayers, refs->size());
  return 0;
}

// "64M", "2G", "1048576" → bytes.
Result<uint64_t> ParseSize(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || v < 0) return Status::InvalidArgument("bad size \"" + s + "\"");
  std::string unit = end;
  double mult = 1;
  if (unit == "k" || unit == "K" || unit == "KiB")
    mult = 1024.0;
  else if (unit == "m" || unit == "M" || unit == "MiB")
    mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "G" || unit == "GiB")
    mult = 1024.0 * 1024 * 1024;
  else if (!unit.empty())
    return Status::InvalidArgument("bad size unit in \"" + s + "\"");
  return static_cast<uint64_t>(v * mult);
}

int CmdMount(const std::string& root, const Args& a) {
  if (a.pos.size() != 1) Die("mount: want MOUNTPOINT (see imgfs mount --help)", 2);
  MountOptions o;
  o.root = root;
  o.mountpoint = a.pos[0];
  o.foreground = a.Has("--foreground");
  std::string opts = a.Get("--options");
  size_t i = 0;
  while (i < opts.size()) {
    size_t j = opts.find(',', i);
    if (j == std::string::npos) j = opts.size();
    std::string opt = opts.substr(i, j - i);
    i = j + 1;
    std::string key = opt.substr(0, opt.find('='));
    std::string val = opt.find('=') == std::string::npos ? "" : opt.substr(opt.find('=') + 1);
    if (opt.empty() || opt == "ro" || opt == "default_permissions" || opt == "nosuid" ||
        opt == "nodev" || opt == "exec") {
      continue;
    } else if (opt == "rw") {
      Die("mount: imgfs mounts are read-only (option rw)");
    } else if (opt == "allow_other") {
      o.allow_other = true;
    } else if (opt == "allow_root") {
      o.allow_root = true;
    } else if (opt == "suid") {
      o.suid = true;
    } else if (opt == "dev") {
      o.dev = true;
    } else if (opt == "noexec") {
      o.noexec = true;
    } else if (opt == "debug") {
      o.debug = o.foreground = true;
    } else if (key == "cache_size") {
      auto n = ParseSize(val);
      if (!n.ok()) Die("mount: cache_size: " + n.status().message(), 2);
      o.cache_size = *n;
    } else if (key == "open") {
      if (val != "kernel" && val != "daemon") Die("mount: open is kernel or daemon", 2);
      o.kernel_open_free = val == "kernel";
    } else if (key == "name_timeout") {
      o.name_timeout = std::atof(val.c_str());
    } else {
      Die("mount: unknown option \"" + opt + "\" (see imgfs mount --help)", 2);
    }
  }
  if (!IsDirectory(o.mountpoint) && !IsDeadFuseMount(o.mountpoint))  // RunMount clears it
    Die("mount: " + o.mountpoint + ": not a directory");
  return RunMount(o);
}

int CmdUmount(const std::string&, const Args& a) {
  if (a.pos.size() != 1) Die("umount: want MOUNTPOINT", 2);
  return RunUnmount(a.pos[0], a.Has("--lazy"));
}

// Registry options from flags and ROOT/config.json ({"registry-mirrors": [...],
// "insecure-registries": [...]}, the keys of docker's daemon.json).
RegistryOptions RegistryOptionsFor(const std::string& root, const Args& a) {
  RegistryOptions o;
  auto cfg = ReadFileToString(root + "/config.json", 1 << 20);
  if (cfg.ok()) ApplyDaemonConfig(*cfg, &o);
  // Flags before config.json's list, in the order given (the first is tried first).
  std::vector<std::string> flag_mirrors = a.Multi("--registry-mirror");
  o.mirrors.insert(o.mirrors.begin(), flag_mirrors.begin(), flag_mirrors.end());
  for (const std::string& h : a.Multi("--insecure-registry")) o.insecure_registries.push_back(h);
  // Stall and connect deadlines (docs/threat-model.md): a transfer slower than
  // IMGFS_LOW_SPEED_LIMIT bytes/s (1024) for IMGFS_LOW_SPEED_TIME s (30) fails and is
  // retried; a connection takes at most IMGFS_CONNECT_TIMEOUT s (30).
  auto env_long = [](const char* name, long* out) {
    const char* v = std::getenv(name);
    if (v && *v) {
      char* end = nullptr;
      long n = std::strtol(v, &end, 10);
      if (*end || n < 1) Die(std::string(name) + ": want a positive integer", 2);
      *out = n;
    }
  };
  env_long("IMGFS_LOW_SPEED_LIMIT", &o.low_speed_limit);
  env_long("IMGFS_LOW_SPEED_TIME", &o.low_speed_seconds);
  env_long("IMGFS_CONNECT_TIMEOUT", &o.connect_timeout);
  return o;
}

// docker-style pull progress: on a terminal one line per layer, redrawn in place; in
// a pipe one line per status change.
class PullDisplay {
 public:
  explicit PullDisplay(bool tty) : tty_(tty) {}
  void Event(const PullEvent& e) {
    auto it = std::find_if(lines_.begin(), lines_.end(), [&](auto& l) { return l.first == e.id; });
    std::string text = e.id + ": " + e.status;
    if (e.status == "Downloading" && e.total) {
      int width = 50,
          done =
              static_cast<int>(width * std::min<double>(1.0, double(e.current) / double(e.total)));
      text += " [" + std::string(done > 0 ? done - 1 : 0, '=') + (done > 0 ? ">" : "") +
              std::string(width - done, ' ') + "] " + HumanSize(double(e.current)) + "/" +
              HumanSize(double(e.total));
    }
    if (!tty_) {
      if (e.status != "Downloading" && e.status != "Verifying Checksum")
        std::printf("%s\n", text.c_str());
      std::fflush(stdout);
      return;
    }
    if (it == lines_.end()) {
      lines_.emplace_back(e.id, text);
      std::printf("%s\n", text.c_str());
    } else {
      it->second = text;
      size_t up = lines_.end() - it;
      std::printf("\x1b[%zuA\x1b[2K%s\x1b[%zuB\r", up, text.c_str(), up);
    }
    std::fflush(stdout);
  }

 private:
  bool tty_;
  std::vector<std::pair<std::string, std::string>> lines_;
};

int CmdPull(const std::string& root, const Args& a) {
  if (a.pos.size() != 1) Die("pull: want exactly one NAME[:TAG|@DIGEST]", 2);
  auto ref = ParseReference(a.pos[0]);
  if (!ref.ok()) return Fail(ref.status(), "pull");
  PullOptions opt;
  opt.registry = RegistryOptionsFor(root, a);
  if (a.Has("--platform")) {
    auto p = ParsePlatform(a.Get("--platform"));
    if (!p.ok()) return Fail(p.status(), "pull");
    opt.platform = *p;
  }
  if (a.Has("--max-concurrent-downloads")) {
    opt.max_concurrent_downloads = std::atoi(a.Get("--max-concurrent-downloads").c_str());
    if (opt.max_concurrent_downloads < 1)
      Die("pull: --max-concurrent-downloads must be at least 1", 2);
  }
  bool quiet = a.Has("--quiet");
  std::string format = a.Get("--format", "text");
  if (format != "text" && format != "json") Die("pull: --format is text or json", 2);
  Reference norm = ref->Normalized();
  PullDisplay display(::isatty(STDOUT_FILENO));
  if (!quiet && format == "text") {
    std::printf(
        "%s: Pulling from %s\n", norm.digest.empty() ? norm.tag.c_str() : norm.digest.c_str(),
        norm.path.substr(0, norm.domain == "docker.io" ? std::string::npos : std::string::npos)
            .c_str());
    std::fflush(stdout);
    opt.on_event = [&](const PullEvent& e) { display.Event(e); };
  }
  auto store = OpenStore(root);
  auto r = Pull(*store, *ref, opt);
  if (!r.ok()) return Fail(r.status(), "pull");
  std::string status = r->up_to_date ? "Image is up to date for " : "Downloaded newer image for ";
  if (format == "json") {
    JsonWriter w;
    w.BeginObject().Key("Reference").String(r->ref.String()).Key("Digest").String(r->repo_digest);
    w.Key("ImageID")
        .String(r->image_id.str())
        .Key("Status")
        .String(r->up_to_date ? "up to date" : "downloaded");
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  } else if (quiet) {
    std::printf("%s\n", r->ref.String().c_str());
  } else {
    std::printf("Digest: %s\nStatus: %s%s\n%s\n", r->repo_digest.c_str(), status.c_str(),
                r->ref.FamiliarString().c_str(), r->ref.String().c_str());
  }
  return 0;
}

int CmdLogin(const std::string& root, const Args& a) {
  std::string host = a.pos.empty() ? "docker.io" : a.pos[0];
  if (a.pos.size() > 1) Die("login: want at most one SERVER", 2);
  for (const char* scheme : {"https://", "http://"}) {
    if (host.rfind(scheme, 0) == 0) host = host.substr(std::strlen(scheme));
  }
  while (!host.empty() && host.back() == '/') host.pop_back();
  if (host == "index.docker.io" || host == "registry-1.docker.io") host = "docker.io";
  Credentials c;
  c.username = a.Get("--username");
  if (a.Has("--password-stdin")) {
    std::getline(std::cin, c.secret);
  } else {
    c.secret = a.Get("--password");
  }
  if (c.username.empty() || c.secret.empty()) {
    Die("login: want --username and --password or --password-stdin (credentials are never prompted "
        "for here)",
        2);
  }
  RegistryClient client(host, RegistryOptionsFor(root, a));
  Status st = client.Ping(c);
  if (!st.ok()) return Fail(st, "login");
  st = StoreCredentials(host, c);
  if (!st.ok()) return Fail(st, "login");
  std::printf("Login Succeeded\n");
  return 0;
}

int CmdLogout(const std::string&, const Args& a) {
  std::string host = a.pos.empty() ? "docker.io" : a.pos[0];
  Status st = EraseCredentials(host);
  if (st.IsNotFound()) {
    std::printf("Not logged in to %s\n", host.c_str());
    return 0;
  }
  if (!st.ok()) return Fail(st, "logout");
  std::printf("Removing login credentials for %s\n", CredentialKey(host).c_str());
  return 0;
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> cmds = {
      {"pull",
       "imgfs pull [--platform OS/ARCH[/VARIANT]] [-q] [--format text|json] NAME[:TAG|@DIGEST]",
       "Pull an image from a registry, verify it and index it (nothing is unpacked).\n"
       "  --platform P                  pick P from a multi-platform image (default: this host)\n"
       "  --max-concurrent-downloads N  layers downloaded at once (default 3)\n"
       "  --insecure-registry HOST      allow plain HTTP for HOST (localhost and 127.0.0.0/8 "
       "always may)\n"
       "  --registry-mirror URL         try URL first for docker.io (also ROOT/config.json "
       "\"registry-mirrors\")\n"
       "  -q, --quiet                   print only the reference\n"
       "  --format json                 one JSON object at the end\n"
       "Credentials: imgfs login, or docker's config.json ($DOCKER_CONFIG, ~/.docker).\n"
       "A transfer slower than $IMGFS_LOW_SPEED_LIMIT bytes/s (1024) for $IMGFS_LOW_SPEED_TIME s\n"
       "(30) fails and is retried; connecting takes at most $IMGFS_CONNECT_TIMEOUT s (30).",
       {"--platform", "--max-concurrent-downloads", "--insecure-registry", "--registry-mirror",
        "--format"},
       {{"-q", "--quiet"}},
       CmdPull},
      {"login",
       "imgfs login [-u USER] [-p PASSWORD | --password-stdin] [SERVER]",
       "Check credentials against a registry and store them in docker's config.json (mode 0600),\n"
       "or through its credential helper when credsStore or credHelpers names one.\n"
       "  -u, --username USER\n  -p, --password PASSWORD\n  --password-stdin   read the password "
       "from stdin\n"
       "  --insecure-registry HOST",
       {"--username", "--password", "--insecure-registry"},
       {{"-u", "--username"}, {"-p", "--password"}},
       CmdLogin},
      {"logout",
       "imgfs logout [SERVER]",
       "Remove stored credentials for a registry.",
       {},
       {},
       CmdLogout},
      {"load",
       "imgfs load [--name REPO] [-q] FILE|DIR",
       "Load images from a docker-archive or OCI archive (tar, .tar.gz, .tar.zst) or an OCI layout "
       "directory.\n"
       "  -i, --input FILE   read from FILE (same as the argument)\n"
       "  --name REPO        repository for OCI entries whose ref name is only a tag\n"
       "  -q, --quiet        no progress lines",
       {"--input", "--name"},
       {{"-i", "--input"}, {"-q", "--quiet"}},
       CmdLoad},
      {"import",
       "imgfs import TARBALL REPOSITORY[:TAG]",
       "Create a one-layer image from a rootfs tarball (plain, gzip or zstd). Prints the image ID.",
       {},
       {},
       CmdImport},
      {"images",
       "imgfs images [--digests] [--no-trunc] [-q] [--format table|json] [REPOSITORY[:TAG]]",
       "List local images, as docker images does.\n"
       "  --digests          show digests\n"
       "  --no-trunc         full image IDs\n"
       "  -q, --quiet        only image IDs\n"
       "  --format FORMAT    table (default) or json (one object per line)",
       {"--format"},
       {{"-q", "--quiet"}, {"-a", "--all"}},
       CmdImages},
      {"inspect",
       "imgfs inspect IMAGE...",
       "Print details of images as a JSON array.",
       {"--format"},
       {},
       CmdInspect},
      {"tag",
       "imgfs tag SOURCE_IMAGE TARGET_IMAGE[:TAG]",
       "Create a name TARGET_IMAGE that refers to SOURCE_IMAGE.",
       {},
       {},
       CmdTag},
      {"rmi",
       "imgfs rmi [-f] IMAGE...",
       "Remove names; an image whose last name goes is removed with the layers and blobs only it "
       "used.\n"
       "  -f, --force        remove an image named in several repositories",
       {},
       {{"-f", "--force"}},
       CmdRmi},
      {"ls",
       "imgfs ls [-l] [-R] [--format ls|tsv] [--sha256] IMAGE [PATH]",
       "List a directory of an image's merged tree without mounting it.\n"
       "  -l, --long         long format (mode, links, uid, gid, size, mtime UTC)\n"
       "  -R, --recursive    list subdirectories recursively\n"
       "  --format tsv       one line per entry: type mode uid gid size mtime nlink inode dev link "
       "sha256 xattrs path\n"
       "  --sha256           with tsv: the SHA-256 of each regular file's content (unpacks "
       "layers)\n"
       "Names: on a terminal, names that need it are quoted for the shell as GNU ls does\n"
       "('a b', 'a'$'\\n''b'); otherwise (and in tsv) bytes below 0x20, DEL and backslash are\n"
       "C-escaped (\\\\ \\t \\n \\r \\a \\b \\f \\v, else \\NNN octal): a tab or newline in the\n"
       "output is always a separator.",
       {"--format"},
       {{"-l", "--long"}, {"-R", "--recursive"}},
       CmdLs},
      {"cat",
       "imgfs cat IMAGE PATH...",
       "Print files of an image (layers are unpacked on demand).",
       {},
       {},
       CmdCat},
      {"mount",
       "imgfs mount [-f] [-o OPTIONS] MOUNTPOINT",
       "Show every image of the store as a read-only directory tree (FUSE).\n"
       "  -f, --foreground   stay in the foreground and log to stderr (default: daemon, log in "
       "ROOT/mount.log)\n"
       "  -o OPTIONS         comma-separated: allow_other, allow_root, suid, dev, noexec, debug,\n"
       "                     cache_size=SIZE (unpack cache limit, e.g. 2G), name_timeout=SECONDS,\n"
       "                     open=kernel|daemon (kernel: no open round trips, the default)\n"
       "Defaults: ro,nosuid,nodev,default_permissions. Layout: REPO/TAG/, REPO/sha256:DIGEST/,\n"
       ".id/IMAGE_ID/ (12+ hex digit prefixes resolve), .repositories.json.",
       {"--options"},
       {{"-f", "--foreground"}, {"-o", "--options"}},
       CmdMount},
      {"umount",
       "imgfs umount [-z] MOUNTPOINT",
       "Unmount an imgfs mount.\n  -z, --lazy         detach now, clean up when no longer busy",
       {},
       {{"-z", "--lazy"}},
       CmdUmount},
      {"prune",
       "imgfs prune",
       "Remove blobs no image uses, unpacked layer caches and stale partial downloads.",
       {},
       {},
       CmdPrune},
      {"verify",
       "imgfs verify",
       "Re-hash every blob and check every index reference (fsck). Exit 1 on problems.",
       {},
       {},
       CmdVerify},
  };
  return cmds;
}

// Whether the help text names `flag` as a whole word ("--dig" is not "--digests").
bool NamedInHelp(const std::string& text, const std::string& flag) {
  auto word = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-'; };
  for (size_t at = text.find(flag); at != std::string::npos; at = text.find(flag, at + 1)) {
    size_t end = at + flag.size();
    if ((at == 0 || !word(text[at - 1])) && (end == text.size() || !word(text[end]))) return true;
  }
  return false;
}

void TopHelp(FILE* f) {
  std::fprintf(f,
               "Usage: imgfs [--root DIR] COMMAND [OPTIONS]\n\n"
               "Container images in a verified local store, browsable as plain directories.\n\n"
               "Global options:\n"
               "  -g, --root, --graph DIR   store location (env IMGFS_ROOT; default /var/lib/imgfs "
               "for root,\n"
               "                            $XDG_DATA_HOME/imgfs otherwise)\n"
               "  -v, --version             print the version\n"
               "  -h, --help                this help\n\nCommands:\n");
  for (const Command& c : Commands()) {
    std::string first = c.summary;
    first = first.substr(0, first.find('\n'));
    std::fprintf(f, "  %-9s %s\n", c.name, first.c_str());
  }
  std::fprintf(f, "\nRun 'imgfs COMMAND --help' for more on a command.\n");
}

}  // namespace

int Main(int argc, char** argv) {
  std::string root;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    if (s == "--root" || s == "-g" || s == "--graph") {
      if (i + 1 >= argc) Die(s + " needs a directory", 2);
      root = argv[++i];
    } else if (s.rfind("--root=", 0) == 0 || s.rfind("--graph=", 0) == 0) {
      root = s.substr(s.find('=') + 1);
    } else {
      rest.push_back(s);
    }
  }
  if (rest.empty() || rest[0] == "-h" || rest[0] == "--help" || rest[0] == "help") {
    TopHelp(rest.empty() ? stderr : stdout);
    return rest.empty() ? 2 : 0;
  }
  if (rest[0] == "-v" || rest[0] == "--version" || rest[0] == "version") {
    std::printf("imgfs version %s\n", IMGFS_VERSION);
    return 0;
  }
  if (root.empty()) root = DefaultRoot();
  for (const Command& c : Commands()) {
    if (rest[0] != c.name) continue;
    Args a;
    bool only_pos = false;
    for (size_t i = 1; i < rest.size(); i++) {
      std::string s = rest[i];
      if (only_pos || s == "-" || s.empty() || s[0] != '-') {
        a.pos.push_back(s);
        continue;
      }
      if (s == "--") {
        only_pos = true;
        continue;
      }
      if (s == "-h" || s == "--help") {
        std::printf("Usage: %s\n\n%s\n", c.usage, c.summary);
        return 0;
      }
      std::string value;
      bool has_value = false;
      if (size_t eq = s.find('='); s.rfind("--", 0) == 0 && eq != std::string::npos) {
        value = s.substr(eq + 1);
        s = s.substr(0, eq);
        has_value = true;
      }
      std::vector<std::string> flags;
      if (auto al = c.aliases.find(s); al != c.aliases.end()) {
        flags.push_back(al->second);
      } else if (s.rfind("--", 0) != 0 && s.size() > 2) {  // -lR
        for (size_t k = 1; k < s.size(); k++) {
          auto al2 = c.aliases.find(std::string("-") + s[k]);
          if (al2 == c.aliases.end())
            Die(c.name + std::string(": unknown flag -") + s[k] + " (see --help)", 2);
          flags.push_back(al2->second);
        }
      } else {
        flags.push_back(s);
      }
      for (const std::string& f : flags) {
        bool takes =
            std::find(c.value_flags.begin(), c.value_flags.end(), f) != c.value_flags.end();
        bool known = takes ||
                     std::any_of(c.aliases.begin(), c.aliases.end(),
                                 [&](auto& p) { return p.second == f; }) ||
                     NamedInHelp(c.summary, f) || NamedInHelp(c.usage, f);
        if (!known)
          Die(std::string(c.name) + ": unknown flag " + f + " (see imgfs " + c.name + " --help)",
              2);
        if (!takes && has_value) Die(std::string(c.name) + ": " + f + " takes no value", 2);
        if (takes && !has_value) {
          if (i + 1 >= rest.size()) Die(std::string(c.name) + ": " + f + " needs a value", 2);
          value = rest[++i];
        }
        a.opts[f] = value;
        a.all.emplace(f, value);
      }
    }
    return c.run(root, a);
  }
  Die("unknown command \"" + rest[0] + "\" (see imgfs --help)", 2);
}

}  // namespace imgfs
