#!/usr/bin/env python3
"""CNI ADD/DEL benchmark: netloom as the main plugin beside the reference
bridge + host-local (+ portmap) chain, called exactly as a container runtime
calls plugins. Not part of the test suite.

Two sub-commands, both driven by bench/cni.sh:

  bench.py worker SCENARIO OUT.json   run one scenario inside the current
                                      throwaway host (cni.sh --host made it)
  bench.py report OUTDIR [JSONFILE]   merge the scenario files, print the
                                      table, the ratios, the targets and JSON

A plugin call is one process: the CNI_* variables in its environment, the
network configuration on stdin (with `name`, `cniVersion`, `runtimeConfig`
for the capabilities the plugin declares and, in a chain, the previous
plugin's result as `prevResult`, as libcni injects them), the result on
stdout. For a chain the clock covers every plugin process and the JSON glue
between them, as it does for a runtime. DEL runs the chain in reverse, each
plugin with the cached result as `prevResult`.
"""

import gc
import hashlib
import ipaddress
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from bench_common import (  # noqa: E402
    RUN, SCRATCH, CallFailed, Stopped, become_subreaper, host_facts, host_links, ms, netns_batch, on_term,
    settle, sh, start_netloom_serve, stats, stop_netloom_serve, timed, write,
)

VERSION = "1.0.0"            # cniVersion of every config (both tools speak it)


def which(cmd):
    for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        p = os.path.join(d, cmd)
        if os.access(p, os.X_OK):
            return p
    return None


# ---------------------------------------------------------------- the tools

class Plugins:
    """A chain of CNI plugins run as a runtime runs a conflist."""
    key = label = "?"
    subnet = gateway = None

    def __init__(self, publish, hostport, path):
        self.publish = publish
        self.hostport = hostport
        self.path = path          # CNI_PATH
        self.name = "bnet"
        self.status = "ok"
        self.samples = {"add": [], "del": [], "settle": []}
        self.notes = []
        self.verified = None
        self.results = {}

    def chain(self):
        raise NotImplementedError

    def conf(self, plugin, prev=None):
        """The stdin of one plugin: its config with name and cniVersion,
        runtimeConfig for the capabilities it declares, and prevResult."""
        c = dict(plugin, cniVersion=VERSION, name=self.name)
        caps = c.get("capabilities", {})
        rc = {}
        if caps.get("portMappings") and self.publish:
            rc["portMappings"] = [{"hostPort": self.hostport, "containerPort": 80, "protocol": "tcp"}]
        if rc:
            c["runtimeConfig"] = rc
        if prev is not None:
            c["prevResult"] = prev
        return c

    def env(self, cmd, sb):
        e = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
             "CNI_COMMAND": cmd, "CNI_CONTAINERID": hashlib.sha256(sb.encode()).hexdigest(),
             "CNI_NETNS": f"{RUN}/netns/{sb}", "CNI_IFNAME": "eth0", "CNI_PATH": self.path}
        return e

    def binary(self, ptype):
        for d in self.path.split(":"):
            p = os.path.join(d, ptype)
            if os.access(p, os.X_OK):
                return p
        raise CallFailed(f"plugin {ptype!r} is not in CNI_PATH {self.path}")

    def setup(self):
        self.bins = {p["type"]: self.binary(p["type"]) for p in self.chain()}
        self.first = write(f"{SCRATCH}/{self.key}-add-0.json", self.conf(self.chain()[0]))
        # An anchor container (publishing nothing) stays attached for the
        # whole run, so the network's bridge and chains exist before the
        # first timed call.
        netns_batch("add", [f"anchor-{self.key}"])
        publish, self.publish = self.publish, False
        first, self.first = self.first, write(f"{SCRATCH}/{self.key}-anchor.json", self.conf(self.chain()[0]))
        try:
            self.add(f"anchor-{self.key}")
        finally:
            self.publish, self.first = publish, first

    def add(self, sb):
        env = self.env("ADD", sb)
        out = f"{SCRATCH}/{self.key}-out"
        t = time.perf_counter_ns()
        prev = None
        for i, plugin in enumerate(self.chain()):
            stdin = self.first if i == 0 else write(f"{SCRATCH}/{self.key}-in", self.conf(plugin, prev))
            _, code, err = timed([self.bins[plugin["type"]]], stdin=stdin, stdout=out, env=env)
            with open(out) as f:
                text = f.read()
            if code != 0:
                raise CallFailed(f"{plugin['type']} ADD: exit {code}: {text.strip() or err.strip()}")
            prev = json.loads(text)
        elapsed = time.perf_counter_ns() - t
        self.results[sb] = prev
        return elapsed

    def prepare_del(self, sb):
        """DEL inputs, written before the clock starts (a runtime has them cached)."""
        files = []
        for i, plugin in enumerate(reversed(self.chain())):
            files.append((plugin["type"], write(f"{SCRATCH}/{self.key}-del-{i}.json",
                                                self.conf(plugin, self.results.get(sb)))))
        return self.env("DEL", sb), files

    def delete(self, prepared, sb):
        env, files = prepared
        t = time.perf_counter_ns()
        for ptype, stdin in files:
            _, code, err = timed([self.bins[ptype]], stdin=stdin, env=env)
            if code != 0:
                raise CallFailed(f"{ptype} DEL: exit {code}: {err.strip()}")
        elapsed = time.perf_counter_ns() - t
        self.results.pop(sb, None)
        return elapsed


