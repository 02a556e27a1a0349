#include "config/diagnostics.h"

#include <yaml-cpp/yaml.h>

namespace wsgate::config {

std::string Diagnostic::format() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + path + ": " +
         message;
}

void Diagnostics::error(const YAML::Node& node, const std::string& path,
                        const std::string& message) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return error(0, 0, path, message);
  error(mark.line + 1, mark.column + 1, path, message);
}

void Diagnostics::error(int line, int column, const std::string& path,
                        const std::string& message) {
  errors_.push_back({file_, line, column, path, message});
}

void Diagnostics::warn(const YAML::Node& node, const std::string& path,
                       const std::string& message) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) {
    warnings_.push_back({file_, 0, 0, path, message});
  } else {
    warnings_.push_back({file_, mark.line + 1, mark.column + 1, path, message});
  }
}

std::string Diagnostics::format() const {
  std::string out;
  for (const auto& error : errors_) out += error.format() + "\n";
  return out;
}

}  // namespace wsgate::config
