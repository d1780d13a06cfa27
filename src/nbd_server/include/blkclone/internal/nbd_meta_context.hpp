// Metadata contexts: which an export offers, and which a client's
// NBD_OPT_LIST_META_CONTEXT or NBD_OPT_SET_META_CONTEXT query selects.
//
//   BLKCLONE_ASSIGN_OR_RETURN(NbdContextQuery query, DecodeContextQuery(option_data));
//   BLKCLONE_ASSIGN_OR_RETURN(std::vector<NbdContext> selected,
//                             SelectContexts(query.queries, spec.contexts, /*list=*/false));
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace blkclone::internal {

enum class NbdContext : uint8_t {
  kAllocation,  // base:allocation, from the device's kBlockStatus
  kHydration,   // blkclone:hydrated, from NbdServerOptions::describe_hydration
};

absl::string_view ContextName(NbdContext context);
// The context's ID in NBD_REP_META_CONTEXT replies to a SET and in block
// status chunks: fixed, and unique among an export's contexts.
uint32_t ContextId(NbdContext context);

// The data of either option: an export name and the query strings.
struct NbdContextQuery {
  std::string export_name;
  std::vector<std::string> queries;
};

// kInvalidArgument when a length reaches past the data, bytes are left over,
// or a string is longer than the protocol allows.
[[nodiscard]] absl::StatusOr<NbdContextQuery> DecodeContextQuery(std::span<const std::byte> data);

// The contexts of `offered` that `queries` select, each once, in offered
// order: a full name selects that context; with `list`, a namespace alone
// ("base:", "blkclone:") selects its contexts and no query at all selects
// every one. Unknown namespaces and names select nothing, as the protocol
// asks; a query without a colon is kInvalidArgument.
[[nodiscard]] absl::StatusOr<std::vector<NbdContext>> SelectContexts(
    std::span<const std::string> queries, std::span<const NbdContext> offered, bool list);

}  // namespace blkclone::internal
