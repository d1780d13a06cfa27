// Metadata context names, the option data that asks for them, and matching.
#include "blkclone/internal/nbd_meta_context.hpp"

#include "absl/strings/str_cat.h"
#include "blkclone/internal/nbd_protocol.hpp"

namespace blkclone::internal {
namespace {

// A string of the option data: a 32-bit length, then its bytes.
bool ReadString(nbd::WireReader& reader, std::string& out) {
  const uint32_t length = reader.U32();
  if (!reader.ok() || length > nbd::kMaxString || length > reader.remaining()) return false;
  out = reader.String(length);
  return true;
}

}  // namespace

absl::string_view ContextName(NbdContext context) {
  return context == NbdContext::kAllocation ? "base:allocation" : "blkclone:hydrated";
}

uint32_t ContextId(NbdContext context) { return static_cast<uint32_t>(context) + 1; }

absl::StatusOr<NbdContextQuery> DecodeContextQuery(std::span<const std::byte> data) {
  nbd::WireReader reader(data);
  NbdContextQuery query;
  if (!ReadString(reader, query.export_name))
    return absl::InvalidArgumentError("malformed export name");
  const uint32_t count = reader.U32();
  // Each query takes at least its 4-byte length, which bounds the count.
  if (!reader.ok() || count > reader.remaining() / 4)
    return absl::InvalidArgumentError("malformed number of queries");
  query.queries.resize(count);
  for (std::string& text : query.queries) {
    if (!ReadString(reader, text)) return absl::InvalidArgumentError("malformed query");
  }
  if (reader.remaining() != 0)
    return absl::InvalidArgumentError(absl::StrCat(reader.remaining(), " bytes after the queries"));
  return query;
}

absl::StatusOr<std::vector<NbdContext>> SelectContexts(std::span<const std::string> queries,
                                                       std::span<const NbdContext> offered,
                                                       bool list) {
  std::vector<bool> chosen(offered.size(), list && queries.empty());
  for (const std::string& query : queries) {
    const size_t colon = query.find(':');
    if (colon == std::string::npos || colon == 0)
      return absl::InvalidArgumentError(
          absl::StrCat("query \"", query, "\" does not start with a namespace and a colon"));
    const bool whole_namespace = list && colon + 1 == query.size();
    for (size_t i = 0; i < offered.size(); ++i) {
      const absl::string_view name = ContextName(offered[i]);
      chosen[i] =
          chosen[i] || name == query || (whole_namespace && name.substr(0, colon + 1) == query);
    }
  }
  std::vector<NbdContext> selected;
  for (size_t i = 0; i < offered.size(); ++i) {
    if (chosen[i]) selected.push_back(offered[i]);
  }
  return selected;
}

}  // namespace blkclone::internal
