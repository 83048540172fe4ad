#pragma once
// What a run records about where and how it ran, so that a number can be traced to its build.
#include <nlohmann/json.hpp>

#include <string>

namespace psgd {

std::string host_name();
std::string psgd_revision();  // git revision the binary was built from
// The process's working directory ("" if it cannot be read): where a job's relative paths point.
std::string working_directory();
nlohmann::json provenance(const std::string& command_line);

}  // namespace psgd
