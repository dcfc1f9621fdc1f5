// The Go-template subset (cli/go_template.h): each construct against what Go's
// text/template and docker's formatter print for the same template and data.
#include "cli/go_template.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace imgfs {
namespace {

TemplateValue Data() {
  TemplateValue cfg = TemplateValue::Object(true);
  cfg.Set("Env", TemplateValue::StrArray({"PATH=/usr/bin", "LANG=C"}));
  TemplateValue labels = TemplateValue::Object();
  labels.Set("zeta", TemplateValue::Str("z")).Set("alpha", TemplateValue::Str("a<&>"));
  cfg.Set("Labels", labels);
  cfg.Set("Cmd", TemplateValue());
  TemplateValue d = TemplateValue::Object(true);
  d.Set("Id", TemplateValue::Str("sha256:abc"));
  d.Set("RepoTags", TemplateValue::StrArray({"demo:v1", "demo:latest"}));
  d.Set("Empty", TemplateValue::Array());
  d.Set("Size", TemplateValue::Uint(1234));
  d.Set("Neg", TemplateValue::Int(-3));
  d.Set("Ratio", TemplateValue::Float(0.5));
  d.Set("Yes", TemplateValue::Bool(true));
  d.Set("Config", cfg);
  return d;
}

// Parses and runs `tmpl` over Data(); "ERR: message" on failure.
std::string Render(const std::string& tmpl, bool header = false) {
  auto t = Template::Parse(tmpl);
  if (!t.ok()) return "ERR: " + t.status().message();
  auto out = t->Execute(Data(), header);
  if (!out.ok()) return "ERR: " + out.status().message();
  return *out;
}

TEST(GoTemplate, FieldsAndText) {
  EXPECT_EQ(Render("id={{.Id}}"), "id=sha256:abc");
  EXPECT_EQ(Render("{{.Config.Env}}"), "[PATH=/usr/bin LANG=C]");
  EXPECT_EQ(Render("{{.Size}} {{.Neg}} {{.Ratio}} {{.Yes}}"), "1234 -3 0.5 true");
  EXPECT_EQ(Render("{{.Config.Labels}}"), "map[alpha:a<&> zeta:z]");
  EXPECT_EQ(Render("{{.Config.Labels.nope}}"), "<no value>");
  EXPECT_EQ(Render("{{.Config.Cmd}}"), "<nil>");
  EXPECT_EQ(Render("{{.Config.Labels.nope.deeper}}"), "<no value>");
  EXPECT_EQ(Render("{{.}}").substr(0, 13), "{sha256:abc [");
  EXPECT_EQ(Render("no actions"), "no actions");
  EXPECT_EQ(Render(""), "");
}

TEST(GoTemplate, StructRefusesUnknownField) {
  EXPECT_EQ(Render("{{.Nope}}"),
            "ERR: template: :1:3: executing at <.Nope>: can't evaluate field Nope in type "
            "struct");
  EXPECT_EQ(Render("{{.Id.X}}"),
            "ERR: template: :1:3: executing at <.Id.X>: can't evaluate field X in type string");
}

TEST(GoTemplate, Json) {
  EXPECT_EQ(Render("{{json .RepoTags}}"), R"(["demo:v1","demo:latest"])");
  // Map keys sorted, no HTML escaping (docker's SetEscapeHTML(false)).
  EXPECT_EQ(Render("{{json .Config.Labels}}"), R"({"alpha":"a<&>","zeta":"z"})");
  // Struct fields in their order.
  EXPECT_EQ(
      Render("{{json .Config}}"),
      R"({"Env":["PATH=/usr/bin","LANG=C"],"Labels":{"alpha":"a<&>","zeta":"z"},"Cmd":null})");
  EXPECT_EQ(Render("{{.RepoTags | json}}"), R"(["demo:v1","demo:latest"])");
  EXPECT_EQ(Render("{{json .Config.Labels.nope}}"), "null");
  EXPECT_EQ(Render("{{json .Ratio}}"), "0.5");
}

TEST(GoTemplate, IndexJoinSplitCase) {
  EXPECT_EQ(Render(R"({{index .Config.Labels "zeta"}})"), "z");
  EXPECT_EQ(Render(R"({{index .Config.Labels "absent"}})"), "");
  EXPECT_EQ(Render("{{index .RepoTags 1}}"), "demo:latest");
  EXPECT_EQ(Render("{{index .RepoTags 2}}"),
            "ERR: template: :1:3: executing at <index .RepoTags 2>: error calling index: index "
            "out of range: 2");
  EXPECT_EQ(Render(R"({{join .RepoTags ","}})"), "demo:v1,demo:latest");
  EXPECT_EQ(Render(R"({{join .Empty ","}})"), "");
  EXPECT_EQ(Render(R"({{split "a:b:c" ":"}})"), "[a b c]");
  EXPECT_EQ(Render(R"({{upper .Id}} {{lower "AbC"}} {{title "hello wide world"}})"),
            "SHA256:ABC abc Hello Wide World");
  EXPECT_EQ(Render(R"({{pad "x" 2 1}}|{{truncate "abcdef" 3}}|{{len .RepoTags}})"), "  x |abc|2");
}

TEST(GoTemplate, RangeIfWith) {
  EXPECT_EQ(Render("{{range .RepoTags}}[{{.}}]{{end}}"), "[demo:v1][demo:latest]");
  EXPECT_EQ(Render("{{range $i, $t := .RepoTags}}{{$i}}={{$t}};{{end}}"),
            "0=demo:v1;1=demo:latest;");
  EXPECT_EQ(Render("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}"),
            "alpha=a<&> zeta=z ");
  EXPECT_EQ(Render("{{range .Empty}}x{{else}}none{{end}}"), "none");
  EXPECT_EQ(Render("{{range .RepoTags}}{{.}}{{break}}{{end}}"), "demo:v1");
  EXPECT_EQ(Render("{{range .RepoTags}}{{if eq . \"demo:v1\"}}{{continue}}{{end}}{{.}}{{end}}"),
            "demo:latest");
  EXPECT_EQ(Render("{{if .Empty}}a{{else if .Yes}}b{{else}}c{{end}}"), "b");
  EXPECT_EQ(Render("{{if not .Yes}}a{{else}}c{{end}}"), "c");
  EXPECT_EQ(Render("{{with .Config}}{{len .Env}}{{end}}"), "2");
  EXPECT_EQ(Render("{{with .Empty}}x{{else}}empty{{end}}"), "empty");
  EXPECT_EQ(Render("{{range .RepoTags}}{{$.Id}} {{end}}"), "sha256:abc sha256:abc ");
  EXPECT_EQ(Render("{{$x := .Size}}{{$x}}"), "1234");
  EXPECT_EQ(Render("{{if and .Yes (gt .Size 1000)}}big{{end}}"), "big");
  EXPECT_EQ(Render("{{if or .Empty (lt .Neg 0)}}neg{{end}}"), "neg");
  EXPECT_EQ(Render("{{if ne .Id \"x\"}}ne{{end}}"), "ne");
}

TEST(GoTemplate, PrintFunctions) {
  EXPECT_EQ(Render("{{println .Id}}"), "sha256:abc\n");
  EXPECT_EQ(Render("{{println}}"), "\n");
  EXPECT_EQ(Render("{{print 1 2 \"a\" \"b\" 3}}"), "1 2ab3");
  EXPECT_EQ(Render("{{printf \"%s=%d|%5s|%-4d|%q\" \"k\" .Size \"ab\" 7 \"x\"}}"),
            "k=1234|   ab|7   |\"x\"");
  EXPECT_EQ(Render("{{printf \"%s\"}}"), "%!s(MISSING)");
  EXPECT_EQ(Render("{{\"a\" | printf \"%s-%s\" \"b\"}}"), "b-a");
}

TEST(GoTemplate, TrimAndComments) {
  EXPECT_EQ(Render("a  {{- .Id -}}  \n b"), "asha256:abcb");
  EXPECT_EQ(Render("a{{/* a comment */}}b"), "ab");
  EXPECT_EQ(Render("a {{- /* trimmed */ -}} b"), "ab");
  EXPECT_EQ(Render("{{`raw\\n`}}"), "raw\\n");
  EXPECT_EQ(Render("{{\"tab\\tnl\\n\"}}"), "tab\tnl\n");
}

TEST(GoTemplate, SyntaxErrorsNamePosition) {
  EXPECT_EQ(Render("{{.Id"), "ERR: template: :1:6: unclosed action");
  EXPECT_EQ(Render("ok\n  {{foo .Id}}"), "ERR: template: :2:5: function \"foo\" not defined");
  EXPECT_EQ(Render("{{if .Yes}}x"), "ERR: template: :1:1: unexpected EOF: {{if}} has no {{end}}");
  EXPECT_EQ(Render("{{end}}"), "ERR: template: :1:1: unexpected {{end}}");
  EXPECT_EQ(Render("{{break}}"), "ERR: template: :1:1: {{break}} outside {{range}}");
  EXPECT_EQ(Render("{{.Id .Size}}"), "ERR: template: :1:7: can't give argument to non-function");
  EXPECT_EQ(Render("{{\"abc}}"), "ERR: template: :1:3: unterminated quoted string");
  EXPECT_EQ(Render("{{(.Id}}"), "ERR: template: :1:7: unclosed left paren");
  EXPECT_EQ(Render("{{}}"), "ERR: template: :1:3: missing value for command");
  EXPECT_EQ(Render("{{template \"x\"}}"), "ERR: template: :1:3: {{template}} is not supported");
  EXPECT_EQ(Render("{{/* open"), "ERR: template: :1:1: unclosed comment");
  EXPECT_EQ(Render("{{.Id | .Size}}"),
            "ERR: template: :1:9: executing at <.Size>: can't give argument to non-function");
}

TEST(GoTemplate, HeaderModeReturnsTitles) {
  TemplateValue h = TemplateValue::Object();
  h.Set("ID", TemplateValue::Str("IMAGE ID")).Set("Size", TemplateValue::Str("SIZE"));
  auto f = DockerFormat::Parse("table {{.ID | lower}}\\t{{json .Size}}\\t{{upper .ID}}", "");
  ASSERT_TRUE(f.ok()) << f.status().message();
  TemplateValue row = TemplateValue::Object(true);
  row.Set("ID", TemplateValue::Str("AbCdEf")).Set("Size", TemplateValue::Str("5MB"));
  auto out = f->Render({row}, h);
  ASSERT_TRUE(out.ok()) << out.status().message();
  // Go's tabwriter: minwidth 10, padding 3.
  EXPECT_EQ(*out,
            "IMAGE ID   SIZE      IMAGE ID\n"
            "abcdef     \"5MB\"     ABCDEF\n");
}

TEST(GoTemplate, DockerFormatForms) {
  TemplateValue h = TemplateValue::Object();
  h.Set("A", TemplateValue::Str("COLUMN A")).Set("B", TemplateValue::Str("B"));
  TemplateValue r1 = TemplateValue::Object(true), r2 = TemplateValue::Object(true);
  r1.Set("A", TemplateValue::Str("x")).Set("B", TemplateValue::Str("a-very-long-cell-value"));
  r2.Set("A", TemplateValue::Str("yyyyyyyyyyyy")).Set("B", TemplateValue::Str("b"));
  auto table = DockerFormat::Parse("table", "{{.A}}\t{{.B}}\t{{.A}}");
  ASSERT_TRUE(table.ok());
  EXPECT_TRUE(table->is_table());
  EXPECT_EQ(*table->Render({r1, r2}, h),
            "COLUMN A       B                        COLUMN A\n"
            "x              a-very-long-cell-value   x\n"
            "yyyyyyyyyyyy   b                        yyyyyyyyyyyy\n");
  auto json = DockerFormat::Parse("json", "");
  ASSERT_TRUE(json.ok());
  EXPECT_FALSE(json->is_table());
  EXPECT_EQ(*json->Render({r1}, h), "{\"A\":\"x\",\"B\":\"a-very-long-cell-value\"}\n");
  auto plain = DockerFormat::Parse("  {{.A}}\\n{{.B}}  ", "");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain->Render({r1, r2}, h), "x\na-very-long-cell-value\nyyyyyyyyyyyy\nb\n");
  auto bad = DockerFormat::Parse("table {{.A", "");
  EXPECT_FALSE(bad.ok());
}

