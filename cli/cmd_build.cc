// imgfs subcommands. Images from a Dockerfile: build (registry/builder.h).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "registry/build_run.h"
#include "registry/builder.h"
#include "registry/reference.h"

namespace imgfs {
namespace {

int CmdBuild(const std::string& root, const Args& a) {
  if (a.pos.size() != 1) Die("build: want one CONTEXT directory (see imgfs build --help)", 2);
  if (!a.Has("--tag")) Die("build: -t NAME[:TAG] is required", 2);
  auto ref = ParseDockerRef(a.Get("--tag"));
  if (!ref.ok()) return Fail(ref.status(), "build: -t");
  if (!ref->digest.empty()) Die("build: -t must be a tag, not a digest");
  BuildRequest req;
  req.context = a.pos[0];
  req.dockerfile = a.Get("--file");
  req.no_cache = a.Has("--no-cache");
  req.target = a.Get("--target");
  if (a.Has("--network")) {
    std::string n = a.Get("--network");
    if (n != "host" && n != "none" && n != "default")
      Die("build: --network " + n + ": want host, none or default", 2);
    req.host_network = n == "host";
  }
  req.name = ref->Normalized().String();
  for (const std::string& kv : a.Multi("--build-arg")) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      // As docker: `--build-arg NAME` takes NAME from the environment, if set.
      if (eq == 0) Die("build: --build-arg " + kv + ": want NAME=VALUE", 2);
      if (const char* v = std::getenv(kv.c_str())) req.build_args[kv] = v;
      continue;
    }
    req.build_args[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  auto store = OpenStore(root);
  // FROM / COPY --from of an image the store lacks: pulled first, as docker does
  // (`imgfs pull`, so registries.conf, credentials and its output apply).
  req.resolve = [&](const std::string& s) -> Result<Digest> {
    auto id = ResolveImage(*store, s);
    if (id.ok() || !id.status().IsNotFound() || !ParseDockerRef(s).ok()) return id;
    // pull's stderr goes to a file of ours (mkstemp: not a name another user could
    // have put a link at in a shared $TMPDIR).
    const char* t = std::getenv("TMPDIR");
    std::string err = std::string(t && *t ? t : "/var/tmp") + "/imgfs-pull-err.XXXXXX";
    int fd = ::mkstemp(err.data());
    if (fd < 0) return Status::FromErrno("mkstemp " + err);
    ::close(fd);
    auto rc = Spawn({SelfExe(), "--root", store->root(), "pull", s}, false, err);
    std::string last;
    {
      std::ifstream in(err);
      std::string line;
      while (std::getline(in, line)) {
        if (!line.empty()) last = line;
      }
    }
    ::unlink(err.c_str());
    if (rc.ok() && *rc == 0) return ResolveImage(*store, s);
    if (last.rfind("imgfs: pull: ", 0) == 0) last = last.substr(13);
    return Status::NotFound(id.status().message() + " (pulling it failed: " +
                            (last.empty() ? "imgfs pull exited non-zero" : last) + ")");
  };
  auto out = BuildImage(*store, req);
  if (!out.ok()) return Fail(out.status(), "build");
  std::printf("Successfully built %s\n", out->id.hex().substr(0, 12).c_str());
  std::printf("Successfully tagged %s\n", ref->Normalized().FamiliarString().c_str());
  return 0;
}

}  // namespace

std::vector<Command> BuildCommands() {
  return {
      {"build",
       "imgfs build -t NAME[:TAG] [-f DOCKERFILE] [--build-arg K=V]... [--no-cache]\n"
       "            [--network host|none] [--target STAGE] CONTEXT",
       "Build an image from a Dockerfile and a context directory (as root).\n"
       "Supported: FROM (an image in the store, pulled when missing, or scratch; ARG before\n"
       "FROM), COPY and ADD of context files (--chown=USER[:GROUP], numbers or names looked\n"
       "up in the image's /etc/passwd and /etc/group; ADD extracts a local tar archive;\n"
       ".dockerignore),\n"
       "RUN (shell form through /bin/sh -c or SHELL, or exec form), ENV ARG WORKDIR USER\n"
       "LABEL CMD ENTRYPOINT EXPOSE VOLUME STOPSIGNAL SHELL HEALTHCHECK, with docker's\n"
       "$VAR / ${VAR:-default} substitution. Multi-stage: FROM IMAGE AS NAME, FROM NAME,\n"
       "COPY --from=NAME|INDEX|IMAGE; each stage has its own ARGs; earlier stages are\n"
       "stored untagged, only the last (or --target) stage gets the name. ONBUILD,\n"
       "MAINTAINER and other flags are refused (the line is named; nothing is stored).\n"
       "RUN runs in a runc container whose root is an overlayfs over the image so far (in\n"
       "an imgfs mount of the store; mounted for the build and unmounted after when none is\n"
       "running); the overlay's upper directory becomes the step's layer (deleted files are\n"
       "whiteouts). The image before each RUN is stored untagged (an intermediate image).\n"
       "No network unless --network host. A non-zero exit fails the build: \"The command\n"
       "'/bin/sh -c false' returned a non-zero code: 1\". What a killed build left in\n"
       "$TMPDIR (overlay, store mount, runc container) is cleaned up by the next build.\n"
       "Build cache: an unchanged COPY/ADD (same base, sources, destination, owner) and an\n"
       "unchanged RUN (same parent image and instruction) reuse their layer (\"Using cache\");\n"
       "--no-cache makes them again.\n"
       "  -t, --tag NAME[:TAG]    the name of the new image (required)\n"
       "  -f, --file PATH         the Dockerfile (default CONTEXT/Dockerfile)\n"
       "      --build-arg K=V     set a build-time variable (an ARG)\n"
       "      --network MODE      RUN's network: none (default: loopback only) or host\n"
       "      --target STAGE      build up to that stage and name it\n"
       "      --no-cache          do not use the build cache",
       {"--tag", "--file", "--build-arg", "--network", "--target"},
       {{"-t", "--tag"}, {"-f", "--file"}},
       CmdBuild,
       {"--no-cache"}},
  };
}

}  // namespace imgfs
