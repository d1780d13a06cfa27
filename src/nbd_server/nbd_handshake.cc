// The fixed newstyle handshake; nbd_handshake.hpp lists what each option gets.
#include "blkclone/internal/nbd_handshake.hpp"

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/nbd_protocol.hpp"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

using nbd::WireReader;
using nbd::WireWriter;

// Clients send a handful (qemu and libnbd fewer than ten); one that sends this
// many is not going to finish.
constexpr int kMaxOptions = 128;

enum class Next { kContinue, kTransmission, kEnd };

class Handshake {
 public:
  Handshake(NbdStream& stream, const NbdExport& spec) : stream_(stream), spec_(spec) {}

  absl::StatusOr<NbdNegotiated> Run() {
    BLKCLONE_RETURN_IF_ERROR(Send(WireWriter()
                                      .U64(nbd::kMagic)
                                      .U64(nbd::kOptionMagic)
                                      .U16(nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes)));
    std::array<std::byte, 4> raw;
    BLKCLONE_RETURN_IF_ERROR(stream_.Read(raw));
    client_flags_ = WireReader(raw).U32();
    // The protocol requires dropping a client that sets flags we did not offer.
    if ((client_flags_ & ~(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes)) != 0)
      return absl::InvalidArgumentError(absl::StrCat("unknown client flags ", client_flags_));
    for (int i = 0; i < kMaxOptions; ++i) {
      BLKCLONE_ASSIGN_OR_RETURN(const Next next, NextOption());
      if (next == Next::kTransmission) return negotiated_;
      if (next == Next::kEnd) return absl::CancelledError("the client aborted the handshake");
    }
    return absl::ResourceExhaustedError(absl::StrCat("more than ", kMaxOptions, " options"));
  }

 private:
  absl::StatusOr<Next> NextOption() {
    std::array<std::byte, nbd::kOptionHeaderSize> raw;
    BLKCLONE_RETURN_IF_ERROR(stream_.Read(raw));
    WireReader header(raw);
    const uint64_t magic = header.U64();
    const uint32_t option = header.U32();
    const uint32_t length = header.U32();
    if (magic != nbd::kOptionMagic)
      return absl::InvalidArgumentError(absl::StrCat("bad option magic ", magic));
    if (length > nbd::kMaxOptionData) {
      // NBD_OPT_EXPORT_NAME has no error reply: the session ends instead.
      if (option == nbd::kOptExportName) return absl::InvalidArgumentError("export name too long");
      BLKCLONE_RETURN_IF_ERROR(SkipBytes(stream_, length));
      return Refuse(option, nbd::kRepErrTooBig, absl::StrCat(length, " bytes of option data"));
    }
    std::vector<std::byte> data(length);
    BLKCLONE_RETURN_IF_ERROR(stream_.Read(data));
    switch (option) {
      case nbd::kOptExportName:
        return ExportName(data);
      case nbd::kOptGo:
      case nbd::kOptInfo:
        return Info(option, data);
      case nbd::kOptList:
        return List(data);
      case nbd::kOptStructuredReply:
        if (!data.empty()) return Refuse(option, nbd::kRepErrInvalid, "unexpected option data");
        negotiated_.structured_replies = true;
        BLKCLONE_RETURN_IF_ERROR(Reply(option, nbd::kRepAck));
        return Next::kContinue;
      case nbd::kOptListMetaContext:
      case nbd::kOptSetMetaContext:
        return MetaContexts(option, data);
      case nbd::kOptAbort:
        // The client may close without waiting for the acknowledgement.
        Reply(option, nbd::kRepAck).IgnoreError();
        return Next::kEnd;
      default:
        return Refuse(option, nbd::kRepErrUnsup, absl::StrCat("option ", option, " unsupported"));
    }
  }

  // The empty name is the protocol's default export, which is ours.
  bool Matches(absl::string_view name) const { return name.empty() || name == spec_.name; }

  absl::StatusOr<Next> ExportName(std::span<const std::byte> data) {
    WireReader reader(data);
    if (!Matches(reader.String(data.size())))
      return absl::NotFoundError("NBD_OPT_EXPORT_NAME names no export");
    WireWriter reply;
    reply.U64(spec_.size).U16(spec_.transmission_flags);
    if ((client_flags_ & nbd::kClientFlagNoZeroes) == 0) reply.Zeroes(nbd::kExportNameReplyZeroes);
    BLKCLONE_RETURN_IF_ERROR(Send(reply));
    return Next::kTransmission;
  }

