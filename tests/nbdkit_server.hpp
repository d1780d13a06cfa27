// NbdkitServer: nbdkit serving a test on a Unix socket in a scratch directory.
// It is started with --exit-with-parent (it dies with the test process) and
// killed, and reaped, when the object goes; Kill and Restart simulate a
// server crash and its return on the same socket.
//
//   auto server = NbdkitServer::Start({"--filter=delay", "memory", "4M", "rdelay=5ms"});
//   if (server.status().code() == absl::StatusCode::kUnimplemented) GTEST_SKIP();
//   auto device = NbdDevice::Open((*server)->uri(), {});
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "blkclone/status.hpp"
#include "blkclone/testing/temp_dir.hpp"

extern char** environ;

namespace blkclone::testing {

class NbdkitServer {
 public:
  // The nbdkit binary on $PATH, or "" when it is not installed.
  static std::string Binary() {
    const char* path = std::getenv("PATH");
    for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "", ':')) {
      const std::string candidate = absl::StrCat(dir, "/nbdkit");
      if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return "";
  }

  // Runs `nbdkit <args>` (filters, plugin, parameters) and waits until it
  // listens. kUnimplemented when nbdkit is not installed.
  static absl::StatusOr<std::unique_ptr<NbdkitServer>> Start(std::vector<std::string> args) {
    std::string binary = Binary();
    if (binary.empty()) return absl::UnimplementedError("nbdkit is not installed");
    BLKCLONE_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("nbdkit"));
    std::unique_ptr<NbdkitServer> server(
        new NbdkitServer(std::move(binary), std::move(dir), std::move(args)));
    BLKCLONE_RETURN_IF_ERROR(server->Spawn());
    return server;
  }

  ~NbdkitServer() { Kill(SIGKILL); }
  NbdkitServer(const NbdkitServer&) = delete;
  NbdkitServer& operator=(const NbdkitServer&) = delete;

  std::string uri(const std::string& export_name = "") const {
    return absl::StrCat("nbd+unix:///", export_name, "?socket=", socket_.string());
  }
  const std::filesystem::path& dir() const { return dir_.path(); }
  // What nbdkit wrote to stdout and stderr, over all its runs.
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // Sends `signal` and reaps the server (SIGKILL after 5 s if it lingers).
  void Kill(int signal) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > give_up) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
  }

  // Starts the server again with the same arguments on the same socket.
  absl::Status Restart() {
    Kill(SIGKILL);
    return Spawn();
  }

 private:
  NbdkitServer(std::string binary, TempDir dir, std::vector<std::string> args)
      : binary_(std::move(binary)),
        dir_(std::move(dir)),
        socket_(dir_.path() / "nbd.sock"),
        pidfile_(dir_.path() / "nbdkit.pid"),
        log_(dir_.path() / "nbdkit.log"),
        args_(std::move(args)) {}

  absl::Status Spawn() {
    std::filesystem::remove(socket_);  // a killed server leaves its socket behind
    std::filesystem::remove(pidfile_);
    std::vector<std::string> words = {binary_,          "--foreground",   "--exit-with-parent",
                                      "--unix",         socket_.string(), "--pidfile",
                                      pidfile_.string()};
    words.insert(words.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int error =
        ::posix_spawn(&pid_, binary_.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) {
      pid_ = -1;
      return ErrnoStatus(error, "posix_spawn nbdkit");
    }
    // nbdkit writes its pidfile once it listens.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!std::filesystem::exists(pidfile_) || std::filesystem::file_size(pidfile_) == 0) {
      if (::waitpid(pid_, nullptr, WNOHANG) != 0) {
        pid_ = -1;
        return absl::InternalError(absl::StrCat("nbdkit exited at start: ", log()));
      }
      if (std::chrono::steady_clock::now() > give_up) {
        Kill(SIGKILL);
        return absl::DeadlineExceededError(absl::StrCat("nbdkit did not start: ", log()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return absl::OkStatus();
  }

  const std::string binary_;
  const TempDir dir_;
  const std::filesystem::path socket_, pidfile_, log_;
  const std::vector<std::string> args_;
  pid_t pid_ = -1;
};

}  // namespace blkclone::testing
