#include "registry/builder.h"

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <simdjson.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <optional>
#include <set>

#include "fs/image_view.h"
#include "index/file_util.h"
#include "index/json_writer.h"
#include "index/layer_writer.h"
#include "registry/build_files.h"
#include "registry/build_run.h"
#include "registry/build_stale.h"
#include "registry/builder_internal.h"
#include "registry/committer.h"
#include "registry/config_fields.h"
#include "registry/dockerfile.h"
#include "registry/image_loader.h"
#include "registry/json.h"

namespace imgfs {
namespace build_detail {

using namespace build_files;  // NOLINT: the context/staging helpers

std::vector<std::string> StringsOf(std::string_view json) {
  std::vector<std::string> out;
  if (json.empty()) return out;
  simdjson::dom::parser p;
  simdjson::dom::array arr;
  if (p.parse(json.data(), json.size()).get(arr) != simdjson::SUCCESS) return out;
  for (auto el : arr) {
    std::string_view s;
    if (el.get(s) == simdjson::SUCCESS) out.emplace_back(s);
  }
  return out;
}

std::string StringOf(const std::string* json) {
  if (!json) return "";
  simdjson::dom::parser p;
  std::string_view s;
  if (p.parse(json->data(), json->size()).get(s) != simdjson::SUCCESS) return "";
  return std::string(s);
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool Supported(const std::string& cmd) {
  static const std::set<std::string> kOk = {
      "FROM", "COPY", "ADD",    "ENV",    "ARG",        "WORKDIR", "USER",        "LABEL",
      "CMD",  "RUN",  "EXPOSE", "VOLUME", "STOPSIGNAL", "SHELL",   "HEALTHCHECK", "ENTRYPOINT"};
  return kOk.count(cmd) > 0;
}

Status Builder::Check(const std::vector<DockerInstruction>& all) {
  bool seen_from = false;
  for (const auto& ins : all) {
    if (!Supported(ins.cmd)) {
      static const std::set<std::string> kKnown = {"ONBUILD", "MAINTAINER"};
      return Fail(ins,
                  kKnown.count(ins.cmd) ? "not supported by imgfs build" : "unknown instruction");
    }
    if (ins.cmd == "FROM") {
      seen_from = true;
    } else if (!seen_from && ins.cmd != "ARG") {
      return Fail(ins, "the first instruction must be FROM (or ARG before FROM)");
    }
    for (const auto& f : ins.flags) {
      bool ok = ((ins.cmd == "COPY" || ins.cmd == "ADD") && f.rfind("--chown=", 0) == 0) ||
                (ins.cmd == "COPY" && f.rfind("--from=", 0) == 0) ||
                (ins.cmd == "HEALTHCHECK" &&
                 (f.rfind("--interval=", 0) == 0 || f.rfind("--timeout=", 0) == 0 ||
                  f.rfind("--start-period=", 0) == 0 || f.rfind("--retries=", 0) == 0));
      if (!ok) return Fail(ins, "flag " + f + " is not supported");
    }
    if (ins.args.empty()) return Fail(ins, "needs an argument");
  }
  if (!seen_from) return Status::InvalidArgument("Dockerfile has no FROM instruction");
  return Status::Ok();
}

BuildVars Builder::Vars() {
  BuildVars v = args_;
  auto parsed = ObjectFields(cfg_, "config");
  Fields cfg = parsed.ok() ? *parsed : Fields{};
  for (const auto& e : StringsOf(FindField(cfg, "Env") ? *FindField(cfg, "Env") : "")) {
    size_t eq = e.find('=');
    if (eq == std::string::npos) continue;
    v[e.substr(0, eq)] = e.substr(eq + 1);
  }
  return v;
}

Status Builder::CheckStateSize(const DockerInstruction& ins) {
  size_t n = cfg_.size();
  for (const BuildVars* vars : {&meta_args_, &args_}) {
    for (const auto& [k, v] : *vars) n += k.size() + v.size();
  }
  if (n <= kMaxBuildState) return Status::Ok();
  return Fail(ins,
              "the config and ARG values pass " + std::to_string(kMaxBuildState >> 20) + " MiB");
}

void Builder::History(const DockerInstruction& ins, bool empty_layer) {
  JsonWriter w;
  w.BeginObject().Key("created").String(FormatRfc3339(now_)).Key("created_by").String(ins.original);
  w.Key("comment").String("imgfs build");
  if (empty_layer) w.Key("empty_layer").Bool(true);
  w.EndObject();
  history_.push_back(w.str());
}

Status Builder::From(const DockerInstruction& ins) {
  IMGFS_ASSIGN_OR_RETURN(auto words, Step(ins, ExpandWords(ins.args, meta_args_)));
  if (words.empty() || (words.size() != 1 && words.size() != 3) ||
      (words.size() == 3 && strcasecmp(words[1].c_str(), "AS") != 0)) {
    return Fail(ins, "want FROM IMAGE [AS NAME]");
  }
  stage_name_ = words.size() == 3 ? words[2] : "";
  for (auto& c : stage_name_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (words[0] == "scratch") {
    Platform host = HostPlatform();
    top_ = {{"architecture", JsonString(host.architecture)}, {"os", JsonString(host.os)}};
    if (!host.variant.empty()) top_.emplace_back("variant", JsonString(host.variant));
    std::fprintf(req_.out, " ---> scratch\n");
    return Status::Ok();
  }
  Result<Digest> id = Status::NotFound("");
  if (auto st = StageImage(words[0])) {
    id = *st;
  } else {
    id = req_.resolve(words[0]);
  }
  if (!id.ok()) return Fail(ins, id.status().ToString());
  auto bytes = store_.blobs().Read(*id);
  if (!bytes.ok()) return bytes.status().WithContext("base image config");
  IMGFS_ASSIGN_OR_RETURN(top_, ObjectFields(*bytes, "base config"));
  std::erase_if(top_, [](const auto& f) {
    return f.first == "container" || f.first == "container_config" || f.first == "id" ||
           f.first == "parent";
  });
  if (std::string* c = FindField(top_, "config")) cfg_ = *c;
  if (std::string* r = FindField(top_, "rootfs")) {
    IMGFS_ASSIGN_OR_RETURN(Fields rf, ObjectFields(*r, "base rootfs"));
    if (std::string* d = FindField(rf, "diff_ids")) diff_ids_ = StringsOf(*d);
  }
  if (std::string* h = FindField(top_, "history")) {
    simdjson::dom::parser p;
    simdjson::dom::array arr;
    if (p.parse(*h).get(arr) == simdjson::SUCCESS) {
      for (auto el : arr) history_.push_back(simdjson::minify(el));
    }
  }
  IMGFS_ASSIGN_OR_RETURN(base_view_, ImageView::Open(store_, *id));
  base_id_ = id->str();
  std::fprintf(req_.out, " ---> %s\n", id->hex().substr(0, 12).c_str());
  return Status::Ok();
}

Status Builder::Config(const DockerInstruction& ins) {
  BuildVars vars = Vars();
  std::string change;
  if (ins.cmd == "ARG") {
    IMGFS_ASSIGN_OR_RETURN(auto words, Step(ins, ExpandWords(ins.args, vars)));
    for (const auto& w : words) {
      size_t eq = w.find('=');
      std::string name = w.substr(0, eq);
      if (name.empty()) return Fail(ins, "empty name");
      auto ba = req_.build_args.find(name);
      if (ba != req_.build_args.end()) {
        args_[name] = ba->second;
        used_build_args_.insert(name);
      } else if (eq != std::string::npos) {
        args_[name] = w.substr(eq + 1);
      } else if (meta_args_.count(name)) {
        args_[name] = meta_args_[name];
      }
    }
    History(ins, true);
    return Status::Ok();
  }
  if (ins.cmd == "CMD" || ins.cmd == "ENTRYPOINT") {
    change = ins.cmd + " " + ins.args;  // no substitution, as docker
  } else if (ins.cmd == "ENV" || ins.cmd == "LABEL" || ins.cmd == "EXPOSE" ||
             (ins.cmd == "VOLUME" && !ins.json)) {
    IMGFS_ASSIGN_OR_RETURN(std::string e, Step(ins, ExpandWord(ins.args, vars, true)));
    change = ins.cmd + " " + e;
    if (ins.cmd == "ENV") {
      // The old form `ENV KEY VALUE…`: VALUE is the rest of the line.
      size_t sp = ins.args.find_first_of(" \t");
      std::string first = ins.args.substr(0, sp);
      if (first.find('=') == std::string::npos) {
        if (sp == std::string::npos) return Fail(ins, first + " has no value");
        size_t b = ins.args.find_first_not_of(" \t", sp);
        IMGFS_ASSIGN_OR_RETURN(std::string v,
                               Step(ins, ExpandWord(ins.args.substr(b), vars, false)));
        std::string esc;
        for (char c : v) {
          if (c == '\\' || c == '"' || c == '\'' || c == ' ' || c == '\t' || c == '\n')
            esc.push_back('\\');
          esc.push_back(c);
        }
        change = "ENV " + first + "=" + esc;
      }
    }
  } else if (ins.cmd == "VOLUME") {
    JsonWriter w;
    w.BeginArray();
    for (const auto& s : ins.json_args) {
      IMGFS_ASSIGN_OR_RETURN(std::string e, Step(ins, ExpandWord(s, vars, false)));
      w.String(e);
    }
    w.EndArray();
    change = "VOLUME " + w.str();
  } else {  // USER WORKDIR STOPSIGNAL
    IMGFS_ASSIGN_OR_RETURN(std::string e, Step(ins, ExpandWord(ins.args, vars, false)));
    if (ins.cmd == "STOPSIGNAL") {
      IMGFS_ASSIGN_OR_RETURN(Fields cfg, ObjectFields(cfg_, "config"));
      SetField(cfg, "StopSignal", JsonString(e));
      cfg_ = MapJson(cfg);
      History(ins, true);
      return Status::Ok();
    }
    change = ins.cmd + " " + e;
  }
  std::vector<std::string> changes = {change};
  if (ins.cmd == "ENTRYPOINT" && cmd_set_) {
    // A CMD of this Dockerfile survives a later ENTRYPOINT (only an inherited one goes).
    IMGFS_ASSIGN_OR_RETURN(Fields cfg, ObjectFields(cfg_, "config"));
    if (std::string* c = FindField(cfg, "Cmd"); c && *c != "null") changes.push_back("CMD " + *c);
  }
  auto out = ApplyChanges(cfg_, changes);
  if (!out.ok()) return Fail(ins, out.status().message());
  cfg_ = *out;
  if (ins.cmd == "CMD") cmd_set_ = true;
  History(ins, true);
  return Status::Ok();
}

bool Builder::IsDirInImage(const std::string& abs) {
  if (made_dirs_.count(abs) || abs == "/") return true;
  if (!base_view_) return false;
  auto n = base_view_->tree().Resolve(abs, true);
  if (!n.ok() || *n == 0) return false;
  struct stat st;
  base_view_->Stat(*n, &st);
  return S_ISDIR(st.st_mode);
}

// Creates `abs` (and its parents) under `staging`. A directory the image already has
// keeps its attributes; a new one is 0755, root-owned (the last one: `last_owner` when
// given), mtime 0. The attributes are applied at the end (`fix`, parents first).
Status Builder::EnsureDir(const std::string& staging, const std::string& abs,
                          const Owner* last_owner, std::vector<DirMeta>* fix) {
  std::string cur;
  size_t at = 1;
  while (at <= abs.size() && abs != "/") {
    size_t next = abs.find('/', at);
    if (next == std::string::npos) next = abs.size();
    cur = abs.substr(0, next);
    std::string path = staging + cur;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
      if (::mkdir(path.c_str(), 0755) != 0) return Status::FromErrno(path);
      DirMeta m{path, 0755, 0, 0, {0, 0}};
      uint32_t n = 0;
      if (base_view_) {
        auto r = base_view_->tree().Resolve(cur, true);
        if (r.ok()) n = *r;
      }
      struct stat bst;
      if (n != 0 && (base_view_->Stat(n, &bst), S_ISDIR(bst.st_mode))) {
        m = {path, static_cast<mode_t>(bst.st_mode & 07777), bst.st_uid, bst.st_gid, bst.st_mtim};
      } else if (next == abs.size() && last_owner) {
        m.uid = last_owner->uid;
        m.gid = last_owner->gid;
      }
      fix->push_back(m);
      made_dirs_.insert(cur);
    } else if (!S_ISDIR(st.st_mode)) {
      return Status::InvalidArgument(cur + ": not a directory (a file was copied there)");
    }
    at = next + 1;
  }
  return Status::Ok();
}

// Hashes what a copy of `abs` depends on: per path (ignored ones left out, as the copy
// does) its name, type, mode, mtime, size, link target and content.
Status Builder::Manifest(const std::string& abs, const std::string& rel, bool follow, Sha256* h) {
  struct stat st;
  if ((follow ? ::stat(abs.c_str(), &st) : ::lstat(abs.c_str(), &st)) != 0) {
    return Status::FromErrno(abs);
  }
  std::string line = rel + "\t" + std::to_string(st.st_mode) + "\t" +
                     std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) +
                     "\t" + std::to_string(st.st_size) + "\t";
  if (S_ISLNK(st.st_mode)) {
    std::string target(4096, '\0');
    ssize_t n = ::readlink(abs.c_str(), target.data(), target.size());
    if (n < 0) return Status::FromErrno(abs);
    line.append(target.data(), n);
  } else if (S_ISREG(st.st_mode)) {
    int fd = ::open(abs.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(abs);
    Sha256 content;
    char buf[1 << 16];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) content.Update(buf, n);
    ::close(fd);
    if (n < 0) return Status::FromErrno(abs);
    line += content.Finish().hex();
  }
  h->Update(line.data(), line.size() + 1);
  if (!S_ISDIR(st.st_mode)) return Status::Ok();
  DIR* d = ::opendir(abs.c_str());
  if (!d) return Status::FromErrno(abs);
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    std::string r = rel.empty() ? n : rel + "/" + n;
    if (ignore_.Excluded(r)) continue;
    IMGFS_RETURN_IF_ERROR(Manifest(abs + "/" + n, r, false, h));
  }
  return Status::Ok();
}

// Copies `src` (context-relative `rel`) to `dst`, owned by `owner`, keeping modes and
// mtimes; a directory's contents recursively (ignored paths left out).
Status Builder::CopyTree(const std::string& src, const std::string& rel, const std::string& dst,
                         const Owner& owner) {
  struct stat st;
  if (::lstat(src.c_str(), &st) != 0) return Status::FromErrno(src);
  if (S_ISREG(st.st_mode)) {
    IMGFS_RETURN_IF_ERROR(CopyFile(src, dst));
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(4096, '\0');
    ssize_t n = ::readlink(src.c_str(), target.data(), target.size());
    if (n < 0) return Status::FromErrno(src);
    target.resize(n);
    if (::symlink(target.c_str(), dst.c_str()) != 0) return Status::FromErrno(dst);
    return ApplyMeta(dst, 0, owner.uid, owner.gid, st.st_mtim, true);
  } else if (S_ISDIR(st.st_mode)) {
    struct stat dst_st;
    if (::lstat(dst.c_str(), &dst_st) != 0 && ::mkdir(dst.c_str(), 0700) != 0) {
      return Status::FromErrno(dst);
    }
    DIR* d = ::opendir(src.c_str());
    if (!d) return Status::FromErrno(src);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      std::string r = rel.empty() ? n : rel + "/" + n;
      if (ignore_.Excluded(r)) continue;
      IMGFS_RETURN_IF_ERROR(CopyTree(src + "/" + n, r, dst + "/" + n, owner));
    }
  } else {
    return Status::InvalidArgument(rel + ": unsupported file type in the build context");
  }
  return ApplyMeta(dst, st.st_mode, owner.uid, owner.gid, st.st_mtim, false);
}

