// Loads a YAML file (or text) into a validated `Config`. Every problem found is reported, each
// with file, line, column and key path; nothing is returned unless the whole file is valid.
#pragma once

#include <memory>
#include <string>

#include "config/config.h"
#include "config/diagnostics.h"
#include "config/name_resolver.h"

namespace wsgate::config {

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when diagnostics has errors
  Diagnostics diagnostics;  // errors, and warnings (which a loaded config may have too)
};

// Host names in cluster endpoints go to `resolve`; without one (tests, fuzzers) each is an error.
LoadResult loadFile(const std::string& path, const FilterCatalog& filters,
                    const NameResolver& resolve = {});
// `source_name` stands for the file name in error messages, and relative file paths in the YAML
// (TLS certificates and keys) start from its directory.
LoadResult loadString(const std::string& yaml, const std::string& source_name,
                      const FilterCatalog& filters, const NameResolver& resolve = {});

}  // namespace wsgate::config