  // NBD_OPT_INFO and NBD_OPT_GO: export name, then the NBD_INFO types wanted.
  absl::StatusOr<Next> Info(uint32_t option, std::span<const std::byte> data) {
    WireReader reader(data);
    const std::string name = reader.String(reader.U32());
    const uint16_t count = reader.U16();
    if (!reader.ok() || reader.remaining() != size_t{2} * count)
      return Refuse(option, nbd::kRepErrInvalid, "malformed export name or information requests");
    bool want_name = false, want_description = false;
    for (int i = 0; i < count; ++i) {
      const uint16_t type = reader.U16();
      want_name |= type == nbd::kInfoName;
      want_description |= type == nbd::kInfoDescription;
    }
    if (!Matches(name)) return Refuse(option, nbd::kRepErrUnknown, "no export of that name");
    BLKCLONE_RETURN_IF_ERROR(
        Reply(option, nbd::kRepInfo,
              WireWriter().U16(nbd::kInfoExport).U64(spec_.size).U16(spec_.transmission_flags)));
    // Sent unasked too: the protocol allows it, and clients then keep to it.
    BLKCLONE_RETURN_IF_ERROR(Reply(option, nbd::kRepInfo,
                                   WireWriter()
                                       .U16(nbd::kInfoBlockSize)
                                       .U32(spec_.min_block_size)
                                       .U32(spec_.preferred_block_size)
                                       .U32(spec_.max_payload)));
    if (want_name) {
      BLKCLONE_RETURN_IF_ERROR(
          Reply(option, nbd::kRepInfo, WireWriter().U16(nbd::kInfoName).String(spec_.name)));
    }
    if (want_description && !spec_.description.empty()) {
      BLKCLONE_RETURN_IF_ERROR(
          Reply(option, nbd::kRepInfo,
                WireWriter().U16(nbd::kInfoDescription).String(spec_.description)));
    }
    BLKCLONE_RETURN_IF_ERROR(Reply(option, nbd::kRepAck));
    return option == nbd::kOptGo ? Next::kTransmission : Next::kContinue;
  }

  // NBD_OPT_LIST_META_CONTEXT, and NBD_OPT_SET_META_CONTEXT, which replaces
  // the selection even when it fails.
  absl::StatusOr<Next> MetaContexts(uint32_t option, std::span<const std::byte> data) {
    const bool set = option == nbd::kOptSetMetaContext;
    if (set) negotiated_.contexts.clear();
    if (!negotiated_.structured_replies)
      return Refuse(option, nbd::kRepErrInvalid, "metadata contexts need structured replies");
    absl::StatusOr<NbdContextQuery> query = DecodeContextQuery(data);
    if (!query.ok()) return Refuse(option, nbd::kRepErrInvalid, query.status().message());
    if (!Matches(query->export_name))
      return Refuse(option, nbd::kRepErrUnknown, "no export of that name");
    absl::StatusOr<std::vector<NbdContext>> selected =
        SelectContexts(query->queries, spec_.contexts, /*list=*/!set);
    if (!selected.ok()) return Refuse(option, nbd::kRepErrInvalid, selected.status().message());
    for (NbdContext context : *selected) {
      // A list's IDs mean nothing: the protocol asks for zero.
      BLKCLONE_RETURN_IF_ERROR(
          Reply(option, nbd::kRepMetaContext,
                WireWriter().U32(set ? ContextId(context) : 0).String(ContextName(context))));
    }
    BLKCLONE_RETURN_IF_ERROR(Reply(option, nbd::kRepAck));
    if (set) negotiated_.contexts = *std::move(selected);
    return Next::kContinue;
  }

  absl::StatusOr<Next> List(std::span<const std::byte> data) {
    if (!data.empty()) return Refuse(nbd::kOptList, nbd::kRepErrInvalid, "unexpected option data");
    BLKCLONE_RETURN_IF_ERROR(Reply(nbd::kOptList, nbd::kRepServer,
                                   WireWriter()
                                       .U32(static_cast<uint32_t>(spec_.name.size()))
                                       .String(spec_.name)
                                       .String(spec_.description)));
    BLKCLONE_RETURN_IF_ERROR(Reply(nbd::kOptList, nbd::kRepAck));
    return Next::kContinue;
  }

  // An error reply, after which the client may try other options.
  absl::StatusOr<Next> Refuse(uint32_t option, uint32_t error, absl::string_view message) {
    BLKCLONE_RETURN_IF_ERROR(Reply(option, error, WireWriter().String(message)));
    return Next::kContinue;
  }

  absl::Status Reply(uint32_t option, uint32_t type, const WireWriter& payload = WireWriter()) {
    return Send(WireWriter()
                    .U64(nbd::kOptionReplyMagic)
                    .U32(option)
                    .U32(type)
                    .U32(static_cast<uint32_t>(payload.data().size()))
                    .Bytes(payload.data()));
  }

  absl::Status Send(const WireWriter& message) {
    const std::span<const std::byte> pieces[] = {message.data()};
    return stream_.Write(pieces);
  }

  NbdStream& stream_;
  const NbdExport& spec_;
  uint32_t client_flags_ = 0;
  NbdNegotiated negotiated_;
};

}  // namespace

absl::StatusOr<NbdNegotiated> RunNbdHandshake(NbdStream& stream, const NbdExport& spec) {
  return Handshake(stream, spec).Run();
}

}  // namespace blkclone::internal
