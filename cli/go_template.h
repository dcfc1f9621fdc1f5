// Go text/template, the subset docker, podman and skopeo users write in --format, over a
// small JSON-like value tree. What it does:
//
//   {{.Field.Sub}}  {{.}}  {{$}}  {{$v}}  {{$v := pipeline}}  "str" `raw` 12 1.5 true nil
//   pipelines {{.X | json}}, parenthesised arguments {{json (index .M "k")}}
//   {{if}} {{else if}} {{else}} {{end}}, {{range [$i, $e :=] .L}} {{else}} {{break}}
//   {{continue}}, {{with}}, comments {{/* */}}, trim markers {{- and -}}
//   functions: docker's json split join title lower upper pad truncate, Go's and or not
//   len index print printf println eq ne lt le gt ge
//
// Values print as Go's fmt prints them ([a b] for a list, map[k:v] for a map, {a b}
// for a struct, <no value> for a missing map key). A struct (TemplateValue::is_struct)
// refuses an unknown field with an error, as Go's typed contexts do; a map gives
// <no value>. `json` writes struct fields in their order and map keys sorted, without
// HTML escaping (docker's SetEscapeHTML(false)).
//
// Errors are values: Parse returns InvalidArgument "template: :LINE:COL: WHAT" for a
// syntax error, Execute returns InvalidArgument "template: :LINE:COL: executing at
// <ACTION>: WHAT". Execution is bounded (steps and output size), so a hostile
// template cannot run away.
//
// DockerFormat adds docker's layer on top: the "table" prefix (a header line made by
// running the template over the column names, columns aligned as Go's tabwriter with
// minwidth 10, padding 3), "\t" and "\n" written as two characters, and "json".
//
// Thread-safety: a parsed Template is immutable and may be executed from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "index/status.h"

namespace imgfs {

class TemplateValue {
 public:
  enum class Kind { kNull, kBool, kInt, kUint, kFloat, kString, kArray, kObject };

  TemplateValue() = default;
  static TemplateValue Bool(bool b);
  static TemplateValue Int(int64_t v);
  static TemplateValue Uint(uint64_t v);
  static TemplateValue Float(double v);
  static TemplateValue Str(std::string s);
  static TemplateValue Array(std::vector<TemplateValue> items = {});
  static TemplateValue StrArray(const std::vector<std::string>& items);
  // A map (is_struct false) or a struct (true: unknown fields are errors).
  static TemplateValue Object(bool is_struct = false);

  Kind kind() const { return kind_; }
  bool is_struct() const { return is_struct_; }
  void set_struct(bool s) { is_struct_ = s; }
  bool b() const { return b_; }
  int64_t i() const { return i_; }
  uint64_t u() const { return u_; }
  double f() const { return f_; }
  const std::string& s() const { return s_; }
  // Array elements, or object values (in insertion order, matching keys()).
  const std::vector<TemplateValue>& items() const { return items_; }
  const std::vector<std::string>& keys() const { return keys_; }

  // Objects: adds or replaces a field; returns *this for chaining.
  TemplateValue& Set(const std::string& key, TemplateValue v);
  // Arrays: appends.
  TemplateValue& Push(TemplateValue v);
  // Objects: the field, or nullptr.
  const TemplateValue* Find(std::string_view key) const;
  TemplateValue* FindMutable(std::string_view key);

 private:
  Kind kind_ = Kind::kNull;
  bool is_struct_ = false;
  bool b_ = false;
  int64_t i_ = 0;
  uint64_t u_ = 0;
  double f_ = 0;
  std::string s_;
  std::vector<std::string> keys_;
  std::vector<TemplateValue> items_;
};

// A JSON document as a value tree (objects are maps). InvalidArgument when malformed.
Result<TemplateValue> TemplateValueFromJson(std::string_view json);
// Compact JSON of a value (struct fields in order, map keys sorted, no HTML escaping).
std::string TemplateValueToJson(const TemplateValue& v);
// The value as Go's fmt.Sprint prints it.
std::string TemplateValuePrint(const TemplateValue& v);

struct TemplateNode;

class Template {
 public:
  // Parses `text`. InvalidArgument "template: :LINE:COL: WHAT" on a syntax error.
  static Result<Template> Parse(std::string_view text);
  // Runs the template over `data`. With header_mode, docker's formatting functions
  // (json split join title lower upper pad truncate) return their argument unchanged,
  // as docker does when it renders a table's header line. With lenient_fields, an
  // unknown struct field gives <no value> rather than an error (docker inspect's
  // fallback to the raw JSON).
  Result<std::string> Execute(const TemplateValue& data, bool header_mode = false,
                              bool lenient_fields = false) const;

 private:
  std::shared_ptr<const TemplateNode> root_;
};

// docker's --format on top of a Template: "table [TEMPLATE]", "json", or a template.
class DockerFormat {
 public:
  // `format` as the user wrote it; `default_table` is the command's default table body
  // (used for a bare "table"). InvalidArgument on a template syntax error.
  static Result<DockerFormat> Parse(std::string_view format, std::string_view default_table);
  bool is_table() const { return table_; }
  // A bare "table": the command's default table body, which a command may print with its
  // own TableWriter (byte for byte what Render gives) rather than run the template.
  bool is_default_table() const { return default_table_; }
  // Formats every row; for a table, the header line (the template run over `header`,
  // a map of field name to column title) comes first and columns are aligned. Each row
  // ends with a newline.
  Result<std::string> Render(const std::vector<TemplateValue>& rows,
                             const TemplateValue& header) const;

 private:
  bool table_ = false;
  bool default_table_ = false;
  Template tmpl_;
};

// Aligns tab-terminated cells as Go's text/tabwriter does (flags 0, pad char ' ').
std::string TabAlign(std::string_view text, size_t minwidth = 10, size_t padding = 3);

// A table of `columns` cells a line, aligned: Take() returns what TabAlign (same minwidth
// and padding) returns for the lines "cell\tcell\t...\tcell\n", without building that text
// and splitting it again (a listing of 10,000 rows: `imgfs images`). Cells are kept back to
// back in one buffer and column widths are kept as cells arrive. A cell holding '\t' or
// '\n', or an unfinished last line, would change the line structure: then the joined text
// goes through TabAlign itself, so Take() is TabAlign's answer in every case.
//
// Thread-safety: a value; one thread at a time.
class TableWriter {
 public:
  explicit TableWriter(size_t columns, size_t minwidth = 10, size_t padding = 3);
  // Appends a cell to the current line; every `columns` cells end a line.
  void Cell(std::string_view s);
  size_t cells() const { return ends_.size(); }
  // The aligned text; the writer is left empty.
  std::string Take();

 private:
  std::string Joined() const;
  size_t columns_, minwidth_, padding_;
  std::string buf_;                // the cells, back to back
  std::vector<size_t> ends_;       // where each cell ends in buf_
  std::vector<size_t> width_;      // each cell's width (UTF-8 characters)
  std::vector<size_t> col_width_;  // widest cell of each column
  bool plain_ = true;              // no cell holds '\t' or '\n'
};

}  // namespace imgfs
