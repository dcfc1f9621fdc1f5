// `imgfs build`: a Dockerfile and a context directory become an image.
//
// Supported (registry/dockerfile.h parses and substitutes):
//   FROM IMAGE (in the store, pulled by the caller's resolver when missing) or FROM
//   scratch, `AS NAME`, FROM an earlier stage; ARG before FROM (used in FROM);
//   COPY and ADD of context files and directories (`--chown=UID[:GID]`, numeric; ADD
//   of a local tar archive extracts it, as docker does; .dockerignore is honoured),
//   COPY --from=STAGE|INDEX|IMAGE: each writes the files into a staging directory,
//   which becomes one gzip layer through the layer writer (index/layer_writer.h) and
//   the verified load path; RUN (registry/build_run.h: runc on an overlay over the
//   image so far in a store mount; the upper directory is the layer); ENV ARG WORKDIR
//   USER LABEL CMD ENTRYPOINT EXPOSE VOLUME STOPSIGNAL SHELL HEALTHCHECK change the
//   config and add a history entry with empty_layer true.
// Not supported (refused before anything is written, naming the instruction and its
// line): ONBUILD, MAINTAINER, ADD of a URL, and any other flag.
//
// Layers are staged in an ImageStage and committed with the config and name at the
// end. Before a RUN that misses the cache, and at the end of each stage, the image so
// far is committed untagged (an intermediate image, as docker's), so a failing build
// may leave untagged images but never a name. The layer of an unchanged COPY is
// byte-identical (sorted walk, source mtimes kept, created parent directories get
// mtime 0), so a rebuild stores no new layer blob; the build cache also skips the work:
// STORE/build-cache/<key> holds the diff_id of a COPY/ADD whose key (base image ID,
// directories made by earlier steps, instruction, destination, owner, and every
// source's path, type, mode, mtime, size, link target and content digest) is unchanged,
// or of a RUN whose parent (base, layers, config), words and environment are,
// used when that layer is still in the store ("Using cache"). Entries are written only
// after their layers are committed; a stale one is just a miss.
//
// Thread-safety: call from one thread. Holds the store's GC lock shared while it runs.
#ifndef IMGFS_REGISTRY_BUILDER_H_
#define IMGFS_REGISTRY_BUILDER_H_

#include <cstdio>
#include <functional>
#include <map>
#include <string>

#include "index/store.h"
#include "registry/stage.h"

namespace imgfs {

struct BuildRequest {
  std::string context;     // the context directory
  std::string dockerfile;  // path of the Dockerfile ("" = CONTEXT/Dockerfile)
  std::string name;        // canonical reference for the result
  std::map<std::string, std::string> build_args;
  // FROM IMAGE → its ID in the store.
  std::function<Result<Digest>(const std::string&)> resolve;
  FILE* out = stdout;         // step output
  bool no_cache = false;      // do not look up (or record) COPY/ADD layers in the cache
  bool host_network = false;  // RUN in the host's network namespace (--network host)
  std::string target;         // --target STAGE: build up to that stage ("" = all)
};

Result<LoadedImage> BuildImage(Store& store, const BuildRequest& req);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_BUILDER_H_
