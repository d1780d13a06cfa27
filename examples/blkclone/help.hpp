// The blkclone command's documentation model: one description per subcommand,
// from which `--help`, the manual page (`blkclone help --man`, docs/blkclone.1)
// and the option parser all read, so that they cannot disagree.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace blkclone::cli {

struct OptionDoc {
  absl::string_view flag;   // "--rate-limit"
  absl::string_view value;  // "R"; empty for a switch
  absl::string_view text;
};

// Texts are paragraphs separated by blank lines; a line that starts with two
// spaces is shown as it is (examples, syntax), others are wrapped.
struct CommandDoc {
  absl::string_view name;
  absl::string_view synopsis;  // what follows "blkclone <name>"; one form per line
  absl::string_view summary;
  absl::string_view description;
  std::vector<OptionDoc> options;
};

struct SectionDoc {
  absl::string_view title;
  absl::string_view text;
};

// Every subcommand, in the order help lists them.
std::span<const CommandDoc> CommandDocs();
// Null for an unknown name.
const CommandDoc* FindCommandDoc(absl::string_view name);
// The manual's introduction and the sections after COMMANDS.
absl::string_view ManualDescription();
std::span<const SectionDoc> ManualSections();

// `blkclone <command> --help`.
std::string CommandHelp(const CommandDoc& command);
// `blkclone --help`.
std::string OverviewHelp();
// The manual page in roff (man(7)).
std::string ManPage();

}  // namespace blkclone::cli
