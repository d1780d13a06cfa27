// The NBD handshake: fixed newstyle negotiation up to the transmission phase.
//
// The server greets (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES), checks the
// client's flags, then answers options until one enters transmission:
//   NBD_OPT_GO, NBD_OPT_INFO      NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE always,
//                                 NBD_INFO_NAME / _DESCRIPTION when asked for
//   NBD_OPT_EXPORT_NAME           the old way in; an unknown name ends the session
//   NBD_OPT_LIST                  the one export
//   NBD_OPT_STRUCTURED_REPLY      switches READ replies to structured chunks
//   NBD_OPT_LIST_META_CONTEXT     the export's metadata contexts that match
//   NBD_OPT_SET_META_CONTEXT      selects those for NBD_CMD_BLOCK_STATUS; both
//                                 need structured replies first
//   NBD_OPT_ABORT                 acknowledged, then the session ends
//   anything else                 NBD_REP_ERR_UNSUP, and the client may go on
// Malformed options get NBD_REP_ERR_INVALID, oversized ones NBD_REP_ERR_TOO_BIG.
// Broken framing (bad magic, unknown client flags) or too many options end the
// session.
//
//   absl::StatusOr<NbdNegotiated> negotiated = RunNbdHandshake(stream, spec);
//   if (!negotiated.ok()) return;  // the session is over; close the connection
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/internal/nbd_export.hpp"
#include "blkclone/internal/nbd_meta_context.hpp"
#include "blkclone/internal/nbd_stream.hpp"

namespace blkclone::internal {

struct NbdNegotiated {
  bool structured_replies = false;
  // Selected by the last NBD_OPT_SET_META_CONTEXT; block status needs one.
  std::vector<NbdContext> contexts;
};

// Runs the handshake on `stream`. Returns what was negotiated once the client
// entered transmission, or why the session ended (the client aborted or left,
// broke the protocol, or asked for an export that does not exist).
[[nodiscard]] absl::StatusOr<NbdNegotiated> RunNbdHandshake(NbdStream& stream,
                                                            const NbdExport& spec);

}  // namespace blkclone::internal
