"""Helpers shared by the benchmark workers (bench/cni/bench.py and
bench/connect/bench.py): timed and untimed processes, scratch files, the
statistics of a series of samples and the facts of a throwaway host.

Each worker puts this directory on sys.path and imports what it needs.
"""

import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import time

RUN = "/run"                 # a tmpfs private to the throwaway host
SCRATCH = f"{RUN}/bench"     # stdin/stdout files of the timed processes
CALL_TIMEOUT = 30.0          # seconds; a call that takes longer is a failure


class CallFailed(Exception):
    pass


class Stopped(Exception):
    pass


def on_term(signum, frame):
    raise Stopped(f"signal {signum} (time limit of the scenario reached)")


# ---------------------------------------------------------------- processes

def timed(argv, stdin=None, stdout=None, env=None, timeout=CALL_TIMEOUT):
    """Run one process; return (elapsed_ns, exit_code, stderr_text).

    The clock starts just before posix_spawn and stops when waitpid returns.
    stdin/stdout are paths (files in the private tmpfs) opened by the spawn
    itself, so nothing else happens inside the timed window."""
    err = f"{SCRATCH}/stderr"
    fa = [
        (os.POSIX_SPAWN_OPEN, 0, stdin or "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, stdout or "/dev/null", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    env = os.environ if env is None else env
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=fa)
    pfd = os.pidfd_open(pid)
    try:
        p = select.poll()
        p.register(pfd, select.POLLIN)
        if not p.poll(int(timeout * 1000)):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise CallFailed(f"{' '.join(argv)}: no answer after {timeout:.0f} s (killed)")
        _, status = os.waitpid(pid, 0)
        t1 = time.perf_counter_ns()
    finally:
        os.close(pfd)
    code = os.waitstatus_to_exitcode(status)
    text = ""
    if code != 0:
        with open(err, errors="replace") as f:
            text = f.read()[-2000:]
    return t1 - t0, code, text


def sh(argv, check=True, input=None):
    """Untimed helper command; returns stdout."""
    r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise CallFailed(f"{' '.join(argv)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-1500:]}")
    return r.stdout


def start_netloom_serve(binary, state_dir):
    """Starts `netloom serve` on `state_dir` (its log in RUN) and returns the
    process once its socket is there."""
    logpath = f"{RUN}/netloom-serve.log"
    log = open(logpath, "w")
    proc = subprocess.Popen([binary, "--state-dir", state_dir, "serve"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    sock = os.path.join(state_dir, "netloom.sock")
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise CallFailed("`netloom serve` did not start: " + open(logpath).read()[-300:])
        time.sleep(0.01)
    return proc


def stop_netloom_serve(proc):
    """SIGTERM, then its last log line."""
    proc.terminate()
    proc.wait(timeout=60)
    return open(f"{RUN}/netloom-serve.log").read().strip()[-200:]


def write(path, data):
    with open(path, "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))
    return path


def netns_batch(verb, names):
    """Create or delete many named network namespaces with `ip -batch` (untimed)."""
    for i in range(0, len(names), 500):
        sh(["ip", "-batch", "-"], input="".join(f"netns {verb} {n}\n" for n in names[i:i + 500]))


# ---------------------------------------------------------------- settling

def become_subreaper():
    """Processes a timed one leaves behind (netloom sends a veth's deletion
    from a detached process) become this process's children, so `settle`
    can wait for them."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:    # PR_SET_CHILD_SUBREAPER
        raise CallFailed(f"prctl(PR_SET_CHILD_SUBREAPER): errno {ctypes.get_errno()}")


def _children(keep):
    """Live children of this process other than `keep`; zombies are reaped."""
    me, live = os.getpid(), []
    for e in os.scandir("/proc"):
        if not e.name.isdigit() or int(e.name) in keep:
            continue
        try:
            with open(f"/proc/{e.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            if fields[0] == "Z":
                try:
                    os.waitpid(int(e.name), os.WNOHANG)
                except ChildProcessError:
                    pass
            else:
                live.append(int(e.name))
    return live


def host_links():
    """How many links this network namespace holds (/proc/net/dev is read
    in the reading thread's namespace)."""
    with open("/proc/net/dev") as f:
        return sum(1 for _ in f) - 2


def _netlink_ack(proto, msg_type, flags, body):
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto) as s:
        s.send(struct.pack("=IHHII", 16 + len(body), msg_type, 0x1 | 0x4 | flags, 1, 0) + body)
        reply = s.recv(65536)
        kind = struct.unpack_from("=H", reply, 4)[0]
        if kind == 2:                                   # NLMSG_ERROR
            err = struct.unpack_from("=i", reply, 16)[0]
            if err:
                raise CallFailed(f"netlink type {msg_type}: errno {-err}")


def rtnl_barrier():
    """Returns once the RTNL lock could be taken: an RTM_SETLINK that
    changes nothing (IFF_UP on lo, already up), acknowledged."""
    ifi = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 1, 1, 1)
    _netlink_ack(0, 19, 0, ifi)                          # NETLINK_ROUTE, RTM_SETLINK


def nft_barrier():
    """Returns once nf_tables has freed what earlier transactions deleted:
    a NFT_MSG_GETGEN request, then the socket's release. A nf_tables
    socket's release waits, under its namespace's nf_tables lock, until
    those objects are freed (after an RCU grace period); a link registered
    in that namespace meanwhile waits for the lock."""
    nfgen = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)
    _netlink_ack(12, (10 << 8) | 16, 0, nfgen)           # NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, GETGEN


def settle(baseline, keep=(), timeout=10.0):
    """Waits, untimed for any tool, until what the last tool left behind is
    done: every process it left (a detached veth deletion) has exited, the
    namespace is back to `baseline` links, and the RTNL and nf_tables locks
    are free with nothing queued behind them. Returns the wait in ns: what a
    tool leaves to the background is reported beside what it is timed for,
    and no tool is timed while another one's leftovers hold the kernel."""
    t0 = time.perf_counter_ns()
    deadline = time.monotonic() + timeout
    keep = set(keep)
    while _children(keep) or host_links() > baseline:
        if time.monotonic() > deadline:
            raise CallFailed(f"processes {_children(keep)} and {host_links() - baseline} link(s) over the "
                             f"{baseline} of the start still there {timeout:.0f} s after a disconnect")
        time.sleep(0.0002)
    rtnl_barrier()
    nft_barrier()
    return time.perf_counter_ns() - t0


# ---------------------------------------------------------------- numbers

def ms(ns):
    return ns / 1e6


def stats(samples_ms):
    if not samples_ms:
        return None
    s = sorted(samples_ms)
    p90 = s[max(0, -(-len(s) * 90 // 100) - 1)]   # nearest rank
    return {"n": len(s), "median_ms": round(statistics.median(s), 3), "p90_ms": round(p90, 3),
            "min_ms": round(s[0], 3), "max_ms": round(s[-1], 3)}


def host_facts():
    return {"netns_links": sh(["ip", "-o", "link"]).count("\n"),
            "netns_inode": os.readlink("/proc/self/ns/net"),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
