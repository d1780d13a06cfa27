// Device identities from fstat and statx, sysfs and the loop driver.
#include "device_identity.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace blkclone::cli {
namespace {

namespace fs = std::filesystem;
using Field = DeviceIdentity::Field;

std::string DeviceNumber(uint64_t dev) { return absl::StrCat(major(dev), ":", minor(dev)); }

// The first line of a sysfs attribute, trimmed; empty when there is none.
std::string ReadAttribute(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return std::string(absl::StripAsciiWhitespace(line));
}

// The name of the disk at `disk` in sysfs that stays with it across reboots
// and device numbers, or of a loop device's backing file (asked through `fd`).
std::optional<Field> StableName(const fs::path& disk, int fd) {
  static constexpr std::pair<const char*, const char*> kAttributes[] = {{"wwid", "wwid"},
                                                                        {"device/wwid", "wwid"},
                                                                        {"serial", "serial"},
                                                                        {"device/serial", "serial"},
                                                                        {"dm/uuid", "dm-uuid"}};
  for (const auto& [attribute, key] : kAttributes) {
    std::string value = ReadAttribute(disk / attribute);
    if (!value.empty()) return Field{key, std::move(value)};
  }
  struct loop_info64 loop = {};
  std::error_code error;
  if (fs::exists(disk / "loop", error) && ::ioctl(fd, LOOP_GET_STATUS64, &loop) == 0)
    return Field{"loop", absl::StrCat(DeviceNumber(loop.lo_device), ":", loop.lo_inode, "+",
                                      loop.lo_offset)};
  return std::nullopt;
}

std::vector<Field> BlockDeviceFields(int fd, dev_t rdev) {
  std::vector<Field> fields = {{"type", "block"}};
  std::error_code error;
  const fs::path node = fs::canonical(fs::path("/sys/dev/block") / DeviceNumber(rdev), error);
  const std::string partition = error ? "" : ReadAttribute(node / "partition");
  const fs::path disk = partition.empty() ? node : node.parent_path();
  if (std::optional<Field> name = error ? std::nullopt : StableName(disk, fd)) {
    fields.push_back(*std::move(name));
    if (!partition.empty()) {
      fields.push_back({"partition", partition});
      fields.push_back({"start", ReadAttribute(node / "start")});
    }
    return fields;
  }
  uint64_t size = 0;
  (void)::ioctl(fd, BLKGETSIZE64, &size);
  fields.push_back({"block", DeviceNumber(rdev)});
  fields.push_back({"size", absl::StrCat(size)});
  return fields;
}

std::vector<Field> FileFields(int fd, const struct stat& st) {
  std::vector<Field> fields = {{"type", "file"},
                               {"inode", absl::StrCat(DeviceNumber(st.st_dev), ":", st.st_ino)}};
  struct statx stx = {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &stx) == 0 && (stx.stx_mask & STATX_BTIME))
    fields.push_back(
        {"born", absl::StrFormat("%d.%09u", stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec)});
  return fields;
}

absl::string_view TypeName(absl::string_view type) {
  if (type == "file") return "regular file";
  if (type == "block") return "block device";
  if (type == "remote") return "remote device";
  return "device of unknown type";
}

// How a key is said in an error.
absl::string_view Label(absl::string_view key) {
  static constexpr std::pair<absl::string_view, absl::string_view> kLabels[] = {
      {"inode", "inode"},
      {"born", "birth time"},
      {"wwid", "WWID"},
      {"serial", "serial"},
      {"dm-uuid", "device-mapper UUID"},
      {"loop", "loop backing file"},
      {"partition", "partition"},
      {"start", "partition start"},
      {"block", "device number"},
      {"size", "size"},
      {"name", "name"}};
  for (const auto& [known, label] : kLabels) {
    if (known == key) return label;
  }
  return key;
}

std::string ValueOf(const DeviceIdentity& identity, absl::string_view key) {
  for (const auto& [known, value] : identity.fields()) {
    if (known == key) return value;
  }
  return "none";
}

constexpr absl::string_view kRoles[] = {"metadata", "destination", "source"};

}  // namespace

DeviceIdentity DeviceIdentity::Of(int fd, const struct stat& st) {
  return DeviceIdentity(S_ISBLK(st.st_mode) ? BlockDeviceFields(fd, st.st_rdev)
                                            : FileFields(fd, st));
}

DeviceIdentity DeviceIdentity::OfRemote(absl::string_view name) {
  return DeviceIdentity({{"type", "remote"}, {"name", std::string(name)}});
}

std::string DeviceIdentity::ChangeTo(const DeviceIdentity& now) const {
  for (const auto& [key, recorded] : fields_) {
    const std::string current = ValueOf(now, key);
    if (current == recorded) continue;
    if (key == "type")
      return absl::StrCat("a ", TypeName(recorded), " at create, a ", TypeName(current), " now");
    return absl::StrCat(Label(key), " ", recorded, " at create, ", current, " now");
  }
  return "";
}

std::string CloneIdentities::Format() const {
  std::string text;
  const DeviceIdentity* identities[] = {&metadata, &destination, &source};
  for (int i = 0; i < 3; ++i) {
    for (const auto& [key, value] : identities[i]->fields())
      absl::StrAppend(&text, kRoles[i], " ", key, " ", value, "\n");
  }
  return text;
}

absl::StatusOr<CloneIdentities> CloneIdentities::Parse(absl::string_view text) {
  std::vector<Field> fields[3];
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    ++number;
    std::vector<absl::string_view> words = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    int role = 0;
    while (role < 3 && (words.size() < 3 || words[0] != kRoles[role])) ++role;
    if (role == 3)
      return absl::InvalidArgumentError(
          absl::StrCat("line ", number, ": expected ROLE KEY VALUE, got '", line, "'"));
    fields[role].push_back({std::string(words[1]), std::string(words[2])});
  }
  for (int role = 0; role < 3; ++role) {
    if (fields[role].empty())
      return absl::InvalidArgumentError(absl::StrCat("no identity of the ", kRoles[role]));
  }
  return CloneIdentities{.metadata = DeviceIdentity(std::move(fields[0])),
                         .destination = DeviceIdentity(std::move(fields[1])),
                         .source = DeviceIdentity(std::move(fields[2]))};
}

}  // namespace blkclone::cli
