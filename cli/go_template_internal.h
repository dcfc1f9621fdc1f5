// The parsed form of a template, shared by the parser (go_template_parse.cc), the
// executor (go_template_exec.cc) and the public API (go_template.cc). Not for other
// users: include cli/go_template.h.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cli/go_template.h"
#include "index/status.h"

namespace imgfs {
namespace gotmpl {

struct Pipeline;

enum class ArgKind { kDot, kField, kVar, kString, kInt, kUint, kFloat, kBool, kNil, kFunc, kPipe };

// One operand of a command: ".A.B", "$x.C", a literal, a function name, "(pipeline).D".
struct Arg {
  ArgKind kind = ArgKind::kDot;
  size_t pos = 0;                   // byte offset in the template
  std::string name;                 // variable ("$x") or function name
  std::vector<std::string> fields;  // field chain after the base
  std::string str;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  bool b = false;
  std::shared_ptr<Pipeline> pipe;
};

struct Command {
  size_t pos = 0, end = 0;
  std::vector<Arg> args;
};

struct Pipeline {
  size_t pos = 0;
  std::vector<std::string> decl;
  bool assign = false;  // "=" rather than ":="
  std::vector<Command> cmds;
};

}  // namespace gotmpl

struct TemplateNode {
  enum class Kind { kList, kText, kAction, kIf, kRange, kWith, kBreak, kContinue };
  Kind kind = Kind::kList;
  size_t pos = 0;
  std::string text;
  gotmpl::Pipeline pipe;
  std::vector<TemplateNode> list, else_list;
  std::shared_ptr<const std::string> src;  // the root keeps the template text
};

namespace gotmpl {

// The functions a template may call.
const std::set<std::string>& Functions();
// "template: :LINE:COL: " for byte offset `pos` of `src`.
std::string Where(std::string_view src, size_t pos);
inline bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// Parses `src` into `root` (go_template_parse.cc).
Status ParseTemplate(std::string_view src, TemplateNode* root);
// Runs a parsed template (go_template_exec.cc).
Result<std::string> ExecuteTemplate(const TemplateNode& root, std::string_view src,
                                    const TemplateValue& data, bool header, bool lenient);

}  // namespace gotmpl
}  // namespace imgfs