class Netloom(Plugins):
    key, label = "netloom", "netloom (main plugin)"
    subnet, gateway = "10.88.0.0/16", "10.88.0.1"
    state = f"{RUN}/netloom-state"
    # Every call does the work in its own process, even when a service runs.
    service_mode = "off"

    def chain(self):
        return [{"type": "netloom", "driver": "bridge", "subnets": [self.subnet],
                 "stateDir": self.state, "capabilities": {"portMappings": True}}]

    def env(self, cmd, sb):
        return dict(super().env(cmd, sb), NETLOOM_SERVICE=self.service_mode)


class NetloomServed(Netloom):
    """The same plugin calls while `netloom serve` runs on the same state:
    each call is still a whole plugin process, spawn to reap, which hands
    the work to the resident one (NETLOOM_SERVICE=require: a call the
    service does not serve fails instead of doing the work itself)."""
    key, label = "netloom_served", "netloom (main plugin, serve running)"
    service_mode = "require"

    def __init__(self, publish, hostport, path, binary):
        super().__init__(publish, hostport, path)
        self.bin = binary
        self.proc = None

    def setup(self):
        os.makedirs(self.state, exist_ok=True)
        self.proc = start_netloom_serve(self.bin, self.state)
        super().setup()

    def finish(self):
        if self.proc:
            self.notes.append("netloom serve: " + stop_netloom_serve(self.proc))


class Reference(Plugins):
    key, label = "cni", "bridge+host-local(+portmap)"
    subnet, gateway = "10.90.0.0/16", "10.90.0.1"

    def chain(self):
        bridge = {"type": "bridge", "bridge": "cnibr0", "isGateway": True, "ipMasq": True,
                  "ipam": {"type": "host-local",
                           "ranges": [[{"subnet": self.subnet, "gateway": self.gateway}]],
                           "routes": [{"dst": "0.0.0.0/0"}],
                           "dataDir": f"{RUN}/cni-host-local"}}
        portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
        return [bridge] + ([portmap] if self.publish else [])


# ---------------------------------------------------------------- checks

def container_ip(result, subnet):
    for ip in (result or {}).get("ips", []):
        addr = ip.get("address", "").split("/")[0]
        try:
            if ipaddress.ip_address(addr) in ipaddress.ip_network(subnet):
                return addr
        except ValueError:
            pass
    return None


