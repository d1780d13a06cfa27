// ThreadSanitizer's default options for the test binaries (TSAN_OPTIONS from
// the tsan test preset adds to them).
//
// ignore_noninstrumented_modules=1: Debian's libabsl is not built with TSan,
// so when the last copy of an absl::Status is dropped inside its
// UnrefNonInlined, the atomic decrement goes unseen and the free looks like a
// race with another thread's earlier copy (a failed commit hands one status to
// requests on several threads). With it, calls such as free made from
// uninstrumented libraries are not checked; every access of blkclone's own
// code still is. Binaries that run libfuse's threads leave it out: those
// threads end inside an ignored call, which TSan reports as an error.
extern "C" const char* __tsan_default_options() { return "ignore_noninstrumented_modules=1"; }
