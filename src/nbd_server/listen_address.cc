// Listen addresses as the command line writes them: "unix:PATH", "tcp:HOST:PORT".
#include <sys/un.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "blkclone/nbd_server.hpp"

namespace blkclone {
namespace {

constexpr size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("listen address \"", text, "\": ", why));
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view text, absl::string_view port) {
  uint32_t value = 0;
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port, &value) || value > 65535)
    return Invalid(text, "the port must be a number from 0 to 65535");
  return static_cast<uint16_t>(value);
}

absl::StatusOr<NbdListenAddress> ParseTcp(absl::string_view text, absl::string_view rest) {
  std::string host = "127.0.0.1";
  absl::string_view port = rest;
  if (absl::ConsumePrefix(&rest, "[")) {
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos) return Invalid(text, "missing ']' after the IPv6 host");
    host = std::string(rest.substr(0, close));
    port = rest.substr(close + 1);
    if (host.empty()) return Invalid(text, "empty host in brackets");
    if (!absl::ConsumePrefix(&port, ":")) return Invalid(text, "expected :PORT after the host");
  } else if (const size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    const absl::string_view named = rest.substr(0, colon);
    if (absl::StrContains(named, ':'))
      return Invalid(text, "write an IPv6 host in brackets, as in tcp:[::1]:10809");
    if (!named.empty()) host = std::string(named);
    port = rest.substr(colon + 1);
  }
  absl::StatusOr<uint16_t> number = ParsePort(text, port);
  if (!number.ok()) return number.status();
  return NbdListenAddress::Tcp(std::move(host), *number);
}

}  // namespace

NbdListenAddress NbdListenAddress::Unix(std::string path) {
  NbdListenAddress address;
  address.kind = Kind::kUnix;
  address.host.clear();
  address.port = 0;
  address.path = std::move(path);
  return address;
}

NbdListenAddress NbdListenAddress::Tcp(std::string host, uint16_t port) {
  NbdListenAddress address;
  address.host = std::move(host);
  address.port = port;
  return address;
}

std::string NbdListenAddress::ToString() const {
  if (kind == Kind::kUnix) return absl::StrCat("unix:", path);
  return absl::StrContains(host, ':') ? absl::StrCat("tcp:[", host, "]:", port)
                                      : absl::StrCat("tcp:", host, ":", port);
}

absl::StatusOr<NbdListenAddress> ParseNbdListenAddress(absl::string_view text) {
  absl::string_view rest = text;
  if (absl::ConsumePrefix(&rest, "unix:")) {
    if (rest.empty()) return Invalid(text, "unix: needs a socket path, as in unix:/run/nbd.sock");
    if (rest.size() > kMaxUnixPath)
      return Invalid(text, absl::StrCat("a socket path has at most ", kMaxUnixPath, " bytes"));
    if (absl::StrContains(rest, '\0')) return Invalid(text, "NUL in the socket path");
    return NbdListenAddress::Unix(std::string(rest));
  }
  if (absl::ConsumePrefix(&rest, "tcp:")) return ParseTcp(text, rest);
  return Invalid(text, "expected unix:PATH or tcp:HOST:PORT");
}

}  // namespace blkclone