TEST(GoTemplate, TabAlignBlocks) {
  // A line without a cell in a column ends that column's block (Go's tabwriter).
  EXPECT_EQ(TabAlign("a\tb\nlonger-than-ten\tc\nno tabs\nx\ty\n"),
            "a                 b\nlonger-than-ten   c\nno tabs\nx         y\n");
}

TEST(GoTemplate, TabAlignManyLines) {
  // A table of 30,000 lines (150,000 tabs) is still a table; a line of 300 cells is not.
  std::string text, want;
  for (int i = 0; i < 30000; i++) {
    text += "r" + std::to_string(i % 7) + "\tb\tc\td\te\tf\n";
    want += "r" + std::to_string(i % 7) + "        b         c         d         e         f\n";
  }
  std::string got = TabAlign(text);
  // Not EXPECT_EQ: gtest's diff of two 1.6 MB strings takes minutes.
  EXPECT_TRUE(got == want)
      << "differs from byte "
      << std::mismatch(got.begin(), got.end(), want.begin(), want.end()).first - got.begin();
  std::string wide(299, '\t');
  EXPECT_EQ(TabAlign(wide + "x\ny\tz\n"), wide + "x\ny\tz\n");
}

// TableWriter must give TabAlign's text for the same cells joined by tabs and newlines:
// tables of random shapes and cells (wide UTF-8, empty cells, cells at and around the
// minimum width, cells with a tab or a newline, an unfinished last line).
TEST(GoTemplate, TableWriterIsTabAlign) {
  const std::vector<std::string> pool = {
      "",
      "a",
      "<none>",
      "exactly7",
      "1234567",
      "12345678901",
      "docker.io/some/long/repository-name",
      "\xc3\xa9t\xc3\xa9",
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe5\x90\x8d\xe5\x89\x8d",
      "7.8MB (partial: 1.2MB of 7.8MB local)",
      "with\ttab",
      "with\nnewline"};
  uint32_t seed = 12345;
  auto next = [&](uint32_t n) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) % n;
  };
  int fast = 0;
  for (int round = 0; round < 2000; round++) {
    size_t columns = 1 + next(7);
    size_t rows = next(6);
    bool odd_cells = next(10) == 0, special = next(4) == 0;
    size_t minwidth = next(3) == 0 ? 0 : 10, padding = next(3) == 0 ? 1 : 3;
    TableWriter w(columns, minwidth, padding);
    std::string joined;
    size_t n = rows * columns + (odd_cells ? 1 + next(static_cast<uint32_t>(columns)) : 0);
    bool plain = true;
    for (size_t i = 0; i < n; i++) {
      std::string cell = pool[next(special ? pool.size() : pool.size() - 2)];
      plain = plain && cell.find_first_of("\t\n") == std::string::npos;
      w.Cell(cell);
      joined += cell;
      joined += (i + 1) % columns == 0 ? '\n' : '\t';
    }
    if (plain && n % columns == 0) fast++;
    ASSERT_EQ(w.Take(), TabAlign(joined, minwidth, padding))
        << "round " << round << ", " << columns << " columns:\n"
        << joined;
    EXPECT_EQ(w.cells(), 0u);
  }
  EXPECT_GT(fast, 1000);  // most rounds took the direct path, not TabAlign's
  TableWriter one(1);
  one.Cell("x");
  one.Cell("yy");
  EXPECT_EQ(one.Take(), "x\nyy\n");
  EXPECT_EQ(TableWriter(3).Take(), "");
}

