#include "config/env_expand.h"

#include <cstdlib>

namespace wsgate::config {

namespace {

bool nameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool nameChar(char c) { return nameStart(c) || (c >= '0' && c <= '9'); }

}  // namespace

std::optional<std::string> environmentVariable(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (!value) return std::nullopt;
  return std::string(value);
}

std::string expandVariables(const std::string& text, const VariableLookup& lookup,
                            Diagnostics& diags) {
  std::string out;
  out.reserve(text.size());
  int line = 1;
  size_t line_start = 0;
  char quote = 0;         // inside '…' or "…" on this line
  bool comment = false;   // after a # that starts a comment, to the end of the line
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '\n') {
      out += c;
      ++i;
      ++line;
      line_start = i;
      quote = 0;
      comment = false;
      continue;
    }
    if (comment) {
      out += c;
      ++i;
      continue;
    }
    if (quote == 0 && c == '#' && (i == line_start || text[i - 1] == ' ' || text[i - 1] == '\t')) {
      comment = true;
      out += c;
      ++i;
      continue;
    }
    if (c == '\'' || c == '"') {
      if (quote == 0) {
        quote = c;
      } else if (quote == c) {
        quote = 0;
      }
    }
    if (c == '$' && text.compare(i, 3, "$${") == 0) {
      out += "${";
      i += 3;
      continue;
    }
    if (c != '$' || text.compare(i, 2, "${") != 0) {
      out += c;
      ++i;
      continue;
    }
    const int column = static_cast<int>(i - line_start) + 1;
    const size_t close = text.find('}', i + 2);
    const size_t eol = text.find('\n', i);
    if (close == std::string::npos || (eol != std::string::npos && close > eol)) {
      diags.error(line, column, "(variables)", "unclosed ${ (write $${ for a literal ${)");
      out += c;
      ++i;
      continue;
    }
    const std::string body = text.substr(i + 2, close - i - 2);
    const size_t dash = body.find(":-");
    const std::string name = body.substr(0, dash);
    bool valid = !name.empty() && nameStart(name[0]);
    for (char n : name) valid = valid && nameChar(n);
    if (!valid) {
      diags.error(line, column, "(variables)",
                  "\"${" + body + "}\": a variable name is letters, digits and _ (not first)");
    } else if (auto value = lookup(name)) {
      if (value->find('\n') != std::string::npos || value->find('\r') != std::string::npos) {
        diags.error(line, column, "(variables)",
                    "${" + name + "} has a line break in its value, which would change the "
                    "file's structure");
      } else {
        out += *value;
      }
    } else if (dash != std::string::npos) {
      out += body.substr(dash + 2);
    } else {
      diags.error(line, column, "(variables)",
                  "${" + name + "} is not set (set it, or give a default: ${" + name +
                      ":-value})");
    }
    i = close + 1;
  }
  return out;
}

}  // namespace wsgate::config
