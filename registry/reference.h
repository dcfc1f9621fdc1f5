// Image references, parsed and normalised exactly as docker does (the grammar of
// distribution's `reference` package, v2.8):
//
//   reference  := name [ ":" tag ] [ "@" digest ]
//   name       := [domain "/"] path-component ["/" path-component]*      (<= 255 chars)
//   domain     := domain-component ["." domain-component]* [":" port]
//   path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//   tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//
// Normalisation (ParseNormalizedNamed): the first component is a registry host when
// it contains "." or ":", is "localhost", or has upper case; otherwise the host is
// docker.io. "index.docker.io" becomes "docker.io"; a one-component docker.io path
// gets "library/". Upper case in the repository is rejected with its own message.
//
// Thread-safety: values; pure functions.
#ifndef IMGFS_REGISTRY_REFERENCE_H_
#define IMGFS_REGISTRY_REFERENCE_H_

#include <string>
#include <string_view>

#include "index/digest.h"
#include "index/names.h"  // FamiliarizeName
#include "index/status.h"

namespace imgfs {

struct Reference {
  std::string domain;  // "docker.io", "localhost:5000", "quay.io"
  std::string path;    // "library/ubuntu", "user1/app"
  std::string tag;     // empty when none was given
  std::string digest;  // "sha256:<hex>" or empty

  // "docker.io/library/ubuntu"
  std::string Name() const { return domain + "/" + path; }
  // "ubuntu", "user1/app", "localhost:5000/app"
  std::string FamiliarName() const;
  // Canonical string with every part that is set: "docker.io/library/ubuntu:16.04".
  std::string String() const;
  // Familiar string with every part that is set: "ubuntu:16.04".
  std::string FamiliarString() const;
  // What a pull or lookup resolves: digest wins over tag; no tag and no digest
  // means "latest".
  Reference Normalized() const;
};

// Parses a user-supplied reference (docker's ParseNormalizedNamed).
Result<Reference> ParseReference(std::string_view s);
// Parses and normalises (digest wins, default tag "latest").
Result<Reference> ParseDockerRef(std::string_view s);

bool IsValidTag(std::string_view tag);
bool IsValidPathComponent(std::string_view c);
bool IsValidDomain(std::string_view d);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_REFERENCE_H_
