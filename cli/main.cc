// The imgfs command. All work is in commands.cc; this only sets the locale so that
// libarchive hands names over as raw bytes in a UTF-8 world (and runs the auto_unmount
// guard when exec'd under its name).
#include <clocale>
#include <cstring>

#include "fs/auto_unmount.h"

namespace imgfs {
int Main(int argc, char** argv);
}

int main(int argc, char** argv) {
  // The auto_unmount guard a mount daemon starts (fs/auto_unmount.h) is this binary.
  if (argc > 0 && std::strcmp(argv[0], imgfs::kAutoUnmountGuardName) == 0)
    return imgfs::RunAutoUnmountGuard(argc, argv);
  if (!std::setlocale(LC_CTYPE, "C.UTF-8")) std::setlocale(LC_CTYPE, "");
  return imgfs::Main(argc, argv);
}
