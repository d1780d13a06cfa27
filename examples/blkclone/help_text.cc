// The text of blkclone's help and manual page: what each command does, its
// options, the table line, messages, the control socket and exit statuses.
#include <array>

#include "help.hpp"

namespace blkclone::cli {
namespace {

constexpr OptionDoc kStateDir = {
    "--state-dir", "DIR",
    "Where clones are recorded (see FILES); it must exist. Default: $BLKCLONE_STATE_DIR, else "
    "/var/lib/blkclone."};
constexpr OptionDoc kBackend = {
    "--backend", "NAME",
    "How devices are accessed: file (pread and pwrite; the default), direct (O_DIRECT, past the "
    "page cache, through io_uring where the build has it) or uring (io_uring); direct and uring "
    "where the build includes them."};
constexpr OptionDoc kCephConf = {
    "--ceph-conf", "FILE",
    "The ceph.conf of the cluster that rbd: devices live in, recorded into each rbd: name "
    "that names none (as :conf=FILE). Default: $CEPH_CONF, else /etc/ceph/ceph.conf."};
constexpr OptionDoc kThreshold = {
    "--threshold", "N",
    "Most regions copied at once by background hydration (hydration_threshold)."};
constexpr OptionDoc kBatchSize = {
    "--batch-size", "N",
    "Contiguous unhydrated regions copied together, up to N (hydration_batch_size)."};

}  // namespace

std::span<const CommandDoc> CommandDocs() {
  static const auto* const kCommands = new std::array<CommandDoc, 11>{{
      {"create",
       "NAME [0 LENGTH] clone METADATA DEST SOURCE REGION_SECTORS [FEATURE_ARGS...]\n"
       "NAME --metadata METADATA --dest DEST --source SOURCE --region-size SIZE [OPTIONS]",
       "Create a clone of SOURCE into DEST and record it as NAME.",
       "The first form takes dm-clone's table line as it is, optionally preceded by the "
       "\"0 LENGTH\" that dmsetup tables start with (LENGTH must be the source's size in "
       "512-byte sectors); see TABLE LINE. The second form says the same with options.\n\n"
       "Everything is checked before anything is written: that the three devices exist and are "
       "three different files or block devices (whatever paths name them), that the "
       "destination is at least as large as "
       "the source, the region size (a power of two from 4 KiB to 1 GiB and a multiple of the "
       "devices' block sizes), and that the metadata device is large enough (the error says how "
       "large it must be). Then a blank metadata device is formatted and the normalised table "
       "is recorded in STATE_DIR/NAME.table, with device paths made absolute, and what "
       "identifies each device in STATE_DIR/NAME.devices (see DEVICES).\n\n"
       "Metadata that already holds a clone of the same geometry is taken over, as dm-clone "
       "does, unless another recorded clone owns it. Metadata of another geometry, of a "
       "finished clone, with needs_check set, or a device holding anything but blkclone "
       "metadata is refused and left untouched.",
       {{"--metadata", "METADATA", "The metadata device (table form: first device)."},
        {"--dest", "DEST", "The destination device, which becomes the copy."},
        {"--source", "SOURCE",
         "The source device; it is only ever read. It may also be a remote NBD export named "
         "by URI (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH), or an RBD "
         "image or snapshot (see DEVICES)."},
        {"--region-size", "SIZE",
         "The unit of copying, in bytes with an optional K, M or G suffix, e.g. 64K."},
        {"--no-hydration", "", "Start with background hydration disabled (no_hydration)."},
        {"--no-discard-passdown", "",
         "Do not pass discards down to the destination (no_discard_passdown)."},
        kThreshold,
        kBatchSize,
        kBackend,
        kCephConf,
        kStateDir}},
      {"serve",
       "NAME [--nbd unix:PATH|tcp:HOST:PORT] [--nbd-name EXPORT] [--fuse DIR] [--backend NAME]",
       "Run a clone in the foreground: hydration, control socket and exports.",
       "Opens the clone and hydrates it in the background as its table says: no_hydration "
       "starts with hydration disabled, hydration_threshold and hydration_batch_size set the "
       "pace. The control socket STATE_DIR/NAME.sock answers blkclone status and blkclone "
       "message (see CONTROL SOCKET). The metadata is committed every second while it "
       "changes.\n\n"
       "With --nbd or --fuse (or both) the clone is also a disk that other programs use: reads "
       "of regions not yet hydrated are served from the source, writes go to the destination, "
       "flushes commit the metadata and discards of whole regions mark them hydrated without "
       "copying, as with a dm-clone device. For example qemu-img convert -n IMAGE "
       "nbd+unix:///?socket=PATH writes an image into it, and losetup --find --show DIR/disk "
       "makes it a block device to mount.\n\n"
       "Over NBD, block status says where the data is: in the metadata context "
       "base:allocation the holes of the source (where not yet hydrated) and of the "
       "destination read as zeroes, so nbdcopy and qemu-img skip them; in the context "
       "blkclone:hydrated, status bit 0 (value 1) is set where the clone has hydrated the "
       "range and clear where reads still go to the source (nbdinfo --map=blkclone:hydrated "
       "URI). NBD_CMD_CACHE (nbdsh's h.cache) hydrates the regions of its range and answers "
       "once they are.\n\n"
       "SIGTERM or SIGINT stops the exports (an NBD server first answers the requests it "
       "received), commits the metadata, closes the clone and exits with status 0; so does "
       "unmounting DIR (umount DIR). Detach loop devices from DIR/disk before that. Only one "
       "process runs a clone at a time: every command holds the clone's metadata device and "
       "destination while it uses them (see DEVICES).",
       {{"--nbd", "unix:PATH|tcp:HOST:PORT",
         "Serve the clone over NBD on a Unix socket or TCP (tcp:PORT listens on 127.0.0.1 "
         "only; an IPv6 HOST goes in brackets)."},
        {"--nbd-name", "EXPORT",
         "The NBD export name clients ask for; the default export (the empty name) is "
         "accepted as well."},
        {"--fuse", "DIR",
         "Mount a FUSE file system on the directory DIR holding one file, DIR/disk, with the "
         "clone's size and bytes; a loop device can be attached to it."},
        kBackend,
        kStateDir}},
      {"status",
       "NAME [--json | --human]",
       "Print a clone's status.",
       "By default the line dm-clone prints, with sizes in 512-byte sectors:\n\n"
       "  <metadata block size> <used>/<total metadata blocks> <region size>\n"
       "      <hydrated>/<total regions> <hydrating regions> <#features> <features>*\n"
       "      <#core args> <core args>* <rw|ro>\n\n"
       "or just Fail when the metadata is unusable. The features listed are no_hydration while "
       "background hydration is disabled and no_discard_passdown when discards are not passed "
       "down (asked for, or the destination cannot discard).\n\n"
       "A running clone (serve or hydrate) answers through its control socket. For a clone "
       "that nothing runs, the committed state is read from its metadata: no region is being "
       "hydrated, and in JSON \"active\" is false.",
       {{"--json", "",
         "The same as one JSON object, in bytes, with the hydration state, copy rate, rate "
         "limit and ETA."},
        {"--human", "", "The same in KiB, MiB and GiB, with a percentage, copy rate and ETA."},
        kStateDir}},
      {"message",
       "NAME [0] MESSAGE [ARGUMENT...]",
       "Send a message to a running clone.",
       "The messages of dm-clone and blkclone's own; see MESSAGES. The sector argument 0 that "
       "dmsetup message takes may precede the message. A message is checked before the clone "
       "is contacted: an unknown or malformed one is an error with exit status 2.",
       {kStateDir}},
      {"hydrate",
       "NAME [--threshold N] [--batch-size N] [--rate-limit R] [--no-detect-zeroes]",
       "Hydrate a clone to completion, showing progress.",
       "Opens the clone itself (refused while serve or another command holds it) and copies "
       "every unhydrated region. On a terminal a progress bar shows the percentage, rate and "
       "ETA; otherwise a progress line is printed every second. hydrate copies as fast as it "
       "can: by default 64 regions at once in batches of 16, whatever the table's core "
       "arguments say (those, dm-clone's defaults 1 and 1 unless set, pace serve's background "
       "hydration), through the fastest copier the backend has (copy_file_range for file, "
       "io_uring for uring and direct, buffers otherwise; a fallback is reported on stderr); "
       "no_hydration does not apply. Holes of the source are not copied: where the source can "
       "tell where its data is (files, NBD servers offering base:allocation, RBD), hydrate "
       "zeroes its holes on the destination (a punched hole on files, write-zeroes on block "
       "devices and NBD) and reads only the data; chunks of data that are all zeroes are zeroed "
       "the same way instead of written. The destination stays as thin as the source. The "
       "progress counts data and holes apart and its ETA is over the data still to copy; a "
       "source that fails to describe itself is copied whole, with one line on stderr. "
       "Meanwhile the control socket "
       "answers status and messages, so `blkclone message NAME rate_limit 50M` changes the "
       "pace.\n\n"
       "The metadata is committed every second. SIGINT or SIGTERM commits it and exits with "
       "status 0; after that, or even after kill -9 or a crash, running hydrate again resumes "
       "where it stopped, and data flushed before is kept. Copy failures are retried with a "
       "growing delay; when they persist, or a commit fails, hydrate commits what was copied "
       "and exits with status 1 and one line saying why.",
       {{"--threshold", "N", "Most regions copied at once (default 64)."},
        {"--batch-size", "N", "Contiguous unhydrated regions copied together (default 16)."},
        {"--rate-limit", "R",
         "Background copy bandwidth in bytes per second, with an optional K, M, G or T suffix; "
         "0 means unlimited (the default)."},
        {"--no-detect-zeroes", "",
         "Write chunks of zeroes read from the source like any data instead of zeroing the "
         "destination range."},
        kBackend,
        kStateDir}},
      {"finalize",
       "NAME",
       "Mark a fully hydrated clone finished: its destination replaces it.",
       "Refuses with exit status 1 until every region is hydrated. Then flushes the "
       "destination, commits the metadata with its finished flag set and prints how to go on: "
       "as when a dm-clone table is replaced by a linear one, the destination is used directly "
       "and the metadata device is no longer needed. serve, hydrate, write and read refuse a "
       "finished clone; status and verify still work. Finalizing again changes nothing.",
       {kBackend, kStateDir}},
      {"check",
       "METADATA [--clear-needs-check-flag | --repair]",
       "Check a metadata device, like thin_check.",
       "Reads every superblock slot and every copy of every bitmap block and prints each "
       "problem on its own line, naming the block and what is wrong, then harmless findings "
       "(such as traces of an interrupted commit, or one damaged copy whose twin holds the "
       "committed state) as lines starting with \"note: \". Exit status 0 when the metadata is "
       "clean, 1 when problems were found (then read-write opens are refused until it is "
       "repaired), when the device cannot be opened, or while a command holds it (see DEVICES).",
       {{"--clear-needs-check-flag", "",
         "When the check passes, clear the needs_check flag that detected damage sets; "
         "read-write opens are refused while it is set."},
        {"--repair", "",
         "When problems were found, accept the loss they mean and make the metadata usable: "
         "each damaged bitmap block takes its newest readable committed version (zeroes if "
         "none), so the regions only a lost version marked hydrated read from the source "
         "again, and writes made to them through the clone are lost. Commits that state with "
         "needs_check cleared, checks again and exits 0 if the check then passes."},
        kBackend,
        kCephConf}},
      {"dump",
       "METADATA [--json]",
       "Print the committed state of a metadata device.",
       "Geometry, UUID, generation, flags, space use and the hydrated regions as ranges, as "
       "text or as JSON (keys in docs/metadata-format.md).",
       {{"--json", "", "Print one JSON object."}, kBackend, kCephConf}},
      {"verify",
       "NAME",
       "Compare the destination's hydrated regions with the source.",
       "Reads both devices directly, so the clone must not be running, and compares every "
       "region the committed metadata marks hydrated; regions not hydrated yet are skipped, as "
       "the clone reads them from the source. Source read errors are retried as background "
       "hydration retries copies. Prints each range of bytes that differs and exits "
       "with status 1 if there is any, 0 if every byte compared is equal. Regions written "
       "through the clone differ from the source by design. A progress bar is shown on a "
       "terminal.",
       {kBackend, kStateDir}},
      {"write",
       "NAME OFFSET FILE",
       "Write a file's bytes through the clone and flush them.",
       "Writes the contents of FILE (- for standard input) at byte OFFSET of the clone, then "
       "flushes, so that the data is durable when the command returns. OFFSET (which takes K, "
       "M and G suffixes) and the size of FILE must be multiples of the clone's block size, "
       "512 bytes.",
       {kBackend, kStateDir}},
      {"read",
       "NAME OFFSET LENGTH [FILE]",
       "Read bytes through the clone.",
       "Copies LENGTH bytes from byte OFFSET of the clone to FILE, or to standard output. "
       "Unhydrated regions come from the source, as for any reader of the clone. OFFSET and "
       "LENGTH take K, M and G suffixes and must be multiples of 512.",
       {kBackend, kStateDir}},
  }};
  return *kCommands;
}

absl::string_view ManualDescription() {
  return "blkclone clones block devices the way Linux dm-clone does, in user space. A clone is "
         "a writable device that is usable at once as a copy of a read-only, often remote and "
         "slow, SOURCE, while its data is copied (\"hydrated\") region by region into a fast "
         "destination, DEST. A small METADATA device records, crash-consistently, which "
         "regions of DEST are valid.\n\n"
         "Devices are regular files, block devices or Ceph RBD images; the source may also be "
         "an NBD URI (see DEVICES). A clone is created once under a NAME, "
         "then run by serve or hydrate, watched with status, steered with message, and "
         "finished with finalize once every region is hydrated.";
}

std::span<const SectionDoc> ManualSections() {
  static const auto* const kSections = new std::array<SectionDoc, 9>{{
      {"DEVICES",
       "A device is named by the path of a regular file or block device, by an NBD URI "
       "(the source only: nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH and their "
       "TLS forms nbds://, nbds+unix://), or by an RBD image name:\n\n"
       "  rbd:POOL/[NAMESPACE/]IMAGE[@SNAPSHOT][:conf=CEPH_CONF][:id=CLIENT_ID]\n\n"
       "An RBD image must exist (rbd create) and be at least as large as it needs to be; a "
       "snapshot can only be the source. librbd's cache is off, so that a completed write is "
       "durable. create's --ceph-conf fills in :conf= for the rbd: names that lack it, and the "
       "name is recorded as it is, so later commands reach the same cluster. Example, a "
       "golden image cloned to a local disk:\n\n"
       "  blkclone create vm1 --source rbd:rbd/golden@v2 --dest /dev/nvme0n1p2 --metadata "
       "/dev/vg/meta --region-size 4M --ceph-conf /etc/ceph/prod.conf\n\n"
       "create records what identifies each device, and every later command opens a device "
       "only if its path still leads there: a regular file by its file system, inode and birth "
       "time; a block device by the stable name the kernel gives its disk (WWID, serial, "
       "device-mapper UUID, or a loop device's backing file) with its partition, else by its "
       "device number and size; a remote device by its name. A path that has come to name "
       "another device (a symlink or hard link to another file, a replaced or copied file, "
       "/dev names that moved between disks at a reboot) is refused with exit status 1, naming "
       "what changed; name disks by /dev/disk/by-id paths to keep them apart. So is a device "
       "resized since create.\n\n"
       "A command holds the metadata device and the destination of the clone it opens, and "
       "check and dump their metadata device, until it exits: with an flock on a regular "
       "file, with an flock and an exclusive open (O_EXCL) on a block device, which the "
       "kernel refuses while it is mounted or claimed by another program. Any other command "
       "that would open them, from any state directory, waits a second for a short-lived "
       "holder, then fails with exit status 1 naming the device and the holder. The source is "
       "only read and can be shared by several clones. Remote devices are not held."},
      {"TABLE LINE",
       "create takes dm-clone's table line:\n\n"
       "  clone <metadata dev> <destination dev> <source dev> <region size>\n"
       "      [<#feature args> [<feature>]* [<#core args> [<key> <value>]*]]\n\n"
       "The region size is in 512-byte sectors. Features: no_hydration (start with background "
       "hydration disabled) and no_discard_passdown (do not pass discards down to the "
       "destination). Core arguments, counted as words: hydration_threshold N (most regions "
       "copied at once by background hydration; 0 stops it; default 1) and "
       "hydration_batch_size N (contiguous regions copied together; default 1). The example "
       "of the kernel documentation works as it is:\n\n"
       "  blkclone create vm1 0 1048576000 clone /dev/vg/meta /dev/nvme0n1p2 /dev/sdb 8 1 "
       "no_hydration\n\n"
       "Features and core-argument keys are matched without regard to case. The clone is "
       "recorded with its table normalised as `dmsetup table` prints it, with all four core "
       "arguments."},
      {"MESSAGES",
       "dm-clone's messages:\n\n"
       "  enable_hydration\n"
       "  disable_hydration\n"
       "  hydration_threshold N\n"
       "  hydration_batch_size N\n\n"
       "and blkclone's:\n\n"
       "  rate_limit R          background copy bandwidth, bytes/s (K, M, G, T: binary\n"
       "                        multiples), 0 = unlimited\n"
       "  retry_policy MAX FIRST_MS MAX_MS\n"
       "                        stop background hydration after MAX consecutive copy\n"
       "                        failures, retrying after FIRST_MS, doubling to MAX_MS\n"
       "  restart_hydration     resume background hydration stopped by copy failures"},
      {"CONTROL SOCKET",
       "serve and hydrate listen on the Unix stream socket STATE_DIR/NAME.sock (mode 0600). "
       "A client connects, sends one request line and reads the response until the server "
       "closes the connection. Requests:\n\n"
       "  status [dm|json|human]\n"
       "  message MESSAGE [ARGUMENT...]\n\n"
       "The first line of the response is ok, followed by the payload (the status in the form "
       "asked for; nothing for a message), or error CODE TEXT, where CODE names the kind of "
       "error as Abseil's status codes do (INVALID_ARGUMENT for a malformed request). For "
       "example:\n\n"
       "  $ printf 'status\\n' | socat - UNIX-CONNECT:/var/lib/blkclone/vm1.sock\n"
       "  ok\n"
       "  8 4/18 128 2048/8192 1 0 4 hydration_threshold 1 hydration_batch_size 1 rw"},
      {"EXIT STATUS",
       "  0  success\n"
       "  1  the operation failed or found something: a recorded clone that cannot be\n"
       "     opened as it was created (a device missing, unreadable, replaced, resized,\n"
       "     of the wrong type or held by another command; its metadata blank, damaged,\n"
       "     another clone's or finished), an I/O error, problems found by check,\n"
       "     differences found by verify, finalize of a clone not fully hydrated, or\n"
       "     not running for message\n"
       "  2  bad usage or input, found before anything was written: an unknown command,\n"
       "     option, feature or message, a wrong number of arguments, a bad number, a\n"
       "     missing file, an unknown NAME, a state directory that does not exist, or\n"
       "     devices that create refuses (missing, too small, one device twice, holding\n"
       "     another clone's metadata)\n\n"
       "Every error is one line on standard error: the command, the argument at fault and the "
       "problem, e.g. \"blkclone create: region size 3000: not a power of two\"."},
      {"FILES",
       "  STATE_DIR/NAME.table  the clone's normalised table line\n"
       "  STATE_DIR/NAME.uuid   the UUID of its metadata, which must match when it is opened\n"
       "  STATE_DIR/NAME.devices\n"
       "                        what identifies each device, as lines ROLE KEY VALUE\n"
       "  STATE_DIR/NAME.lock   held by the command running the clone; names it\n"
       "  STATE_DIR/NAME.sock   the control socket of serve and hydrate"},
      {"ENVIRONMENT",
       "BLKCLONE_STATE_DIR: the state directory when --state-dir is not given (default "
       "/var/lib/blkclone). It must exist: mkdir -p it first."},
      {"EXAMPLES",
       "  blkclone create vm1 --metadata meta.img --dest dest.img --source src.img \\\n"
       "      --region-size 64K\n"
       "  blkclone serve vm1 &\n"
       "  blkclone status vm1 --human\n"
       "  blkclone message vm1 rate_limit 100M\n"
       "  kill %1\n"
       "  blkclone hydrate vm1\n"
       "  blkclone finalize vm1\n"
       "  blkclone verify vm1"},
      {"SEE ALSO",
       "dmsetup(8), thin_check(8), qemu-img(1); the kernel's dm-clone documentation; "
       "docs/metadata-format.md in the blkclone sources for the metadata format."},
  }};
  return *kSections;
}

}  // namespace blkclone::cli
