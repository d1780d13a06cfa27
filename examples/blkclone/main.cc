// blkclone: create, run, watch and finish clones of block devices from the
// command line, in the manner of dmsetup, qemu-img and thin_check.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "args.hpp"
#include "commands.hpp"
#include "help.hpp"

namespace blkclone::cli {
namespace {

// Reports `status` as one line on stderr, whatever its message holds, and
// returns the exit status it calls for.
int Fail(absl::string_view command, const absl::Status& status) {
  const std::string who = command.empty() ? "blkclone" : absl::StrCat("blkclone ", command);
  std::fprintf(stderr, "%s: %s\n", who.c_str(),
               absl::StrReplaceAll(status.message(), {{"\n", "; "}}).c_str());
  return ExitCode(status);
}

int Print(const std::string& text) {
  std::fputs(text.c_str(), stdout);
  return kExitOk;
}

// blkclone help [COMMAND | --man]
int Help(const std::vector<std::string>& args) {
  if (args.empty()) return Print(OverviewHelp());
  if (args.size() == 1 && args[0] == "--man") return Print(ManPage());
  if (args.size() == 1) {
    if (const CommandDoc* doc = FindCommandDoc(args[0])) return Print(CommandHelp(*doc));
    return Fail("help", absl::InvalidArgumentError(
                            absl::StrCat("command ", args[0], ": unknown (see blkclone --help)")));
  }
  return Fail("help", absl::InvalidArgumentError("expected [COMMAND | --man]"));
}

// --help or -h anywhere before "--".
bool AsksForHelp(const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg == "--") return false;
    if (arg == "--help" || arg == "-h") return true;
  }
  return false;
}

// Dispatches to the command named first; returns the process's exit status.
int Main(std::vector<std::string> args) {
  if (args.empty())
    return Fail("", absl::InvalidArgumentError("missing command (see blkclone --help)"));
  const std::string name = args[0];
  args.erase(args.begin());
  if (name == "--help" || name == "-h") return Print(OverviewHelp());
  if (name == "--version") return Print(absl::StrCat("blkclone ", BLKCLONE_VERSION, "\n"));
  if (name == "help") return Help(args);
  const CommandDoc* doc = FindCommandDoc(name);
  const CommandFn run = FindCommand(name);
  if (doc == nullptr || run == nullptr)
    return Fail("", absl::InvalidArgumentError(
                        absl::StrCat("command ", name, ": unknown (see blkclone --help)")));
  if (AsksForHelp(args)) return Print(CommandHelp(*doc));
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, doc->options);
  if (!parsed.ok()) return Fail(name, parsed.status());
  absl::StatusOr<int> result = run(*parsed);
  if (!result.ok()) return Fail(name, result.status());
  return *result;
}

}  // namespace
}  // namespace blkclone::cli

int main(int argc, char** argv) {
  return blkclone::cli::Main(std::vector<std::string>(argv + 1, argv + argc));
}
