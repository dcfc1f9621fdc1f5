// Internals of `imgfs build` (registry/builder.h), shared by registry/builder.cc
// (checking, FROM, config steps, COPY/ADD, the step loop) and registry/builder_steps.cc
// (RUN, SHELL/HEALTHCHECK, multi-stage, intermediate images, the cache writes).
// Not for other users.
#ifndef IMGFS_REGISTRY_BUILDER_INTERNAL_H_
#define IMGFS_REGISTRY_BUILDER_INTERNAL_H_

#include <sys/stat.h>

#include <ctime>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "fs/image_view.h"
#include "index/digest.h"
#include "registry/build_files.h"
#include "registry/build_run.h"
#include "registry/builder.h"
#include "registry/config_fields.h"
#include "registry/dockerfile.h"
#include "registry/stage.h"

namespace imgfs::build_detail {

using build_files::Ignore;
using build_files::TempDir;

std::vector<std::string> StringsOf(std::string_view json);
std::string StringOf(const std::string* json);
std::string Lower(std::string s);

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

struct DirMeta {
  std::string path;  // in the staging dir
  mode_t mode;
  uid_t uid;
  gid_t gid;
  struct timespec mtime;
};

class Builder {
 public:
  Builder(Store& store, const BuildRequest& req)
      : store_(store), req_(req), stage_(std::make_unique<ImageStage>(store)) {}
  Result<LoadedImage> Run();

 private:
  Status Fail(const DockerInstruction& ins, const std::string& msg) {
    return Status::InvalidArgument("Dockerfile line " + std::to_string(ins.line) + ": " + ins.cmd +
                                   ": " + msg);
  }
  // A substitution's result `r`, or its error as Fail(ins, ...) (naming the line). Also
  // counts what the instruction's substitutions made (expanded_, reset per
  // instruction): at most twice its text (ENV's old form expands its value twice) plus
  // kMaxExpandedInstruction.
  template <typename T>
  Result<T> Step(const DockerInstruction& ins, Result<T> r) {
    if (!r.ok()) return Fail(ins, r.status().message());
    if constexpr (std::is_same_v<T, std::string>) {
      expanded_ += r->size();
    } else {
      for (const auto& w : *r) expanded_ += w.size();
    }
    if (expanded_ > 2 * ins.original.size() + kMaxExpandedInstruction) {
      return Fail(ins, "substitution makes the instruction more than " +
                           std::to_string(kMaxExpandedInstruction >> 20) + " MiB longer");
    }
    return r;
  }
  // The config and the ARG values so far within kMaxBuildState (`ins`: the last line).
  Status CheckStateSize(const DockerInstruction& ins);
  Status Check(const std::vector<DockerInstruction>& all);
  BuildVars Vars();
  Status From(const DockerInstruction& ins);
  Status Config(const DockerInstruction& ins);
  Status Copy(const DockerInstruction& ins);
  Result<Owner> ChownOwner(const std::string& spec);
  Result<std::vector<std::string>> FilesSoFar(const std::vector<std::string>& paths);
  Status Manifest(const std::string& abs, const std::string& rel, bool follow, Sha256* h);
  Status CopyTree(const std::string& src, const std::string& rel, const std::string& dst,
                  const Owner& owner);
  Status EnsureDir(const std::string& staging, const std::string& abs, const Owner* last_owner,
                   std::vector<DirMeta>* fix);
  bool IsDirInImage(const std::string& abs);
  void History(const DockerInstruction& ins, bool empty_layer);
  Status RunStep(const DockerInstruction& ins);
  Status CopyFrom(const DockerInstruction& ins, const std::string& from);
  std::optional<Digest> StageImage(const std::string& name);
  Status EnsureMount();
  void NewStage();
  Status ShellOrHealth(const DockerInstruction& ins);
  std::string ConfigJson();
  Result<Digest> Intermediate();
  void FlushCache();

  Store& store_;
  const BuildRequest& req_;
  std::unique_ptr<ImageStage> stage_;  // a new one after each intermediate commit
  std::string context_;                // realpath
  Ignore ignore_;
  BuildVars meta_args_;  // ARGs before FROM
  BuildVars args_;       // ARGs of the stage
  std::set<std::string> used_build_args_;
  Fields top_;
  std::string cfg_ = "{}";
  size_t expanded_ = 0;  // bytes the current instruction's substitutions made (Step)
  bool cmd_set_ = false;
  std::vector<std::string> diff_ids_;
  std::vector<std::string> history_;
  std::shared_ptr<const ImageView> base_view_;
  std::set<std::string> made_dirs_;
  std::string base_id_ = "scratch";
  // Cache entries to write once the image is committed: path → content.
  std::vector<std::pair<std::string, std::string>> cache_writes_;
  int64_t now_ = ::time(nullptr);
  // RUN: a temp dir for the store's mount point, and the mount (declared after the
  // dir, so it is unmounted before the dir is removed).
  std::unique_ptr<TempDir> run_tmp_;
  std::unique_ptr<StoreMount> mount_;
  int runs_ = 0;
  // Multi-stage: the stages built so far (name, lower-cased; image ID), and COPY
  // --from's image while it copies ("" otherwise).
  std::vector<std::pair<std::string, Digest>> stages_;
  std::string stage_name_;
  std::string from_id_;
};

}  // namespace imgfs::build_detail

#endif  // IMGFS_REGISTRY_BUILDER_INTERNAL_H_
