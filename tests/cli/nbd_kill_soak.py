"""kill -9 soak of `blkclone serve --nbd`: run by nbd_kill_soak_test.sh.

Each cycle starts serve with rate-limited background hydration, lets a libnbd
client write (partial, whole-region and region-spanning writes at random
offsets), flush and read back, kills serve with SIGKILL while the client is
busy, restarts it and reads the whole clone back. After each restart every
512-byte sector must hold a value the model allows: after a flush only the
last write before it; for sectors written since, the flushed value or any
later write (the source's bytes count as a value). A new clone (an epoch)
starts once half of the regions are hydrated, so that writes keep landing in
unhydrated regions.

usage: nbd_kill_soak.py BLKCLONE CYCLES SEED   (in a scratch directory, with
BLKCLONE_STATE_DIR set); prints one summary line, exits 1 on any violation.
"""
import atexit
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time

import nbd

SECTOR = 512
REGION = 64 << 10
SIZE = 16 << 20
SECTORS = SIZE // SECTOR
RATE_LIMIT = "256K"
STATS = {"writes": 0, "flushes": 0, "reads": 0, "sectors with a choice": 0}
DEADLINE = 60.0  # seconds for any one wait: a miss fails the run


def deadline_passed(what):
    sys.exit(f"FAIL: deadline of {DEADLINE:.0f} s passed waiting for {what}")


def wait_until(pred, what):
    end = time.monotonic() + DEADLINE
    while not pred():
        if time.monotonic() > end:
            deadline_passed(what)
        time.sleep(0.01)


