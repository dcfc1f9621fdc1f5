// The --format template engine (cli/go_template.h) from arbitrary bytes: the input is a
// template, optionally followed by "\n---\n" and a JSON document to run it over (else a
// fixed inspect-like value). Properties: no crash, no runaway (execution is bounded);
// every error is InvalidArgument and names a position ("template: :L:C: "); a JSON
// document that parses round-trips through TemplateValueToJson to the same printout.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "cli/go_template.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {

TemplateValue Fixed() {
  TemplateValue cfg = TemplateValue::Object(true);
  cfg.Set("Env", TemplateValue::StrArray({"PATH=/usr/bin", "A=b"}));
  TemplateValue labels = TemplateValue::Object();
  labels.Set("k", TemplateValue::Str("v")).Set("a", TemplateValue::Str("<&>"));
  cfg.Set("Labels", labels).Set("Cmd", TemplateValue());
  TemplateValue d = TemplateValue::Object(true);
  d.Set("Id", TemplateValue::Str("sha256:abc"));
  d.Set("RepoTags", TemplateValue::StrArray({"a:1", "b:2"}));
  d.Set("Size", TemplateValue::Uint(12345)).Set("Neg", TemplateValue::Int(-1));
  d.Set("F", TemplateValue::Float(1.5)).Set("T", TemplateValue::Bool(true));
  d.Set("Config", cfg);
  return d;
}

void CheckError(const Status& st) {
  FUZZ_CHECK(st.code() == Status::Code::kInvalidArgument);
  FUZZ_CHECK(st.message().find("template: :") != std::string::npos ||
             st.message().find("bad JSON") != std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view tmpl = in, json;
  if (size_t sep = in.find("\n---\n"); sep != std::string_view::npos) {
    tmpl = in.substr(0, sep);
    json = in.substr(sep + 5);
  }
  TemplateValue value = Fixed();
  if (!json.empty()) {
    auto v = TemplateValueFromJson(json);
    if (v.ok()) {
      value = *v;
      // Round trip: what we write parses back to a value that prints the same.
      auto again = TemplateValueFromJson(TemplateValueToJson(value));
      FUZZ_CHECK(again.ok());
      FUZZ_CHECK(TemplateValuePrint(*again) == TemplateValuePrint(value));
    } else {
      CheckError(v.status());
    }
  }
  auto t = Template::Parse(tmpl);
  if (!t.ok()) {
    CheckError(t.status());
  } else {
    for (bool header : {false, true}) {
      auto out = t->Execute(value, header);
      if (!out.ok()) CheckError(out.status());
    }
  }
  TemplateValue header = TemplateValue::Object();
  header.Set("Id", TemplateValue::Str("IMAGE ID")).Set("Size", TemplateValue::Str("SIZE"));
  auto f = DockerFormat::Parse(tmpl, "{{.Id}}\t{{.Size}}");
  if (f.ok()) {
    auto out = f->Render({value, value}, header);
    if (!out.ok()) CheckError(out.status());
  } else {
    CheckError(f.status());
  }
  (void)TabAlign(in);
  // TableWriter, the direct table printer, against TabAlign of the same lines: cells are
  // the input split at 0x1f, 1 to 6 to a line (the first byte says how many).
  if (!in.empty()) {
    size_t columns = 1 + static_cast<unsigned char>(in[0]) % 6;
    TableWriter w(columns);
    std::string joined;
    size_t n = 0;
    for (size_t at = 1; at <= in.size();) {
      size_t end = std::min(in.find('\x1f', at), in.size());
      std::string_view cell = in.substr(at, end - at);
      w.Cell(cell);
      joined.append(cell);
      joined += ++n % columns == 0 ? '\n' : '\t';
      at = end + 1;
    }
    FUZZ_CHECK(w.Take() == TabAlign(joined));
  }
  return 0;
}
