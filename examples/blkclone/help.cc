// Renders the documentation model as terminal help and as a roff manual page.
#include "help.hpp"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace blkclone::cli {
namespace {

constexpr size_t kWidth = 80;

// Paragraphs are separated by blank lines.
std::vector<absl::string_view> Paragraphs(absl::string_view text) {
  return absl::StrSplit(text, "\n\n", absl::SkipEmpty());
}

bool IsLiteral(absl::string_view paragraph) { return absl::StartsWith(paragraph, "  "); }

// Fills `text` into lines of at most kWidth columns, each starting with `indent`.
std::string Wrap(absl::string_view text, size_t indent) {
  std::string out, line(indent, ' ');
  for (absl::string_view word : absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (line.size() > indent && line.size() + 1 + word.size() > kWidth) {
      absl::StrAppend(&out, line, "\n");
      line.assign(indent, ' ');
    }
    absl::StrAppend(&line, line.size() > indent ? " " : "", word);
  }
  return absl::StrCat(out, line, "\n");
}

// A text for the terminal: paragraphs wrapped, literal ones kept, all indented.
std::string Body(absl::string_view text, size_t indent) {
  std::vector<std::string> blocks;
  for (absl::string_view paragraph : Paragraphs(text)) {
    if (!IsLiteral(paragraph)) {
      blocks.push_back(Wrap(paragraph, indent));
      continue;
    }
    std::string block;
    for (absl::string_view line : absl::StrSplit(paragraph, '\n'))
      absl::StrAppend(&block, std::string(indent, ' '), line, "\n");
    blocks.push_back(std::move(block));
  }
  return absl::StrJoin(blocks, "\n");
}

// "--flag VALUE", or "--flag" for a switch.
std::string OptionLabel(const OptionDoc& option) {
  return option.value.empty() ? std::string(option.flag)
                              : absl::StrCat(option.flag, " ", option.value);
}

// One usage form per line.
std::vector<absl::string_view> SynopsisLines(const CommandDoc& command) {
  return absl::StrSplit(command.synopsis, '\n');
}

// roff: escapes backslashes and hyphens, and protects control characters at
// the start of a line.
std::string Roff(absl::string_view text) {
  std::string out = absl::StrReplaceAll(text, {{"\\", "\\e"}, {"-", "\\-"}});
  std::string protected_lines;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    const bool control = !line.empty() && (line[0] == '.' || line[0] == '\'');
    absl::StrAppend(&protected_lines, protected_lines.empty() ? "" : "\n", control ? "\\&" : "",
                    line);
  }
  return protected_lines;
}

// A text as roff paragraphs; literal ones unfilled and indented.
std::string RoffBody(absl::string_view text) {
  std::string out;
  for (absl::string_view paragraph : Paragraphs(text)) {
    if (!IsLiteral(paragraph)) {
      absl::StrAppend(&out, ".PP\n", Roff(absl::StrReplaceAll(paragraph, {{"\n", " "}})), "\n");
      continue;
    }
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(paragraph, '\n'))
      lines.push_back(Roff(absl::StripPrefix(line, "  ")));
    absl::StrAppend(&out, ".PP\n.RS 4\n.nf\n", absl::StrJoin(lines, "\n"), "\n.fi\n.RE\n");
  }
  return out;
}

}  // namespace

const CommandDoc* FindCommandDoc(absl::string_view name) {
  for (const CommandDoc& command : CommandDocs()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

std::string CommandHelp(const CommandDoc& command) {
  std::string out;
  bool first = true;
  for (absl::string_view line : SynopsisLines(command)) {
    absl::StrAppend(&out, first ? "usage: " : "       ", "blkclone ", command.name, " ", line,
                    "\n");
    first = false;
  }
  absl::StrAppend(&out, "\n", Wrap(command.summary, 0), "\n", Body(command.description, 0));
  if (!command.options.empty()) {
    absl::StrAppend(&out, "\noptions:\n");
    size_t column = 0;
    for (const OptionDoc& option : command.options)
      column = std::max(column, OptionLabel(option).size());
    column += 4;
    for (const OptionDoc& option : command.options) {
      const std::string label = absl::StrCat("  ", OptionLabel(option));
      std::string text = Wrap(option.text, column);
      if (label.size() < column) {
        text.replace(0, label.size(), label);
      } else {
        text = absl::StrCat(label, "\n", text);
      }
      absl::StrAppend(&out, text);
    }
  }
  return out;
}

std::string OverviewHelp() {
  std::string out = absl::StrCat("usage: blkclone COMMAND [ARGUMENTS] [--help]\n\n",
                                 Body(ManualDescription(), 0), "\ncommands:\n");
  for (const CommandDoc& command : CommandDocs())
    absl::StrAppend(&out, "  ", command.name, std::string(11 - command.name.size(), ' '),
                    command.summary, "\n");
  absl::StrAppend(&out,
                  "\n`blkclone COMMAND --help` describes a command; `blkclone help --man` prints "
                  "the manual page.\n");
  return out;
}

std::string ManPage() {
  std::string out = absl::StrCat(
      ".\\\" Generated by `blkclone help --man`; regenerate with the blkclone_man target.\n",
      ".TH BLKCLONE 1 \"\" \"blkclone ", BLKCLONE_VERSION, "\" \"blkclone manual\"\n",
      ".SH NAME\nblkclone \\- clone block devices like Linux dm\\-clone, in user space\n",
      ".SH SYNOPSIS\n");
  for (const CommandDoc& command : CommandDocs()) {
    for (absl::string_view line : SynopsisLines(command))
      absl::StrAppend(&out, ".br\n.B blkclone ", Roff(command.name), "\n", Roff(line), "\n");
  }
  absl::StrAppend(&out, ".SH DESCRIPTION\n", RoffBody(ManualDescription()), ".SH COMMANDS\n");
  for (const CommandDoc& command : CommandDocs()) {
    absl::StrAppend(&out, ".SS ", Roff(command.name), "\n", Roff(command.summary), "\n",
                    RoffBody(command.description));
    for (const OptionDoc& option : command.options) {
      absl::StrAppend(&out, ".TP\n.B ", Roff(option.flag));
      if (!option.value.empty()) absl::StrAppend(&out, " \\fI", Roff(option.value), "\\fR");
      absl::StrAppend(&out, "\n", Roff(option.text), "\n");
    }
  }
  for (const SectionDoc& section : ManualSections())
    absl::StrAppend(&out, ".SH ", Roff(section.title), "\n", RoffBody(section.text));
  return out;
}

}  // namespace blkclone::cli