Status Builder::Copy(const DockerInstruction& ins) {
  BuildVars vars = Vars();
  std::vector<std::string> words;
  if (ins.json) {
    for (const auto& s : ins.json_args) {
      IMGFS_ASSIGN_OR_RETURN(std::string e, Step(ins, ExpandWord(s, vars, false)));
      words.push_back(e);
    }
  } else {
    auto w = ExpandWords(ins.args, vars);
    if (!w.ok()) return Fail(ins, w.status().message());
    words = *w;
  }
  if (words.size() < 2) return Fail(ins, "want at least one source and a destination");
  Owner owner;
  for (const auto& f : ins.flags) {
    if (f.rfind("--from=", 0) == 0) continue;  // handled by CopyFrom
    std::string v = f.substr(8);
    IMGFS_ASSIGN_OR_RETURN(std::string e, Step(ins, ExpandWord(v, vars, false)));
    auto o = ChownOwner(e);
    if (!o.ok()) return Fail(ins, "--chown=" + e + ": " + o.status().message());
    owner = *o;
  }
  std::string dest_raw = words.back();
  words.pop_back();
  std::string workdir = "/";
  {
    IMGFS_ASSIGN_OR_RETURN(Fields cfg, ObjectFields(cfg_, "config"));
    std::string wd = StringOf(FindField(cfg, "WorkingDir"));
    if (!wd.empty()) workdir = wd;
  }
  std::string dest = CleanAbs(dest_raw.front() == '/' ? dest_raw : workdir + "/" + dest_raw);
  bool dest_dir = dest_raw.back() == '/' || words.size() > 1 || IsDirInImage(dest);

  // Sources: context paths (globs allowed), never outside the context.
  std::vector<std::pair<std::string, std::string>> srcs;  // absolute, context-relative
  for (const auto& s : words) {
    if (s.find("://") != std::string::npos)
      return Fail(ins, s + ": remote sources are not supported");
    std::string rel = CleanAbs("/" + s).substr(1);
    std::vector<std::string> matches;
    if (rel.find_first_of("*?[") != std::string::npos) {
      glob_t g{};
      std::string pat = context_ + "/" + rel;
      if (::glob(pat.c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++)
          matches.push_back(g.gl_pathv[i] + context_.size() + 1);
      }
      ::globfree(&g);
      std::sort(matches.begin(), matches.end());
      std::erase_if(matches, [&](const std::string& m) { return ignore_.Excluded(m); });
      if (matches.empty()) return Fail(ins, s + ": no source files were specified");
      if (matches.size() > 1) dest_dir = true;
    } else {
      matches.push_back(rel);
    }
    for (const auto& m : matches) {
      std::string abs = m.empty() ? context_ : context_ + "/" + m;
      char* real = ::realpath(abs.c_str(), nullptr);
      if (!real || (!m.empty() && ignore_.Excluded(m))) {
        if (real) std::free(real);
        return Fail(ins, s + ": not found in the build context (or excluded by .dockerignore)");
      }
      std::string r = real;
      std::free(real);
      if (r != context_ && r.rfind(context_ + "/", 0) != 0) {
        return Fail(ins, s + ": forbidden path outside the build context");
      }
      srcs.emplace_back(r, m);
    }
  }

  // The build cache: the key covers everything the layer's bytes depend on.
  std::string cache_path;
  {
    Sha256 h;
    auto add = [&](const std::string& v) { h.Update(v.data(), v.size() + 1); };  // with NUL
    add("imgfs-build-cache v1");
    add(base_id_);
    add(from_id_);
    for (const auto& d : made_dirs_) add(d);
    add(ins.cmd);
    add(dest + (dest_dir ? "/" : ""));
    add(std::to_string(owner.uid) + ":" + std::to_string(owner.gid));
    for (const auto& [abs, rel] : srcs) {
      add(rel);
      IMGFS_RETURN_IF_ERROR(Manifest(abs, rel, true, &h));
    }
    cache_path = store_.root() + "/build-cache/" + h.Finish().hex();
  }
  if (!req_.no_cache) {
    std::ifstream cached(cache_path);
    std::string id_line, dir;
    if (cached && std::getline(cached, id_line)) {
      auto d = Digest::Parse(id_line);
      if (d.ok() && stage_->HaveLayer(*d)) {
        made_dirs_.clear();
        while (std::getline(cached, dir)) made_dirs_.insert(dir);
        diff_ids_.push_back(d->str());
        History(ins, false);
        std::fprintf(req_.out, " ---> Using cache\n ---> layer %s\n",
                     d->hex().substr(0, 12).c_str());
        return Status::Ok();
      }
    }
  }

  IMGFS_ASSIGN_OR_RETURN(std::string tmp, MakeTempDir());
  TempDir staging{tmp};
  std::vector<DirMeta> fix;
  for (const auto& [abs, rel] : srcs) {
    struct stat st;
    if (::stat(abs.c_str(), &st) != 0) return Status::FromErrno(abs);
    Status s;
    if (S_ISDIR(st.st_mode)) {
      s = EnsureDir(tmp, dest, &owner, &fix);
      if (s.ok()) {
        // The contents go into dest; dest keeps the attributes EnsureDir chose.
        DIR* d = ::opendir(abs.c_str());
        if (!d) return Status::FromErrno(abs);
        std::vector<std::string> names;
        while (struct dirent* e = ::readdir(d)) {
          std::string n = e->d_name;
          if (n != "." && n != "..") names.push_back(n);
        }
        ::closedir(d);
        std::sort(names.begin(), names.end());
        for (const auto& n : names) {
          std::string r = rel.empty() ? n : rel + "/" + n;
          if (ignore_.Excluded(r)) continue;
          s = CopyTree(abs + "/" + n, r, tmp + dest + "/" + n, owner);
          if (!s.ok()) break;
        }
      }
    } else {
      std::string base = abs.substr(abs.rfind('/') + 1);
      bool extracted = false;
      if (ins.cmd == "ADD") {
        s = EnsureDir(tmp, dest_dir ? dest : CleanAbs(dest + "/.."), nullptr, &fix);
        if (s.ok()) {
          auto x = ExtractArchive(abs, tmp + (dest_dir ? dest : CleanAbs(dest + "/..")));
          if (!x.ok()) return Fail(ins, x.status().message());
          extracted = *x;
          if (extracted && !dest_dir) {
            return Fail(
                ins,
                rel + ": an archive is extracted into a directory; end the destination with /");
          }
        }
      }
      if (!extracted && s.ok()) {
        std::string target = dest_dir ? dest + "/" + base : dest;
        s = EnsureDir(tmp, CleanAbs(target + "/.."), nullptr, &fix);
        struct stat tst;
        if (s.ok() && ::lstat((tmp + target).c_str(), &tst) == 0 && S_ISDIR(tst.st_mode)) {
          s = Status::InvalidArgument(target + ": is a directory");
        }
        if (s.ok()) s = CopyTree(abs, rel, tmp + target, owner);
        // A file copied onto a name is not a directory any more.
        made_dirs_.erase(target);
      }
    }
    if (!s.ok()) return Fail(ins, s.message());
  }
  // Directory attributes last (copying into them changed their mtimes), deepest first.
  std::sort(fix.begin(), fix.end(),
            [](const DirMeta& a, const DirMeta& b) { return a.path.size() > b.path.size(); });
  for (const auto& m : fix)
    IMGFS_RETURN_IF_ERROR(ApplyMeta(m.path, m.mode, m.uid, m.gid, m.mtime, false));

  LayerWriteOptions opts;
  opts.overlay = false;
  Status writer_error;
  Result<Digest> diff_id = Status::Unavailable("not written");
  {
    auto src = GzipLayerSource(tmp, opts, &writer_error);
    diff_id = stage_->AddLayer(src.get(), std::nullopt, nullptr, Compression::kGzip);
  }
  if (!writer_error.ok()) return Fail(ins, writer_error.message());
  if (!diff_id.ok()) return Fail(ins, diff_id.status().message());
  diff_ids_.push_back(diff_id->str());
  History(ins, false);
  std::string entry = diff_id->str() + "\n";
  for (const auto& d : made_dirs_) entry += d + "\n";
  cache_writes_.emplace_back(cache_path, entry);
  std::fprintf(req_.out, " ---> layer %s\n", diff_id->hex().substr(0, 12).c_str());
  return Status::Ok();
}