def verify(tool, sb):
    """Observable effects of an ADD: the result's address is on eth0 inside
    the sandbox, a default route goes via the gateway, and (when a port is
    published) a TCP connection from the host to gateway:hostPort reaches a
    listener on port 80 inside the sandbox. Returns a note or ''."""
    problems = []
    ip = container_ip(tool.results.get(sb), tool.subnet)
    if not ip:
        return f"the ADD result names no address in {tool.subnet}: {json.dumps(tool.results.get(sb))[:300]}"
    addrs = sh(["ip", "-n", sb, "-o", "addr", "show", "dev", "eth0"], check=False)
    if f"inet {ip}/" not in addrs:
        problems.append(f"{ip} is not on eth0 inside {sb}")
    routes = sh(["ip", "-n", sb, "route", "show", "default"], check=False)
    if f"via {tool.gateway}" not in routes:
        problems.append(f"no default route via {tool.gateway} inside {sb} ({routes.strip()!r})")
    if tool.publish:
        server = subprocess.Popen(
            ["ip", "netns", "exec", sb, sys.executable, "-c",
             "import socket,sys\n"
             "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
             "s.bind(('0.0.0.0', 80)); s.listen(1); print('ready', flush=True)\n"
             "s.settimeout(5); c,_=s.accept(); c.sendall(b'hello from ' + sys.argv[1].encode())\n",
             sb], stdout=subprocess.PIPE, text=True)
        try:
            server.stdout.readline()
            got = b""
            try:
                with socket.create_connection((tool.gateway, tool.hostport), timeout=3) as c:
                    c.settimeout(3)
                    while True:
                        b = c.recv(100)
                        if not b:
                            break
                        got += b
            except OSError as e:
                problems.append(f"published port {tool.gateway}:{tool.hostport} -> {sb}:80: {e}")
            if got and got != f"hello from {sb}".encode():
                problems.append(f"published port answered {got!r}, not {sb}")
        finally:
            server.kill()
            server.wait()
    return "; ".join(problems)


def spawn_floor(n):
    true = which("true") or "/bin/true"
    samples = []
    for i in range(n + 5):
        ns, _, _ = timed([true])
        if i >= 5:
            samples.append(ms(ns))
    return stats(samples)


def version_floor(binary, n):
    """netloom answering CNI VERSION: the plugin's own process start and
    exit, with no state, netlink or firewall work; what any ADD costs at least."""
    stdin = write(f"{SCRATCH}/version.json", {"cniVersion": VERSION})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": "VERSION"}
    samples = []
    for i in range(n + 5):
        ns, code, err = timed([binary], stdin=stdin, env=env)
        if code != 0:
            return {"error": err.strip()[:300]}
        if i >= 5:
            samples.append(ms(ns))
    return stats(samples)


# ---------------------------------------------------------------- a scenario

