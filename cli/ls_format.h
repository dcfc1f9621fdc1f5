// `imgfs ls`: listing an image tree (plain, long, tsv), and quoting names for output.
//
// Depth: listing is an explicit depth-first walk with one small frame per open
// directory and one shared path buffer, so a tree of any depth (a layer can nest
// directories 80,000 deep through symlinks) lists in O(depth) memory and no recursion.
//
// Names are bytes from an image; printed raw, a name can carry a newline (a forged
// line) or terminal escape sequences. Quoting, as GNU ls does on a terminal:
//   kShellEscape  (a terminal) — names that need it are quoted for a POSIX shell:
//                 'a b', and control bytes, DEL, C1 controls and bytes that are not
//                 valid UTF-8 as $'\n', $'\033', $'\351':  'a'$'\n''b'
//   kEscape       (a pipe or a file, and always for --format tsv) — C backslash
//                 escapes of exactly the bytes below 0x20, DEL and the backslash
//                 itself: \\ \t \n \r \a \b \f \v, else \NNN (octal); every other byte
//                 as it is (UTF-8 or not, as GNU ls writes to a pipe). Unambiguous: a
//                 backslash in the output always starts an escape, so a tab or a
//                 newline in the output is always a separator.
//
// Thread-safety: plain functions; one listing per call.
#ifndef IMGFS_CLI_LS_FORMAT_H_
#define IMGFS_CLI_LS_FORMAT_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "fs/image_view.h"
#include "fs/span_cache.h"

namespace imgfs {

enum class NameQuoting { kShellEscape, kEscape };

std::string QuoteName(std::string_view name, NameQuoting q);
void AppendQuoted(std::string* out, std::string_view name, NameQuoting q);

struct LsOptions {
  bool longfmt = false, recursive = false, tsv = false, sha = false;
  NameQuoting quoting = NameQuoting::kEscape;  // for the ls format; tsv always uses kEscape
};

// Lists node `n` of the view's tree, shown as `path`, to `out` (a directory: its
// children, and with `recursive` everything below). Returns the first error (content
// hashing for --sha256); what was listed before it has been written.
Status ListTree(const ImageView& view, LayerReader& cache, uint32_t n, const std::string& path,
                const LsOptions& o, FILE* out);

}  // namespace imgfs

#endif  // IMGFS_CLI_LS_FORMAT_H_
