// Strict command-line parsing from a command's declared flag table (cli_common.h's
// Command: value_flags, aliases, bool_flags). A flag the table does not declare, a
// missing value, a value given to a boolean other than true/false, all are usage
// errors (exit 2) naming the flag.
#pragma once

#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "index/status.h"

namespace imgfs {

struct FlagTable {
  std::vector<std::string> value_flags, bool_flags;
};

// The flags `c` accepts, from its declared fields (see Command::bool_flags).
FlagTable FlagsOf(const Command& c);

// Parses the words after the command name. *help is set when -h/--help was given.
// InvalidArgument "CMD: unknown flag --x (see imgfs CMD --help)" and the like.
Result<Args> ParseFlags(const Command& c, const std::vector<std::string>& words, bool* help);

// Go's strconv.ParseBool: 1 t T TRUE true True, 0 f F FALSE false False.
Result<bool> ParseBoolFlag(const std::string& flag, const std::string& value);

}  // namespace imgfs