def scenario(name, cfg, out):
    publish = name in ("publish", "crowded")
    crowd = cfg.get("crowd", 0) if name == "crowded" else 0
    n, warm = cfg["n"], cfg["warmup"]
    res = {"scenario": name, "published_ports": 1 if publish else 0, "host": host_facts(),
           "n": n, "warmup": warm, "attached_before": crowd, "tools": {}}
    os.makedirs(SCRATCH, exist_ok=True)
    bindir = f"{RUN}/cni-bin"
    os.makedirs(bindir, exist_ok=True)
    os.symlink(cfg["netloom"], f"{bindir}/netloom")
    tools = [Netloom(publish, 8080, bindir), NetloomServed(publish, 8080, bindir, cfg["netloom"])]
    if cfg.get("cni"):
        tools.append(Reference(publish, 8082, cfg["cni"]))
    else:
        res["tools"]["cni"] = {"label": Reference.label, "status": "not run: " + cfg.get("cni_why", "missing")}

    live = []
    for t in tools:
        try:
            t.setup()
            live.append(t)
        except Exception as e:  # noqa: BLE001 - a tool that fails is reported, the others go on
            t.status = f"failed in setup: {e}"
            print(f"  {t.key}: {t.status}", file=sys.stderr)

    names = {t.key: [f"{t.key}-{i}" for i in range(warm + n)] for t in live}
    netns_batch("add", [s for v in names.values() for s in v])
    # Crowded: containers attached (untimed, publishing nothing) before the
    # timed calls, and left attached.
    if crowd:
        for t in live:
            crowders = [f"{t.key}-crowd-{i}" for i in range(crowd)]
            netns_batch("add", crowders)
            publish_was, first_was = t.publish, t.first
            t.publish = False
            t.first = write(f"{SCRATCH}/{t.key}-crowd.json", t.conf(t.chain()[0]))
            try:
                for sb in crowders:
                    t.add(sb)
            except Exception as e:  # noqa: BLE001
                t.status = f"failed attaching the crowd: {e}"
            finally:
                t.publish, t.first = publish_was, first_was
        print(f"  {crowd} containers attached per tool", file=sys.stderr)
    links_before = sh(["ip", "-o", "link"]).count("\n")
    # After each tool's DEL the bench waits, untimed, until what the tool
    # left to the kernel or to its background is done (bench_common.settle;
    # reported as "settle"), so no tool is timed behind another's leftovers.
    baseline = host_links()
    services = {t.proc.pid for t in live if getattr(t, "proc", None)}
    rng = random.Random(7)
    gc.disable()
    try:
        for i in range(warm + n):
            order = list(live)
            rng.shuffle(order)         # interleaved, in a fresh order each round
            for t in order:
                if t.status != "ok":
                    continue
                sb = names[t.key][i]
                try:
                    a = t.add(sb)
                    if i == 0:
                        note = verify(t, sb)
                        t.verified = note or True
                        if note:
                            t.notes.append("verify: " + note)
                            print(f"  {t.key}: verify: {note}", file=sys.stderr)
                    prepared = t.prepare_del(sb)
                    d = t.delete(prepared, sb)
                    w = settle(baseline, services)
                    if i >= warm:
                        t.samples["add"].append(ms(a))
                        t.samples["del"].append(ms(d))
                        t.samples["settle"].append(ms(w))
                except Stopped:
                    raise
                except Exception as e:  # noqa: BLE001
                    t.status = f"failed at round {i}: {e}"
                    print(f"  {t.key}: {t.status}", file=sys.stderr)
            if i and i % 50 == 0:
                print(f"  round {i}/{warm + n}", file=sys.stderr)
    except Stopped as e:
        for t in live:
            if t.status == "ok":
                t.status = f"stopped early: {e}"
    finally:
        gc.enable()
        for t in tools:
            if hasattr(t, "finish"):
                try:
                    t.finish()
                except Exception as e:  # noqa: BLE001
                    t.notes.append(f"finish: {e}")

    links_after = sh(["ip", "-o", "link"]).count("\n")
    res["links_left_after_all_del"] = links_after - links_before
    res["host"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["spawn_floor"] = spawn_floor(min(n, 100))
    res["netloom_version_call"] = version_floor(cfg["netloom"], min(n, 100))
    for t in tools:
        both = [a + d for a, d in zip(t.samples["add"], t.samples["del"])]
        res["tools"][t.key] = {"label": t.label, "status": t.status,
                               "plugins": [p["type"] for p in t.chain()],
                               "add": stats(t.samples["add"]), "del": stats(t.samples["del"]),
                               "add_del": stats(both), "settle": stats(t.samples["settle"]),
                               "verified": t.verified, "notes": t.notes}
    netns_batch("delete", [s for v in names.values() for s in v])
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


def worker(name, out):
    signal.signal(signal.SIGTERM, on_term)
    become_subreaper()
    cfg = json.loads(os.environ["BENCH_CFG"])
    scenario(name, cfg, out)


# ---------------------------------------------------------------- report

def fmt(x):
    return "-" if x is None else f"{x:.3f}"


def ratio(a, b):
    if not a or not b:
        return None
    return round(a / b, 1)


def report(outdir, jsonfile=None):
    with open(f"{outdir}/meta.json") as f:
        meta = json.load(f)
    scenarios = {}
    for name in ("plain", "publish", "crowded"):
        p = f"{outdir}/{name}.json"
        if os.path.exists(p):
            with open(p) as f:
                scenarios[name] = json.load(f)
    print()
    print(f"CNI ADD/DEL, sequential, N={meta['n']} per tool and scenario (medians; p90 in brackets)")
    print("netloom (main plugin) runs every call with NETLOOM_SERVICE=off: the plugin process does all the work; "
          "netloom (main plugin, serve running) runs the same calls while `netloom serve` runs on the same state, "
          "with NETLOOM_SERVICE=require: each is still a whole plugin process, spawn to reap")
    print(f"machine: {meta['cpus']} CPUs, kernel {meta['kernel']}; netloom {meta['netloom']['version']}; "
          f"containernetworking-plugins {meta['cni'].get('package') or '-'}")
    ratios = {}
    for name, s in scenarios.items():
        print()
        crowd = f", {s['attached_before']} containers already attached" if s.get("attached_before") else ""
        print(f"== {name}: {'one published port (runtimeConfig.portMappings)' if s['published_ports'] else 'no published port'}"
              f"{crowd}")
        print(f"   {'tool':34} {'ADD ms':>16} {'DEL ms':>16} {'ADD+DEL ms':>12} {'settle ms':>10}  status")
        for key, t in s["tools"].items():
            def cell(k):
                st = t.get(k)
                return "-" if not st else f"{st['median_ms']:.3f} [{st['p90_ms']:.2f}]"
            print(f"   {t['label']:34} {cell('add'):>16} {cell('del'):>16} "
                  f"{fmt((t.get('add_del') or {}).get('median_ms')):>12} "
                  f"{fmt((t.get('settle') or {}).get('median_ms')):>10}  {t['status']}"
                  + ("" if t.get("verified") in (True, None) else f" (verify: {t['verified']})"))
        floor = s.get("spawn_floor")
        if floor:
            print(f"   {'process spawn floor (/bin/true)':34} {floor['median_ms']:>16.3f}")
        vfloor = s.get("netloom_version_call") or {}
        if vfloor.get("median_ms") is not None:
            print(f"   {'netloom CNI VERSION (start+exit)':34} {vfloor['median_ms']:>16.3f}")
        ref = s["tools"].get("cni", {})
        for key, who in (("netloom", "netloom"), ("netloom_served", "netloom with serve running")):
            nl = s["tools"].get(key, {})
            r = {}
            for op in ("add", "del", "add_del"):
                a = (ref.get(op) or {}).get("median_ms")
                b = (nl.get(op) or {}).get("median_ms")
                r[op] = ratio(a, b)
            ratios.setdefault(name, {})[key] = r
            print(f"   reference chain / {who}: ADD {r['add'] or '-'}x, DEL {r['del'] or '-'}x, "
                  f"ADD+DEL {r['add_del'] or '-'}x")
        if s.get("links_left_after_all_del"):
            print(f"   WARNING: {s['links_left_after_all_del']} link(s) left after every DEL")
    print()
    print("settle = the untimed wait after a tool's DEL until what it left behind is done (processes it left "
          "exited, its links gone, the RTNL and nf_tables locks free with nothing queued), before the next tool "
          "is timed; part of no timed number")

    targets = []
    pub = scenarios.get("publish", {}).get("tools", {})
    add = (pub.get("netloom_served", {}).get("add") or {}).get("median_ms")
    r = ratios.get("publish", {}).get("netloom_served", {}).get("add")
    targets.append({"target": "netloom ADD median (published port; serve running) <= 2 ms", "value_ms": add,
                    "met": add is not None and add <= 2.0})
    targets.append({"target": "netloom ADD (serve running) >= 20x faster than bridge+host-local+portmap",
                    "ratio": r, "met": r is not None and r >= 20})
    print()
    for t in targets:
        v = t.get("value_ms", t.get("ratio"))
        unit = " ms" if "value_ms" in t else "x"
        print(f"target: {t['target']}: {'-' if v is None else v}{unit if v is not None else ''} "
              f"-> {'MET' if t['met'] else 'NOT MET'}")
    doc = {"benchmark": "cni-add-del", "meta": meta, "scenarios": scenarios, "ratios": ratios,
           "targets": targets}
    text = json.dumps(doc, indent=1)
    print()
    print(text)
    if jsonfile:
        with open(jsonfile, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