Result<LoadedImage> Builder::Run() {
  char* real = ::realpath(req_.context.c_str(), nullptr);
  if (!real) return Status::FromErrno(req_.context);
  context_ = real;
  std::free(real);
  struct stat st;
  if (::stat(context_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(req_.context + ": not a directory");
  }
  std::string df = req_.dockerfile.empty() ? context_ + "/Dockerfile" : req_.dockerfile;
  // Bounded: a Dockerfile of /dev/zero or gigabytes is refused ("file too large").
  IMGFS_ASSIGN_OR_RETURN(std::string text, ReadFileToString(df, kMaxDockerfileSize));
  IMGFS_ASSIGN_OR_RETURN(auto all, ParseDockerfile(text));
  IMGFS_RETURN_IF_ERROR(Check(all));
  ignore_ = Ignore::Load(context_);
  IMGFS_ASSIGN_OR_RETURN(GcLock lock, GcLock::Acquire(store_, false));
  CleanStaleBuilds(stderr);  // what killed builds left behind (registry/build_stale.h)

  bool from_seen = false;
  if (!req_.target.empty()) {
    bool found = false;
    for (const auto& ins : all) {
      if (ins.cmd != "FROM") continue;
      auto w = ExpandWords(ins.args, meta_args_);
      if (w.ok() && w->size() == 3 && Lower((*w)[2]) == Lower(req_.target)) found = true;
    }
    // (meta ARGs are not known yet; a stage name is not substituted by docker either)
    if (!found)
      return Status::InvalidArgument("failed to reach build target " + req_.target +
                                     " in Dockerfile");
  }
  for (size_t i = 0; i < all.size(); i++) {
    const auto& ins = all[i];
    if (i > 0) IMGFS_RETURN_IF_ERROR(CheckStateSize(all[i - 1]));
    expanded_ = 0;
    std::fprintf(req_.out, "Step %zu/%zu : %s\n", i + 1, all.size(), ins.original.c_str());
    std::fflush(req_.out);
    if (!from_seen && ins.cmd == "ARG") {
      IMGFS_ASSIGN_OR_RETURN(auto words, Step(ins, ExpandWords(ins.args, meta_args_)));
      for (const auto& w : words) {
        size_t eq = w.find('=');
        std::string name = w.substr(0, eq);
        auto ba = req_.build_args.find(name);
        if (ba != req_.build_args.end()) {
          meta_args_[name] = ba->second;
          used_build_args_.insert(name);
        } else if (eq != std::string::npos) {
          meta_args_[name] = w.substr(eq + 1);
        }
      }
      continue;
    }
    if (ins.cmd == "FROM") {
      if (from_seen) {
        // The stage before is done: stored untagged, so later stages can use it.
        IMGFS_ASSIGN_OR_RETURN(Digest done, Intermediate());
        stages_.emplace_back(stage_name_, done);
        if (!req_.target.empty() && stage_name_ == Lower(req_.target)) {
          break;  // the target: it gets the name (stored twice, untagged and named)
        }
        NewStage();
      }
      from_seen = true;
      IMGFS_RETURN_IF_ERROR(From(ins));
      // docker's setDefaultPath: a stage whose config has no PATH gets the default one.
      IMGFS_ASSIGN_OR_RETURN(Fields cfg, ObjectFields(cfg_, "config"));
      auto env = StringsOf(FindField(cfg, "Env") ? *FindField(cfg, "Env") : "");
      if (std::none_of(env.begin(), env.end(),
                       [](const std::string& e) { return e.rfind("PATH=", 0) == 0; })) {
        auto out = ApplyChanges(
            cfg_, {"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"});
        if (out.ok()) cfg_ = *out;
      }
    } else if (ins.cmd == "COPY" &&
               std::any_of(ins.flags.begin(), ins.flags.end(),
                           [](const std::string& f) { return f.rfind("--from=", 0) == 0; })) {
      std::string from;
      for (const auto& f : ins.flags) {
        if (f.rfind("--from=", 0) == 0) from = f.substr(7);
      }
      IMGFS_RETURN_IF_ERROR(CopyFrom(ins, from));
    } else if (ins.cmd == "COPY" || ins.cmd == "ADD") {
      IMGFS_RETURN_IF_ERROR(Copy(ins));
    } else if (ins.cmd == "RUN") {
      IMGFS_RETURN_IF_ERROR(RunStep(ins));
    } else if (ins.cmd == "SHELL" || ins.cmd == "HEALTHCHECK") {
      IMGFS_RETURN_IF_ERROR(ShellOrHealth(ins));
    } else {
      IMGFS_RETURN_IF_ERROR(Config(ins));
    }
  }
  if (!all.empty()) IMGFS_RETURN_IF_ERROR(CheckStateSize(all.back()));
  for (const auto& [k, v] : req_.build_args) {
    if (!used_build_args_.count(k)) {
      std::fprintf(stderr, "[Warning] One or more build-args [%s] were not consumed\n", k.c_str());
    }
  }
  std::string config = ConfigJson();
  IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, Sha256Of(config)));
  StagedImage img;
  img.record = std::move(rec);
  img.config = std::move(config);
  img.names.push_back(req_.name);
  IMGFS_RETURN_IF_ERROR(stage_->AddImage(std::move(img)));
  IMGFS_ASSIGN_OR_RETURN(auto out, stage_->Commit());
  FlushCache();
  return out.at(0);
}

}  // namespace build_detail

Result<LoadedImage> BuildImage(Store& store, const BuildRequest& req) {
  build_detail::Builder b(store, req);
  return b.Run();
}

}  // namespace imgfs