TEST(GoTemplate, FromJson) {
  auto v = TemplateValueFromJson(R"({"b":[1,-2,3.5,true,null,"s"],"a":{"k":"v"}})");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(TemplateValuePrint(*v), "map[a:map[k:v] b:[1 -2 3.5 true <nil> s]]");
  EXPECT_EQ(TemplateValueToJson(*v), R"({"a":{"k":"v"},"b":[1,-2,3.5,true,null,"s"]})");
  EXPECT_FALSE(TemplateValueFromJson("{").ok());
}

// Found by go_template_fuzz: a float written as a whole number past 64 bits did not
// parse back. Every float the JSON writer writes reads back as the same value.
TEST(GoTemplate, FloatsRoundTripThroughJson) {
  for (double f : {2666666666666666666666.5, 5e20, 1.8446744073709552e19, 1e19, 9e18, 1e21, 1e300,
                   0.5, 1e-7, 123456789.0, -2.5e21}) {
    TemplateValue v = TemplateValue::Array({TemplateValue::Float(f)});
    std::string json = TemplateValueToJson(v);
    auto back = TemplateValueFromJson(json);
    ASSERT_TRUE(back.ok()) << json << ": " << back.status().message();
    ASSERT_EQ(back->items().size(), 1u);
    const TemplateValue& x = back->items()[0];
    double got = x.kind() == TemplateValue::Kind::kFloat  ? x.f()
                 : x.kind() == TemplateValue::Kind::kUint ? static_cast<double>(x.u())
                                                          : static_cast<double>(x.i());
    EXPECT_EQ(got, f) << json;
  }
}

TEST(GoTemplate, RunawayIsBounded) {
  auto t = Template::Parse("{{range 1000}}{{range 1000}}{{range 1000}}x{{end}}{{end}}{{end}}");
  ASSERT_TRUE(t.ok());
  auto out = t->Execute(Data());
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("too many steps"), std::string::npos);
}

}  // namespace
}  // namespace imgfs
