// `${VAR}` and `${VAR:-default}` in a config file, expanded from the environment before the YAML
// is parsed, so that addresses and secrets need not be written in it. `$${` stands for a literal
// `${`. Comments are left alone. An unset variable without a default, a value with a line break
// (it would change the file's structure) and an unclosed `${` are errors at their line and
// column. Line numbers are kept, so later errors still point at the file's lines.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "config/diagnostics.h"

namespace wsgate::config {

using VariableLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process environment.
std::optional<std::string> environmentVariable(const std::string& name);

std::string expandVariables(const std::string& text, const VariableLookup& lookup,
                            Diagnostics& diags);

}  // namespace wsgate::config
