// Collects configuration errors so that every one of them is reported at once, each as
// `FILE:LINE:COL: key.path: message`, and warnings: things that load but that an operator should
// hear about (an expired certificate, backend certificates not verified). Warnings never reject a
// file. Used only while loading config, never on the data path.
#pragma once

#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace wsgate::config {

struct Diagnostic {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
  std::string path;
  std::string message;

  std::string format() const;
};

class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  // Records an error located at `node` (its yaml-cpp Mark gives line and column).
  void error(const YAML::Node& node, const std::string& path, const std::string& message);
  void error(int line, int column, const std::string& path, const std::string& message);
  // Records a warning located at `node`; the file still loads.
  void warn(const YAML::Node& node, const std::string& path, const std::string& message);

  // True when there is no error (warnings do not count).
  bool empty() const { return errors_.empty(); }
  const std::vector<Diagnostic>& errors() const { return errors_; }
  const std::vector<Diagnostic>& warnings() const { return warnings_; }
  const std::string& file() const { return file_; }
  // One error per line, in the order found.
  std::string format() const;

 private:
  std::string file_;
  std::vector<Diagnostic> errors_;
  std::vector<Diagnostic> warnings_;
};

}  // namespace wsgate::config
