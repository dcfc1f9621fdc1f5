// imgfs save: images out of the store as a docker-archive or an OCI archive, to a file
// (-o, written beside it and renamed into place, so a failure leaves no half archive)
// or to stdout when stdout is not a terminal.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "index/file_util.h"
#include "registry/image_export.h"
#include "registry/image_loader.h"

namespace imgfs {
namespace {

int CmdSave(const std::string& root, const Args& a) {
  if (a.pos.empty()) Die("save: want at least one IMAGE (see imgfs save --help)", 2);
  std::string fmt = a.Get("--format", "docker-archive");
  ArchiveFormat format;
  if (fmt == "docker-archive" || fmt == "docker") {
    format = ArchiveFormat::kDockerArchive;
  } else if (fmt == "oci-archive" || fmt == "oci") {
    format = ArchiveFormat::kOciArchive;
  } else {
    Die("save: --format is docker-archive or oci-archive", 2);
  }
  std::string out = a.Get("--output");
  bool to_stdout = out.empty() || out == "-";
  if (to_stdout && ::isatty(STDOUT_FILENO))
    Die("save: refusing to write an archive to a terminal: use -o FILE or redirect stdout", 2);
  auto store = OpenStore(root);
  // Shared, like a load: rmi and prune wait, so no blob goes away mid-archive.
  auto lock = GcLock::Acquire(*store, false);
  if (!lock.ok()) return Fail(lock.status(), "save");
  std::vector<SaveItem> items;
  for (const std::string& s : a.pos) {
    auto id = ResolveImage(*store, s);
    if (!id.ok()) return Fail(id.status(), "save");
    // A name given keeps that name in the archive (docker save's rule); an ID saves the
    // image without names.
    std::vector<Reference> names;
    auto ref = ParseDockerRef(s);
    if (ref.ok() && ref->digest.empty()) {
      auto rec = store->GetRef(ref->String());
      if (rec.ok() && rec->has_value()) names.push_back(*ref);
    }
    bool merged = false;
    for (SaveItem& it : items) {
      if (!(it.id == *id)) continue;
      for (const Reference& n : names) {
        bool dup = false;
        for (const Reference& have : it.names) dup = dup || have.String() == n.String();
        if (!dup) it.names.push_back(n);
      }
      merged = true;
    }
    if (!merged) items.push_back(SaveItem{*id, names});
  }
  if (to_stdout) {
    Status st = SaveImages(*store, items, format, STDOUT_FILENO);
    if (!st.ok()) return Fail(st, "save");
    return 0;
  }
  std::string temp = out + ".imgfs-save-" + std::to_string(::getpid());
  auto fd = OpenFile(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (!fd.ok()) return Fail(fd.status(), "save");
  Status st = SaveImages(*store, items, format, fd->get());
  if (st.ok() && ::fsync(fd->get()) != 0) st = Status::FromErrno("fsync " + temp);
  if (st.ok() && ::rename(temp.c_str(), out.c_str()) != 0)
    st = Status::FromErrno("rename to " + out);
  if (!st.ok()) {
    ::unlink(temp.c_str());
    return Fail(st, "save");
  }
  return 0;
}

}  // namespace

std::vector<Command> SaveCommands() {
  return {
      {"save",
       "imgfs save [-o FILE] [--format docker-archive|oci-archive] IMAGE...",
       "Write images to a tar archive that docker load, podman load, skopeo and imgfs load "
       "read.\n"
       "  -o, --output FILE  write to FILE (default: stdout, which must not be a terminal)\n"
       "  --format FORMAT    docker-archive (default; layers uncompressed, as docker save) or\n"
       "                     oci-archive (an OCI image layout; blobs and manifests as stored, so\n"
       "                     manifest digests are kept)\n"
       "An IMAGE given by name keeps that name in the archive; one given by ID has none.",
       {"--output", "--format"},
       {{"-o", "--output"}},
       CmdSave},
  };
}

}  // namespace imgfs
