// What the NbdServer tests share: file and JSON helpers, the real NBD client
// programs run under timeout(1), a raw NBD client (to say exactly what a real
// client would not), and a fixture that serves a memory device on a Unix
// socket in a scratch directory.
//
//   TEST_F(NbdServerTest, Something) {
//     auto server = ServeMemory({.export_name = "disk"});
//     testing::RawClient client(socket_path());
//     client.Go(/*structured=*/true, "disk");
//   }
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "blkclone/internal/nbd_protocol.hpp"
#include "blkclone/internal/unique_fd.hpp"
#include "blkclone/nbd_server.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace blkclone::testing {

namespace nbd = internal::nbd;
using Bytes = std::vector<std::byte>;
using internal::UniqueFd;

// The size of the memory device the fixture serves.
inline constexpr uint64_t kSize = 8 << 20;
inline constexpr uint64_t kMiB = 1 << 20;

inline Bytes ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return Bytes(p, p + text.size());
}

inline void WriteFile(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// `text` as JSON (a program's output), or null after a test failure saying why.
inline nlohmann::json ParseJson(const std::string& text) {
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    ADD_FAILURE() << "not JSON: " << text;
    return nullptr;
  }
  return json;
}

// The first export of nbdinfo --json's answer, or null after a test failure.
inline nlohmann::json FirstExport(const nlohmann::json& info) {
  if (info.is_object() && info.contains("exports") && info["exports"].is_array() &&
      !info["exports"].empty())
    return info["exports"][0];
  ADD_FAILURE() << "no exports in " << info.dump();
  return nullptr;
}

inline size_t CountOccurrences(absl::string_view text, absl::string_view needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != absl::string_view::npos;
       at = text.find(needle, at + needle.size()))
    ++count;
  return count;
}

// ---- Client programs ----

