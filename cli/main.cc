// The imgfs command. All work is in commands.cc; this only sets the locale so that
// libarchive hands names over as raw bytes in a UTF-8 world.
#include <clocale>

namespace imgfs {
int Main(int argc, char** argv);
}

int main(int argc, char** argv) {
  if (!std::setlocale(LC_CTYPE, "C.UTF-8")) std::setlocale(LC_CTYPE, "");
  return imgfs::Main(argc, argv);
}
