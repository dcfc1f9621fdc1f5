// RUN, SHELL/HEALTHCHECK, multi-stage (stages, COPY --from), intermediate images and
// the cache writes of `imgfs build` (registry/builder.h, registry/builder_internal.h).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "fs/image_view.h"
#include "fs/span_cache.h"
#include "index/json_writer.h"
#include "index/layer_writer.h"
#include "registry/build_stale.h"
#include "registry/builder_internal.h"
#include "registry/committer.h"
#include "registry/image_loader.h"
#include "registry/json.h"

namespace imgfs::build_detail {

using namespace build_files;  // NOLINT: the context/staging helpers

// RUN: on a cache miss the image so far is committed untagged, a store mount shows it
// at .id/<hex>/, the command runs in runc on an overlay over it, and the overlay's
// upper directory becomes the next layer (the `imgfs commit` path: whiteouts, opaque
// directories). The cache key is docker's: the parent image (its layers and config)
// and the instruction, plus the build-args the command sees.
Status Builder::RunStep(const DockerInstruction& ins) {
  IMGFS_ASSIGN_OR_RETURN(Fields cfg, ObjectFields(cfg_, "config"));
  std::vector<std::string> args;
  if (ins.json) {
    args = ins.json_args;
  } else {
    std::string* sh = FindField(cfg, "Shell");
    args = sh ? StringsOf(*sh) : std::vector<std::string>{};
    if (args.empty()) args = {"/bin/sh", "-c"};
    args.push_back(ins.args);
  }
  if (args.empty()) return Fail(ins, "needs a command");
  std::vector<std::string> env = StringsOf(FindField(cfg, "Env") ? *FindField(cfg, "Env") : "");
  for (const auto& arg : args_) {  // build-args in scope; ENV wins
    // (not a structured binding: clang 14 cannot capture one in the lambda)
    const std::string prefix = arg.first + "=";
    bool in_env = std::any_of(env.begin(), env.end(),
                              [&](const std::string& e) { return e.rfind(prefix, 0) == 0; });
    if (!in_env) env.push_back(prefix + arg.second);
  }
  std::string cache_path;
  {
    Sha256 h;
    auto add = [&](const std::string& v) { h.Update(v.data(), v.size() + 1); };
    add("imgfs-build-run v1");
    add(base_id_);
    for (const auto& d : diff_ids_) add(d);
    add(cfg_);
    for (const auto& a : args) add(a);
    add("env");
    for (const auto& e : env) add(e);
    add(req_.host_network ? "host" : "none");
    cache_path = store_.root() + "/build-cache/" + h.Finish().hex();
  }
  if (!req_.no_cache) {
    std::ifstream cached(cache_path);
    std::string id_line;
    if (cached && std::getline(cached, id_line)) {
      auto d = Digest::Parse(id_line);
      if (d.ok() && stage_->HaveLayer(*d)) {
        diff_ids_.push_back(d->str());
        History(ins, false);
        std::fprintf(req_.out, " ---> Using cache\n ---> layer %s\n",
                     d->hex().substr(0, 12).c_str());
        return Status::Ok();
      }
    }
  }
  IMGFS_ASSIGN_OR_RETURN(Digest parent, Intermediate());
  if (auto s = EnsureMount(); !s.ok()) return Fail(ins, s.message());
  std::fprintf(req_.out, " ---> Running in %s\n", parent.hex().substr(0, 12).c_str());
  std::fflush(req_.out);
  IMGFS_ASSIGN_OR_RETURN(std::string dir, MakeTempDir());
  TempDir run_dir{dir};
  IMGFS_RETURN_IF_ERROR(MarkBuildDir(dir));
  RunSpec spec;
  spec.lower = mount_->path() + "/.id/" + parent.hex();
  spec.dir = dir;
  spec.args = args;
  spec.env = env;
  std::string wd = StringOf(FindField(cfg, "WorkingDir"));
  spec.cwd = wd.empty() ? "/" : wd;
  spec.user = StringOf(FindField(cfg, "User"));
  spec.host_network = req_.host_network;
  spec.id = "imgfs-build-" + std::to_string(::getpid()) + "-" + std::to_string(++runs_);
  auto rc = RunInContainer(spec);
  if (!rc.ok()) return Fail(ins, rc.status().message());
  if (*rc != 0) {
    std::string joined;
    for (const auto& a : args) joined += (joined.empty() ? "" : " ") + a;
    return Status::InvalidArgument("The command '" + joined +
                                   "' returned a non-zero code: " + std::to_string(*rc));
  }
  LayerWriteOptions opts;
  opts.overlay = true;
  Status writer_error;
  Result<Digest> diff_id = Status::Unavailable("not written");
  {
    auto src = GzipLayerSource(dir + "/upper", opts, &writer_error);
    diff_id = stage_->AddLayer(src.get(), std::nullopt, nullptr, Compression::kGzip);
  }
  if (!writer_error.ok()) return Fail(ins, writer_error.message());
  if (!diff_id.ok()) return Fail(ins, diff_id.status().message());
  diff_ids_.push_back(diff_id->str());
  History(ins, false);
  cache_writes_.emplace_back(cache_path, diff_id->str() + "\n");
  std::fprintf(req_.out, " ---> layer %s\n", diff_id->hex().substr(0, 12).c_str());
  return Status::Ok();
}

// COPY/ADD --chown=USER[:GROUP]. Numbers are used as they are (a lone UID is the GID
// too); a name is looked up in the image so far's /etc/passwd and /etc/group (a user
// alone: its UID and primary GID), as BuildKit and buildah do. An all-numeric value
// reads no file.
Result<Owner> Builder::ChownOwner(const std::string& spec) {
  auto num = [](const std::string& s) {
    return !s.empty() && s.size() < 10 && std::all_of(s.begin(), s.end(), ::isdigit);
  };
  size_t colon = spec.find(':');
  std::string u = spec.substr(0, colon);
  std::string g = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (u.empty() || (colon != std::string::npos && g.empty()) || g.find(':') != std::string::npos) {
    return Status::InvalidArgument("invalid chown string format");
  }
  if (num(u) && (g.empty() || num(g))) {
    return Owner{static_cast<uid_t>(std::stoul(u)),
                 static_cast<gid_t>(std::stoul(g.empty() ? u : g))};
  }
  IMGFS_ASSIGN_OR_RETURN(auto files, FilesSoFar({"/etc/passwd", "/etc/group"}));
  IMGFS_ASSIGN_OR_RETURN(RunUser ru, ResolveUserIn(files[0], files[1], spec));
  return Owner{ru.uid, ru.gid};
}

// Files of the image as it stands (its layers so far), read from the store's layers
// through one ImageView: no mount. Layers this build staged but has not stored yet are
// committed first, as an intermediate image (what RUN does). A missing path, or one
// that is not a regular file, reads as "".
Result<std::vector<std::string>> Builder::FilesSoFar(const std::vector<std::string>& paths) {
  std::vector<Digest> ids;
  bool stored = true;
  for (const auto& d : diff_ids_) {
    IMGFS_ASSIGN_OR_RETURN(Digest id, Digest::Parse(d));
    IMGFS_ASSIGN_OR_RETURN(auto rec, store_.GetLayer(id));
    stored = stored && rec.has_value();
    ids.push_back(id);
  }
  if (!stored) IMGFS_RETURN_IF_ERROR(Intermediate().status());
  IMGFS_ASSIGN_OR_RETURN(auto view, ImageView::OpenLayers(store_, ids, false));
  LayerReader reader(store_);
  std::vector<std::string> out;
  for (const auto& path : paths) {
    std::string& text = out.emplace_back();
    auto n = view->tree().Resolve(path, true);
    if (!n.ok() || *n == 0 || !S_ISREG(view->tree().node(*n).mode)) continue;
    if (view->tree().node(*n).size > kMaxUserFileSize) {
      return Status::InvalidArgument(path + ": larger than " +
                                     std::to_string(kMaxUserFileSize >> 20) + " MiB");
    }
    text.resize(view->tree().node(*n).size);
    size_t done = 0;
    while (done < text.size()) {
      IMGFS_ASSIGN_OR_RETURN(size_t got,
                             view->Read(reader, *n, text.data() + done, text.size() - done, done));
      if (got == 0) break;
      done += got;
    }
    text.resize(done);
  }
  return out;
}

// SHELL (JSON form only, as docker) and HEALTHCHECK set config fields.
Status Builder::ShellOrHealth(const DockerInstruction& ins) {
  IMGFS_ASSIGN_OR_RETURN(Fields cfg, ObjectFields(cfg_, "config"));
  if (ins.cmd == "SHELL") {
    if (!ins.json || ins.json_args.empty())
      return Fail(ins, "SHELL requires the arguments to be in JSON form");
    JsonWriter w;
    w.BeginArray();
    for (const auto& a : ins.json_args) w.String(a);
    w.EndArray();
    SetField(cfg, "Shell", w.str());
  } else {
    auto hc = HealthcheckJson(ins.args, ins.flags);
    if (!hc.ok()) return Fail(ins, hc.status().message());
    SetField(cfg, "Healthcheck", *hc);
  }
  cfg_ = MapJson(cfg);
  History(ins, true);
  return Status::Ok();
}

// A stage by name (case-insensitive) or index, as FROM and COPY --from name them.
std::optional<Digest> Builder::StageImage(const std::string& name) {
  std::string n = Lower(name);
  for (const auto& [sn, id] : stages_) {
    if (!sn.empty() && sn == n) return id;
  }
  if (!n.empty() && n.size() < 4 && std::all_of(n.begin(), n.end(), ::isdigit)) {
    size_t i = std::stoul(n);
    if (i < stages_.size()) return stages_[i].second;
  }
  return std::nullopt;
}

void Builder::NewStage() {
  top_.clear();
  cfg_ = "{}";
  cmd_set_ = false;
  diff_ids_.clear();
  history_.clear();
  base_view_.reset();
  made_dirs_.clear();
  base_id_ = "scratch";
  args_.clear();
}

Status Builder::EnsureMount() {
  if (!run_tmp_) {
    IMGFS_ASSIGN_OR_RETURN(std::string t, MakeTempDir());
    run_tmp_ = std::make_unique<TempDir>();
    run_tmp_->path = t;
    IMGFS_RETURN_IF_ERROR(MarkBuildDir(t));
  }
  if (!mount_) {
    IMGFS_ASSIGN_OR_RETURN(mount_, StoreMount::Ensure(store_.root(), run_tmp_->path));
  }
  return Status::Ok();
}

// COPY --from=STAGE|INDEX|IMAGE: the sources are paths in that image, read through the
// store's mount (.id/<hex>/), copied as context files are (owner 0:0 or --chown),
// without .dockerignore.
Status Builder::CopyFrom(const DockerInstruction& ins, const std::string& from_raw) {
  IMGFS_ASSIGN_OR_RETURN(std::string from, Step(ins, ExpandWord(from_raw, Vars(), false)));
  Result<Digest> id = Status::NotFound("");
  bool number = !from.empty() && std::all_of(from.begin(), from.end(), ::isdigit);
  if (auto st = StageImage(from)) {
    id = *st;
  } else if (number) {  // a stage index, never an image ID prefix (docker)
    return Fail(ins, "invalid from flag value " + from + ": index out of bounds");
  } else {
    id = req_.resolve(from);
  }
  if (!id.ok()) return Fail(ins, "--from=" + from + ": " + id.status().ToString());
  if (auto s = EnsureMount(); !s.ok()) return Fail(ins, s.message());
  std::string saved_context = context_;
  Ignore saved_ignore = ignore_;
  context_ = mount_->path() + "/.id/" + id->hex();
  ignore_ = Ignore{};
  from_id_ = id->str();
  Status s = Copy(ins);
  context_ = saved_context;
  ignore_ = saved_ignore;
  from_id_.clear();
  return s;
}

std::string Builder::ConfigJson() {
  JsonWriter rootfs;
  JsonWriter ids;
  ids.BeginArray();
  for (const auto& d : diff_ids_) ids.String(d);
  ids.EndArray();
  rootfs.BeginObject().Key("type").String("layers").Key("diff_ids").Raw(ids.str()).EndObject();
  JsonWriter hist;
  hist.BeginArray();
  for (const auto& h : history_) hist.Raw(h);
  hist.EndArray();
  SetField(top_, "created", JsonString(FormatRfc3339(now_)));
  SetField(top_, "config", cfg_);
  SetField(top_, "rootfs", rootfs.str());
  SetField(top_, "history", hist.str());
  return MapJson(top_);
}

// Cache entries only once their layers are committed; failing to write one costs a
// later rebuild its shortcut, nothing else.
void Builder::FlushCache() {
  if (!cache_writes_.empty()) ::mkdir((store_.root() + "/build-cache").c_str(), 0755);
  for (const auto& [path, entry] : cache_writes_) {
    std::string tmp = path + ".tmp";
    std::ofstream f(tmp, std::ios::trunc);
    f << entry;
    f.close();
    if (!f || ::rename(tmp.c_str(), path.c_str()) != 0) ::unlink(tmp.c_str());
  }
  cache_writes_.clear();
}

// The image as it stands, committed untagged (docker's intermediate image), so that a
// mount shows it at .id/<hex>/. The layers staged so far are committed with it.
Result<Digest> Builder::Intermediate() {
  std::string config = ConfigJson();
  IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, Sha256Of(config)));
  Digest id = rec.id;
  StagedImage img;
  img.record = std::move(rec);
  img.config = std::move(config);
  IMGFS_RETURN_IF_ERROR(stage_->AddImage(std::move(img)));
  IMGFS_RETURN_IF_ERROR(stage_->Commit().status());
  stage_ = std::make_unique<ImageStage>(store_);
  FlushCache();
  return id;
}

}  // namespace imgfs::build_detail