inline bool HaveProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/usr/bin", ':')) {
    if (::access(absl::StrCat(dir, "/", name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

#define REQUIRE_PROGRAM(name) \
  if (!HaveProgram(name)) GTEST_SKIP() << name << " is not installed"

struct ProgramResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// A client program running under timeout(1), so that none outlives its test.
class Child {
 public:
  Child(const std::vector<std::string>& args, std::string log) : log_(std::move(log)) {
    std::vector<std::string> argv = {"timeout", "-k", "5", "60"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> raw;
    for (std::string& arg : argv) raw.push_back(arg.data());
    raw.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (::posix_spawnp(&pid_, "timeout", &actions, nullptr, raw.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ProgramResult Wait() {
    ProgramResult result;
    int status = 0;
    if (pid_ > 0 && ::waitpid(pid_, &status, 0) == pid_)
      result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    const Bytes log = ReadFile(log_);
    result.output.assign(reinterpret_cast<const char*>(log.data()), log.size());
    return result;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

// nbdsh is "python3 -m nbd" with the first python3 on PATH, which may be one
// without the nbd module (a pyenv or a virtualenv); use a python3 that has it.
inline const std::vector<std::string>& NbdshCommand() {
  static const std::vector<std::string> command = [] {
    for (const char* python : {"python3", "/usr/bin/python3"}) {
      if (Child({python, "-c", "import nbd"}, "/dev/null").Wait().exit_code == 0)
        return std::vector<std::string>{python, "-m", "nbd"};
    }
    return std::vector<std::string>{};
  }();
  return command;
}

#define REQUIRE_NBDSH() \
  if (NbdshCommand().empty()) GTEST_SKIP() << "nbdsh (python3-libnbd) is not installed"

// ---- A raw NBD client, to say exactly what a real client would not ----

class RawClient {
 public:
  struct OptionReply {
    uint32_t option = 0;
    uint32_t type = 0;
    Bytes data;
  };
  struct Reply {
    uint64_t cookie = 0;
    uint32_t error = 0;
    uint16_t chunk_type = 0;  // structured: the type of the last chunk
    Bytes data;
    std::vector<std::pair<uint16_t, Bytes>> chunks;  // structured: each chunk's type and payload
  };

  explicit RawClient(const std::string& socket_path) {
    fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    socket_path.copy(address.sun_path, sizeof(address.sun_path) - 1);
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    SetTimeouts();
  }
  explicit RawClient(uint16_t tcp_port) {
    fd_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(tcp_port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    SetTimeouts();
  }

  bool connected() const { return connected_; }

  bool Send(std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes = bytes.subspan(static_cast<size_t>(n));
    }
    return true;
  }
  bool Send(const nbd::WireWriter& message) { return Send(message.data()); }

  bool Recv(std::span<std::byte> buffer) {
    while (!buffer.empty()) {
      const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
      if (n <= 0) return false;
      buffer = buffer.subspan(static_cast<size_t>(n));
    }
    return true;
  }
  Bytes Recv(size_t n) {
    Bytes bytes(n);
    EXPECT_TRUE(Recv(std::span(bytes))) << "the server sent less than " << n << " bytes";
    return bytes;
  }

  // True if the server closes the connection within the timeout (reading past
  // at most 1 MiB it may still have sent).
  bool ServerClosed() {
    std::array<std::byte, 4096> sink;
    for (int i = 0; i < 256; ++i) {
      const ssize_t n = ::recv(fd_.get(), sink.data(), sink.size(), 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET || errno == EPIPE;
    }
    return false;
  }
  // Breaks the connection; safe while another thread sends or receives.
  void Abort() { ::shutdown(fd_.get(), SHUT_RDWR); }

  // Reads the greeting, checks it, and answers with `client_flags`.
  void Greet(uint32_t client_flags = nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes) {
    const Bytes greeting = Recv(18);
    nbd::WireReader reader(greeting);
    EXPECT_EQ(reader.U64(), nbd::kMagic);
    EXPECT_EQ(reader.U64(), nbd::kOptionMagic);
    EXPECT_EQ(reader.U16(), nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes);
    Send(nbd::WireWriter().U32(client_flags));
  }
  // Greets, then negotiates structured replies.
  void GreetStructured() {
    Greet();
    SendOption(nbd::kOptStructuredReply);
    EXPECT_EQ(ReadOptionReply().type, nbd::kRepAck);
  }
  void SendOption(uint32_t option, std::span<const std::byte> data = {}) {
    Send(nbd::WireWriter()
             .U64(nbd::kOptionMagic)
             .U32(option)
             .U32(static_cast<uint32_t>(data.size()))
             .Bytes(data));
  }
  OptionReply ReadOptionReply() {
    const Bytes header = Recv(20);
    nbd::WireReader reader(header);
    EXPECT_EQ(reader.U64(), nbd::kOptionReplyMagic);
    OptionReply reply;
    reply.option = reader.U32();
    reply.type = reader.U32();
    const uint32_t length = reader.U32();
    EXPECT_LE(length, 1u << 16);
    if (length <= (1u << 16)) reply.data = Recv(length);
    return reply;
  }
  static Bytes InfoRequest(absl::string_view name, const std::vector<uint16_t>& infos) {
    nbd::WireWriter data;
    data.U32(static_cast<uint32_t>(name.size()))
        .String(name)
        .U16(static_cast<uint16_t>(infos.size()));
    for (uint16_t info : infos) data.U16(info);
    return Bytes(data.data().begin(), data.data().end());
  }

  // Greets, negotiates structured replies if asked, and enters transmission with
  // NBD_OPT_GO; returns the transmission flags.
  uint16_t Go(bool structured, absl::string_view name = "") {
    if (structured) {
      GreetStructured();
    } else {
      Greet();
    }
    SendOption(nbd::kOptGo, InfoRequest(name, {}));
    uint16_t flags = 0;
    for (int i = 0; i < 16; ++i) {
      const OptionReply reply = ReadOptionReply();
      if (reply.type != nbd::kRepInfo) {
        EXPECT_EQ(reply.type, nbd::kRepAck);
        break;
      }
      nbd::WireReader reader(reply.data);
      if (reader.U16() == nbd::kInfoExport) {
        EXPECT_EQ(reader.U64(), kSize);
        flags = reader.U16();
      }
    }
    return flags;
  }

  bool SendRequest(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length,
                   uint16_t flags = 0, std::span<const std::byte> payload = {},
                   uint32_t magic = nbd::kRequestMagic) {
    return Send(
        nbd::WireWriter().U32(magic).U16(flags).U16(type).U64(cookie).U64(offset).U32(length).Bytes(
            payload));
  }

  // Reads one reply, simple or structured (told apart by magic). A successful
  // simple reply carries `read_length` bytes of data (the protocol leaves the
  // client to know that).
  Reply ReadReply(uint32_t read_length = 0) {
    Reply reply;
    std::array<std::byte, 4> magic_bytes;
    if (!Recv(std::span(magic_bytes))) {
      ADD_FAILURE() << "connection closed before the reply";
      return reply;
    }
    const uint32_t magic = nbd::WireReader(magic_bytes).U32();
    if (magic == nbd::kSimpleReplyMagic) {
      const Bytes rest = Recv(12);
      nbd::WireReader reader(rest);
      reply.error = reader.U32();
      reply.cookie = reader.U64();
      if (reply.error == 0 && read_length > 0) reply.data = Recv(read_length);
      return reply;
    }
    EXPECT_EQ(magic, nbd::kStructuredReplyMagic);
    for (bool done = false; !done;) {
      const Bytes header = Recv(16);
      nbd::WireReader reader(header);
      done = (reader.U16() & nbd::kReplyFlagDone) != 0;
      reply.chunk_type = reader.U16();
      reply.cookie = reader.U64();
      const Bytes payload = Recv(reader.U32());
      reply.chunks.emplace_back(reply.chunk_type, payload);
      nbd::WireReader body(payload);
      if (reply.chunk_type == nbd::kReplyTypeOffsetData) {
        body.U64();
        reply.data.insert(reply.data.end(), payload.begin() + 8, payload.end());
      } else if (reply.chunk_type & 0x8000) {
        reply.error = body.U32();
      }
      if (!done) {
        std::array<std::byte, 4> next;
        if (!Recv(std::span(next))) break;
      }
    }
    return reply;
  }

 private:
  void SetTimeouts() {
    const timeval timeout{.tv_sec = 10, .tv_usec = 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  }

  UniqueFd fd_;
  bool connected_ = false;
};

// ---- Fixture ----

class NbdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.emplace(*TempDir::Create("blkclone-nbd"));
    memory_ = *MemoryDevice::Create({.size = kSize});
  }

  std::string socket_path() const { return (dir_->path() / "nbd.sock").string(); }
  std::string File(const std::string& name) const { return (dir_->path() / name).string(); }
  std::string Uri(absl::string_view name = "") const {
    return absl::StrCat("nbd+unix:///", name, "?socket=", socket_path());
  }

  // A started server for `device` on the test's Unix socket; null on failure.
  std::unique_ptr<NbdServer> Serve(AnyBlockDevice device, NbdServerOptions options = {}) {
    options.listen = NbdListenAddress::Unix(socket_path());
    auto server = std::make_unique<NbdServer>(std::move(device), std::move(options));
    absl::Status status = server->Start();
    EXPECT_TRUE(status.ok()) << status;
    return status.ok() ? std::move(server) : nullptr;
  }
  std::unique_ptr<NbdServer> ServeMemory(NbdServerOptions options = {}) {
    return Serve(AnyBlockDevice::Borrow(*memory_), std::move(options));
  }

  ProgramResult RunProgram(const std::vector<std::string>& args) {
    return Child(args, File(absl::StrCat("log", ++logs_))).Wait();
  }
  // Runs Python in nbdsh against the export; `h` is connected unless `connect`
  // is false, when the code connects itself.
  ProgramResult RunNbdsh(const std::string& code, bool connect = true) {
    std::vector<std::string> args = NbdshCommand();
    if (connect) args.insert(args.end(), {"-u", Uri()});
    args.insert(args.end(), {"-c", "import errno", "-c", code});
    return RunProgram(args);
  }

  std::optional<TempDir> dir_;
  std::unique_ptr<MemoryDevice> memory_;
  int logs_ = 0;
};

#define EXPECT_PROGRAM_OK(result) EXPECT_EQ((result).exit_code, 0) << (result).output

}  // namespace blkclone::testing