def blkclone(*args):
    done = subprocess.run([BLKCLONE, *args], capture_output=True, text=True, timeout=DEADLINE)
    if done.returncode != 0:
        sys.exit(f"FAIL: blkclone {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return done.stdout


def sector_value(write_id, sector):
    """The bytes that write `write_id` puts in `sector` (id 0: the source's)."""
    return struct.pack("<QQ", write_id, sector) + bytes([(write_id * 31 + sector) & 0xFF]) * 496


class Model:
    """Per sector: the value a read returns now, and the values a crash may leave."""

    def __init__(self):
        self.current = {}  # sector -> write id; absent: 0
        self.allowed = {}  # sector -> set of write ids; absent: {0}
        self.dirty = set()  # sectors written since the last flush
        self.next_id = 1

    def reset(self):
        self.__init__()

    def start_write(self, sectors):
        write_id, self.next_id = self.next_id, self.next_id + 1
        for s in sectors:
            self.allowed.setdefault(s, {self.current.get(s, 0)}).add(write_id)
        return write_id

    def finish_write(self, write_id, sectors):
        for s in sectors:
            self.current[s] = write_id
            self.dirty.add(s)

    def flushed(self):
        for s in self.dirty:
            self.allowed[s] = {self.current[s]}
        self.dirty.clear()

    def settle(self, sector, write_id):
        """After a restart: what was read is what a read returns from now on."""
        if write_id == 0:
            self.current.pop(sector, None)
            self.allowed.pop(sector, None)
        else:
            self.current[sector] = write_id
            self.allowed[sector] = {write_id}


SERVES = []  # every serve started; those still running are killed at exit


@atexit.register
def kill_leftovers():
    for proc in SERVES:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Serve:
    def __init__(self, name, sock):
        with open("serve.out", "w") as out, open("serve.err", "w") as err:
            self.proc = subprocess.Popen([BLKCLONE, "serve", name, "--nbd", f"unix:{sock}"],
                                         stdout=out, stderr=err)
        SERVES.append(self.proc)

        def ready():
            if self.proc.poll() is not None:
                sys.exit(f"FAIL: serve exited with {self.proc.returncode}: {open('serve.err').read()}")
            with open("serve.out") as f:
                return f.read().startswith("serving clone")

        wait_until(ready, "serve to be ready")

    def wait_exit(self, what):
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            deadline_passed(what)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.wait_exit("serve to die of SIGKILL")
        with open("serve.err") as err:
            if "Sanitizer" in (report := err.read()):
                sys.exit(f"FAIL: serve before the kill: {report}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        status = self.wait_exit("serve to stop on SIGTERM")
        if status != 0:
            sys.exit(f"FAIL: serve exited with {status} on SIGTERM: {open('serve.err').read()}")


def connect(sock):
    h = nbd.NBD()
    h.connect_uri(f"nbd+unix:///?socket={sock}")
    return h


def random_write(rng):
    """(first sector, sector count): partial, whole-region or spanning, anywhere."""
    region_sectors = REGION // SECTOR
    kind = rng.random()
    if kind < 0.5:  # inside one region
        first = rng.randrange(SECTORS)
        count = rng.randint(1, min(16, region_sectors - first % region_sectors))
    elif kind < 0.75:  # one or two whole regions
        first = rng.randrange(SIZE // REGION - 1) * region_sectors
        count = rng.choice((1, 2)) * region_sectors
    else:  # across a region boundary
        boundary = rng.randrange(1, SIZE // REGION) * region_sectors
        first = boundary - rng.randint(1, region_sectors)
        count = min(SECTORS - first, rng.randint(boundary - first + 1, boundary - first + 2 * region_sectors))
    return first, count


class Client(threading.Thread):
    """Writes, flushes and reads back until serve dies under it."""

    def __init__(self, sock, model, rng):
        super().__init__(daemon=True)
        self.h, self.model, self.rng = connect(sock), model, rng
        self.ops = 0
        self.killing = False  # set before serve is killed: errors after it are expected
        self.errors = []
        self.stats = {"writes": 0, "flushes": 0, "reads": 0}
        self.last = random_write(rng)

    def run(self):
        try:
            while True:
                self.one_op()
                self.ops += 1
        except nbd.Error as e:
            if not self.killing:
                self.errors.append(f"client error before the kill: {e}")
        except Exception as e:  # a bug here must fail the run, not end the cycle early
            self.errors.append(f"client: {e!r}")

    def one_op(self):
        op = self.rng.random()
        first, count = self.last if op > 0.9 else random_write(self.rng)
        sectors = range(first, first + count)
        if op < 0.6:
            self.last = (first, count)
            write_id = self.model.start_write(sectors)
            data = b"".join(sector_value(write_id, s) for s in sectors)
            self.h.pwrite(data, first * SECTOR)
            self.model.finish_write(write_id, sectors)
            self.stats["writes"] += 1
        elif op < 0.8:
            self.h.flush()
            self.model.flushed()
            self.stats["flushes"] += 1
        else:
            data = self.h.pread(count * SECTOR, first * SECTOR)
            for i, s in enumerate(sectors):
                want = self.model.current.get(s, 0)
                got = data[i * SECTOR:(i + 1) * SECTOR]
                if got != expected_bytes(want, s):
                    self.errors.append(f"live read of sector {s}: not write {want}")
            self.stats["reads"] += 1


def expected_bytes(write_id, sector):
    return SOURCE[sector * SECTOR:(sector + 1) * SECTOR] if write_id == 0 else sector_value(write_id, sector)


def identify(data, sector):
    """The write id whose bytes `data` are, 0 for the source's, None for neither."""
    if data == SOURCE[sector * SECTOR:(sector + 1) * SECTOR]:
        return 0
    write_id, at = struct.unpack_from("<QQ", data)
    return write_id if at == sector and data == sector_value(write_id, sector) else None


def check_after_restart(sock, model):
    """Reads the whole clone; returns the violations and settles the model."""
    h = connect(sock)
    data = b"".join(h.pread(4 << 20, offset) for offset in range(0, SIZE, 4 << 20))
    h.shutdown()
    violations = []
    for s in range(SECTORS):
        allowed = model.allowed.get(s)
        if allowed is not None and len(allowed) > 1:
            STATS["sectors with a choice"] += 1
        got_bytes = data[s * SECTOR:(s + 1) * SECTOR]
        if allowed is None:
            if got_bytes != SOURCE[s * SECTOR:(s + 1) * SECTOR]:
                violations.append(f"sector {s}: never written, yet not the source's bytes")
            continue
        got = identify(got_bytes, s)
        if got not in allowed:
            violations.append(f"sector {s}: holds {'garbage' if got is None else f'write {got}'}, "
                              f"allowed {sorted(allowed)}")
        model.settle(s, got if got is not None else model.current.get(s, 0))
    model.dirty.clear()
    return violations


def hydrated_fraction(name):
    regions = json.loads(blkclone("status", name, "--json"))["regions"]
    return regions["hydrated"] / regions["total"]


def new_clone(epoch):
    name = f"c{epoch}"
    for f in (f"dst{epoch - 1}.img", f"meta{epoch - 1}.img"):
        if os.path.exists(f):
            os.remove(f)
    with open(f"dst{epoch}.img", "wb") as f:
        f.truncate(SIZE)
    with open(f"meta{epoch}.img", "wb") as f:
        f.truncate(1 << 20)
    blkclone("create", name, "--metadata", f"meta{epoch}.img", "--dest", f"dst{epoch}.img",
             "--source", "src.img", "--region-size", str(REGION), "--no-hydration")
    return name


def enable_hydration(name):
    blkclone("message", name, "rate_limit", RATE_LIMIT)
    blkclone("message", name, "enable_hydration")
    state = json.loads(blkclone("status", name, "--json"))["hydration"]["state"]
    if state != "enabled":
        sys.exit(f"FAIL: hydration {state} after enable_hydration")


def main():
    global BLKCLONE, SOURCE
    BLKCLONE, cycles, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    with open("src.img", "wb") as f:
        f.write(random.Random(seed + 1).randbytes(SIZE))
    with open("src.img", "rb") as f:
        SOURCE = f.read()
    sock = os.path.abspath("nbd.sock")
    model, epoch = Model(), 1
    name = new_clone(epoch)
    serve = Serve(name, sock)
    enable_hydration(name)
    failures, started = 0, time.monotonic()
    for cycle in range(1, cycles + 1):
        client = Client(sock, model, rng)
        client.start()
        target = rng.randint(1, 40)
        wait_until(lambda: client.ops >= target or not client.is_alive(),
                   f"cycle {cycle}: {target} client operations")
        client.killing = True
        serve.kill9()
        client.join(DEADLINE)
        if client.is_alive():
            deadline_passed(f"cycle {cycle}: the client to see serve die")
        for k, v in client.stats.items():
            STATS[k] += v
        serve = Serve(name, sock)
        violations = client.errors + check_after_restart(sock, model)
        for v in violations[:10]:
            print(f"cycle {cycle}: {v}", file=sys.stderr)
        failures += 1 if violations else 0
        if hydrated_fraction(name) > 0.5:
            serve.stop()
            epoch += 1
            name = new_clone(epoch)
            model.reset()
            serve = Serve(name, sock)
        enable_hydration(name)
    serve.stop()
    print(f"nbd_kill_soak: {cycles} cycles, {failures} failures, {epoch} clones, "
          f"{STATS['writes']} writes, {STATS['flushes']} flushes, {STATS['reads']} read-backs, "
          f"{STATS['sectors with a choice']} unflushed sectors checked, "
          f"{time.monotonic() - started:.0f} s (seed {seed})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
