// imgfs push: an image from the store to a registry (registry/pusher.h), with docker's
// output: "The push refers to repository [NAME]", a line per blob, then
// "TAG: digest: sha256:… size: N".
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "registry/image_loader.h"
#include "registry/pusher.h"

namespace imgfs {
namespace {

int CmdPush(const std::string& root, const Args& a) {
  if (a.pos.empty() || a.pos.size() > 2) Die("push: want IMAGE [DESTINATION]", 2);
  std::string dest_s = a.pos.size() == 2 ? a.pos[1] : a.pos[0];
  auto dest = ParseDockerRef(dest_s);
  if (!dest.ok()) return Fail(dest.status(), "push");
  if (!dest->digest.empty()) Die("push: the destination must be a tag, not a digest", 2);
  PushOptions po;
  if (a.Has("--chunk-size")) {
    auto n = ParseSize(a.Get("--chunk-size"));
    if (!n.ok() || *n == 0) Die("push: --chunk-size wants a size such as 5M", 2);
    po.chunk_size = *n;
  }
  po.cross_mount = !a.Has("--no-mount");
  bool quiet = a.Has("--quiet");
  auto store = OpenStore(root);
  // Shared, like a pull: rmi and prune wait, so no blob goes away mid-upload.
  auto lock = GcLock::Acquire(*store, false);
  if (!lock.ok()) return Fail(lock.status(), "push");
  auto id = ResolveImage(*store, a.pos[0]);
  if (!id.ok()) return Fail(id.status(), "push");
  if (a.pos.size() == 1) {
    // Without a DESTINATION the image must have been named by its name (docker's
    // rule): an ID prefix ("3f2a…") would otherwise be pushed as docker.io/library/3f2a….
    auto rec = store->GetRef(dest->String());
    if (!rec.ok() || !rec->has_value())
      Die("push: " + a.pos[0] +
              " is not a local name: give a DESTINATION (imgfs push IMAGE NAME:TAG)",
          2);
  }
  if (!quiet) {
    std::printf("The push refers to repository [%s]\n", dest->FamiliarName().c_str());
    std::fflush(stdout);
    po.progress = [](const std::string& blob, const std::string& status) {
      if (status == "Preparing") return;
      std::printf("%s: %s\n", blob.c_str(), status.c_str());
      std::fflush(stdout);
    };
  }
  RegistryClient client(dest->domain, RegistryOptionsFor(root, a));
  auto out = PushImage(*store, *id, *dest, client, po);
  if (!out.ok()) return Fail(out.status(), "push " + dest->FamiliarString());
  if (quiet) {
    std::printf("%s\n", dest->FamiliarString().c_str());
  } else {
    std::printf("%s: digest: %s size: %llu\n", dest->tag.c_str(),
                out->manifest_digest.str().c_str(),
                static_cast<unsigned long long>(out->manifest_size));
  }
  return 0;
}

}  // namespace

std::vector<Command> PushCommands() {
  return {
      {"push",
       "imgfs push [-q] [--chunk-size SIZE] [--no-mount] [--creds USER[:PASS]] "
       "[--tls-verify=false] "
       "[--insecure-registry HOST] IMAGE "
       "[DESTINATION]",
       "Upload an image to a registry (as DESTINATION, default the name IMAGE was given by).\n"
       "The manifest is sent byte for byte as stored, so its digest is the local one.\n"
       "  -q, --quiet                 print only the pushed name\n"
       "  --chunk-size SIZE           upload blobs in PATCH chunks of SIZE (default: one PUT)\n"
       "  --no-mount                  never mount blobs from another repository of the registry\n"
       "  --insecure-registry HOST    allow plain HTTP for HOST (loopback hosts always may)\n"
       "  --authfile FILE             credentials from FILE only (also $REGISTRY_AUTH_FILE)\n"
       "  --creds USER[:PASSWORD]     these credentials (the password is asked for when left "
       "out)\n"
       "  --cert-dir DIR              CAs (*.crt) and client certificate (NAME.cert, NAME.key)\n"
       "  --tls-verify=false          check no certificate, allow plain HTTP (a warning)\n"
       "Credentials and certificates as for pull (imgfs login, certs.d).",
       {"--chunk-size", "--insecure-registry", "--authfile", "--creds", "--cert-dir"},
       {{"-q", "--quiet"}},
       CmdPush,
       {"--quiet", "--no-mount", "--tls-verify"}},
  };
}

}  // namespace imgfs
