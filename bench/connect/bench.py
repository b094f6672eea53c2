#!/usr/bin/env python3
"""Connect/disconnect benchmark: netloom beside netavark, the CNI bridge plugin
chain and the kernel floor (iproute2). Not part of the test suite.

Two sub-commands, both driven by bench/connect.sh:

  bench.py worker SCENARIO OUT.json   run one scenario inside the current
                                      throwaway host (connect.sh --host made it)
  bench.py report OUTDIR [JSONFILE]   merge the scenario files, print the table,
                                      the ratios, the targets and the JSON

Every timed operation is whole processes, spawned with posix_spawn and reaped
with waitpid; the clock covers spawn to reap and nothing else.
"""

import gc
import hashlib
import ipaddress
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from bench_common import (  # noqa: E402
    RUN, SCRATCH, CallFailed, Stopped, become_subreaper, host_facts, host_links, ms, netns_batch, on_term, settle, sh,
    start_netloom_serve, stats, stop_netloom_serve, timed, write,
)

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"
CONTROL_EVERY = 2            # scale run: a control connect every this many endpoints


# ---------------------------------------------------------------- processes

def must(argv, stdin=None, stdout=None, env=None):
    ns, code, err = timed(argv, stdin, stdout, env)
    if code != 0:
        raise CallFailed(f"{' '.join(argv)}: exit {code}: {err.strip()}")
    return ns


def verify_sandbox(sb, subnet, gateway):
    """Observable effects of a connect: an address in the subnet, a default
    route via the gateway, and the gateway answers a ping. Returns a note or ''."""
    problems = []
    addrs = json.loads(sh(["ip", "-n", sb, "-j", "addr", "show"]) or "[]")
    mine = [a["local"] for l in addrs for a in l.get("addr_info", [])
            if a.get("family") == "inet" and ipaddress.ip_address(a["local"]) in ipaddress.ip_network(subnet)]
    if not mine:
        problems.append(f"no IPv4 address in {subnet} inside {sb}")
    routes = sh(["ip", "-n", sb, "route", "show", "default"])
    if f"via {gateway}" not in routes:
        problems.append(f"no default route via {gateway} inside {sb} (routes: {routes.strip()!r})")
    r = subprocess.run(["ip", "netns", "exec", sb, "ping", "-c", "1", "-W", "2", gateway],
                       capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"ping {gateway} from {sb} failed")
    return "; ".join(problems)


# ---------------------------------------------------------------- the tools

class Tool:
    key = "?"
    label = "?"
    subnet = gateway = None
    firewall = None          # what firewall work the tool did, as observed

    def __init__(self, publish, hostport):
        self.publish = publish
        self.hostport = hostport
        self.status = "ok"
        self.samples = {"connect": [], "disconnect": [], "settle": []}
        self.notes = []
        self.verified = None

    def setup(self):
        pass

    def prepare(self, sb, k):          # untimed, before connect
        pass

    def connect(self, sb, k):          # returns ns
        raise NotImplementedError

    def disconnect(self, sb, k):       # returns ns
        raise NotImplementedError

    def observe_firewall(self):        # untimed, while one sandbox is connected
        pass

    def finish(self):
        pass


def nft_ruleset():
    return sh(["nft", "list", "ruleset"], check=False)


def nft_tables():
    """{"family name": text} of every nftables table in this host."""
    tables, cur = {}, None
    for line in nft_ruleset().splitlines():
        if line.startswith("table "):
            cur = " ".join(line.split()[1:3])
            tables[cur] = ""
        if cur:
            tables[cur] += line + "\n"
    return tables


def netloom_tables(tables):
    return {k: v for k, v in tables.items() if "netloom" in k or k.split()[-1].startswith("nl")}


def iptables_nat():
    return sh(["iptables-save", "-t", "nat"], check=False)


class Netloom(Tool):
    key, label = "netloom", "netloom (CLI process)"
    subnet, gateway = "10.88.0.0/16", "10.88.0.1"

    def __init__(self, publish, hostport, binary):
        super().__init__(publish, hostport)
        self.bin = binary
        self.sd = f"{RUN}/netloom-state"
        self.base = [binary, "--state-dir", self.sd]

    def setup(self):
        os.makedirs(self.sd, exist_ok=True)
        sh(self.base + ["network", "create", "bnet", "--subnet", self.subnet])
        netns_batch("add", ["anchor-nl"])
        sh(self.base + ["connect", "bnet", "anchor-nl"])

    # Every call does the work in its own process, even when a service runs.
    service_mode = "off"

    def env(self):
        return dict(os.environ, NETLOOM_SERVICE=self.service_mode)

    def connect(self, sb, k):
        argv = self.base + ["connect", "bnet", sb]
        if self.publish:
            argv += ["--publish", f"{self.hostport}:80"]
        return must(argv, env=self.env())

    def disconnect(self, sb, k):
        return must(self.base + ["disconnect", "bnet", sb], env=self.env())

    def observe_firewall(self):
        tables = nft_tables()
        mine = "".join(netloom_tables(tables).values())
        self.firewall = {
            "nft_tables": sorted(tables),
            "netloom_tables": sorted(netloom_tables(tables)),
            "masquerade": "masquerade" in mine,
            "published_port_in_ruleset": self.publish and str(self.hostport) in mine,
        }

    def finish(self):
        out = sh(self.base + ["check"], check=False).strip()
        self.notes.append(f"netloom check: {out[:200]}")


class NetloomServed(Netloom):
    """The same calls while `netloom serve` runs on the same state: each call
    is still a whole `netloom` process, spawn to reap, which hands its
    arguments to the resident one (NETLOOM_SERVICE=require: a call the
    service does not serve fails instead of doing the work itself)."""
    key, label = "netloom_served", "netloom (CLI process, serve running)"
    service_mode = "require"

    def __init__(self, publish, hostport, binary):
        super().__init__(publish, hostport, binary)
        self.proc = None

    def setup(self):
        # The network and the anchor are the other netloom tool's (same state).
        if "serve" not in sh([self.bin, "--help"], check=False):
            raise CallFailed("this netloom has no `serve` command")
        self.proc = start_netloom_serve(self.bin, self.sd)

    def finish(self):
        if self.proc:
            self.notes.append("netloom serve: " + stop_netloom_serve(self.proc))


class Netavark(Tool):
    key, label = "netavark", "netavark 1.x (setup/teardown)"
    subnet, gateway = "10.89.0.0/16", "10.89.0.1"

    def __init__(self, publish, hostport, binary):
        super().__init__(publish, hostport)
        self.bin = binary
        self.cfg = f"{RUN}/netavark"
        self.files = {}

    def options(self, name, ip):
        netname = "bnet"
        opts = {
            "container_id": hashlib.sha256(name.encode()).hexdigest(),
            "container_name": name,
            "networks": {netname: {"static_ips": [ip], "interface_name": "eth0"}},
            "network_info": {netname: {
                "name": netname, "id": hashlib.sha256(b"bnet").hexdigest(),
                "driver": "bridge", "network_interface": "nabr0",
                "subnets": [{"subnet": self.subnet, "gateway": self.gateway}],
                "ipv6_enabled": False, "internal": False, "dns_enabled": False,
                "ipam_options": {"driver": "host-local"}}},
        }
        if self.publish and name != "anchor-na":
            opts["port_mappings"] = [{"host_ip": "", "container_port": 80, "host_port": self.hostport,
                                      "range": 1, "protocol": "tcp"}]
        return opts

    def ip(self, k):
        return str(ipaddress.ip_network(self.subnet).network_address + 10 + k)

    def setup(self):
        os.makedirs(self.cfg, exist_ok=True)
        # An anchor container stays attached for the whole run: netavark
        # creates the bridge and the network's chains with the first container
        # and removes them with the last, which netloom (network create) and
        # the CNI bridge plugin do not do per call.
        netns_batch("add", ["anchor-na"])
        f = write(f"{SCRATCH}/na-anchor.json", self.options("anchor-na", str(
            ipaddress.ip_network(self.subnet).network_address + 2)))
        must([self.bin, "--config", self.cfg, "setup", f"{RUN}/netns/anchor-na"], stdin=f)

    def prepare(self, sb, k):
        self.files[sb] = write(f"{SCRATCH}/na-{sb}.json", self.options(sb, self.ip(k)))

    def connect(self, sb, k):
        return must([self.bin, "--config", self.cfg, "setup", f"{RUN}/netns/{sb}"], stdin=self.files[sb])

    def disconnect(self, sb, k):
        return must([self.bin, "--config", self.cfg, "teardown", f"{RUN}/netns/{sb}"], stdin=self.files[sb])

    def observe_firewall(self):
        nat = iptables_nat()
        self.firewall = {"iptables_nat_chains": sorted({l.split()[0][1:] for l in nat.splitlines()
                                                        if l.startswith(":NETAVARK")}),
                         "masquerade": "NETAVARK" in nat and "MASQUERADE" in nat,
                         "published_port_in_ruleset": f"--dport {self.hostport}" in nat}


class Cni(Tool):
    key, label = "cni", "CNI bridge+host-local(+portmap)"
    subnet, gateway = "10.90.0.0/16", "10.90.0.1"

    def __init__(self, publish, hostport, plugdir):
        super().__init__(publish, hostport)
        self.dir = plugdir
        self.name = "bnet"
        self.version = "1.0.0"
        self.bridge = {"type": "bridge", "bridge": "cnibr0", "isGateway": True, "ipMasq": True,
                       "ipam": {"type": "host-local",
                                "ranges": [[{"subnet": self.subnet, "gateway": self.gateway}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": f"{RUN}/cni-host-local"}}
        self.portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
        self.results = {}
        self.bridge_add = None

    def chain(self):
        return [self.bridge] + ([self.portmap] if self.publish else [])

    def conf(self, plugin, prev=None):
        c = dict(plugin, cniVersion=self.version, name=self.name)
        if plugin.get("capabilities", {}).get("portMappings"):
            c["runtimeConfig"] = {"portMappings": [{"hostPort": self.hostport, "containerPort": 80,
                                                    "protocol": "tcp"}]}
        if prev is not None:
            c["prevResult"] = prev
        return c

    def env(self, cmd, sb):
        e = dict(os.environ)
        e.update(CNI_COMMAND=cmd, CNI_CONTAINERID=hashlib.sha256(sb.encode()).hexdigest(),
                 CNI_NETNS=f"{RUN}/netns/{sb}", CNI_IFNAME="eth0", CNI_PATH=self.dir)
        return e

    def setup(self):
        self.bridge_add = write(f"{SCRATCH}/cni-bridge-add.json", self.conf(self.bridge))
        netns_batch("add", ["anchor-cni"])
        self.connect("anchor-cni", -1)

    def connect(self, sb, k):
        # As a runtime does: each plugin of the chain in order, the previous
        # plugin's result as prevResult. The JSON glue between the processes
        # is inside the timed window, as it is for a runtime.
        out = f"{SCRATCH}/cni-out"
        env = self.env("ADD", sb)
        t = time.perf_counter_ns()
        prev = None
        for i, plugin in enumerate(self.chain()):
            stdin = self.bridge_add if i == 0 else write(f"{SCRATCH}/cni-in", self.conf(plugin, prev))
            _, code, err = timed([f"{self.dir}/{plugin['type']}"], stdin=stdin, stdout=out, env=env)
            with open(out) as f:
                text = f.read()
            if code != 0:
                raise CallFailed(f"CNI {plugin['type']} ADD: exit {code}: {text.strip() or err.strip()}")
            prev = json.loads(text)
        elapsed = time.perf_counter_ns() - t
        self.results[sb] = prev
        return elapsed

    def prepare_del(self, sb):
        env = self.env("DEL", sb)
        files = []
        for i, plugin in enumerate(reversed(self.chain())):
            files.append((plugin["type"], write(f"{SCRATCH}/cni-del-{i}.json",
                                                self.conf(plugin, self.results.get(sb)))))
        return env, files

    def disconnect(self, sb, k):
        env, files = self._del
        t = time.perf_counter_ns()
        for ptype, stdin in files:     # reverse order, each with the cached result
            _, code, err = timed([f"{self.dir}/{ptype}"], stdin=stdin, env=env)
            if code != 0:
                raise CallFailed(f"CNI {ptype} DEL: exit {code}: {err.strip()}")
        elapsed = time.perf_counter_ns() - t
        self.results.pop(sb, None)
        return elapsed

    def before_disconnect(self, sb):
        self._del = self.prepare_del(sb)

    def observe_firewall(self):
        nat = iptables_nat()
        self.firewall = {"masquerade": "CNI-" in nat and "MASQUERADE" in nat,
                         "published_port_in_ruleset": f"--dport {self.hostport}" in nat}


class Floor(Tool):
    key, label = "floor", "kernel floor (ip -batch)"
    subnet, gateway = "10.91.0.0/16", "10.91.0.1"

    def __init__(self, publish, hostport):
        super().__init__(publish, hostport)
        self.files = {}
        self.split = {"host_side": [], "sandbox_side": []}

    def setup(self):
        # The same bridge as netloom's: no multicast snooping.
        sh(["ip", "-batch", "-"], input=f"link add flbr0 type bridge mcast_snooping 0\n"
                                        f"addr add {self.gateway}/16 dev flbr0\n"
                                        "link set flbr0 up\n")

    def prepare(self, sb, k):
        ip = ipaddress.ip_network(self.subnet).network_address + 10 + k
        veth = f"flv{k + 1000}"
        self.files[sb] = (
            write(f"{SCRATCH}/fl-host-{sb}", f"link add {veth} master flbr0 up type veth peer name eth0 netns {sb}\n"),
            write(f"{SCRATCH}/fl-sb-{sb}", f"link set eth0 up\naddr add {ip}/16 dev eth0\n"
                                           f"route add default via {self.gateway}\n"),
            write(f"{SCRATCH}/fl-del-{sb}", f"link del {veth}\n"),
        )

    def connect(self, sb, k):
        # Two `ip -batch` processes: iproute2 cannot address a link in another
        # namespace, so the host side (veth pair with its peer created in the
        # sandbox, enslaved, up) and the sandbox side (up, address, default
        # route) are one batch each.
        host, inside, _ = self.files[sb]
        a = must([IP, "-batch", host])
        b = must([IP, "-n", sb, "-batch", inside])
        self.split["host_side"].append(ms(a))
        self.split["sandbox_side"].append(ms(b))
        return a + b

    def disconnect(self, sb, k):
        return must([IP, "-batch", self.files[sb][2]])


# ---------------------------------------------------------------- scenarios

def which(name, extra=()):
    for d in list(extra) + os.environ.get("PATH", "").split(":"):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def spawn_floor(n):
    true = which("true") or "/bin/true"
    for _ in range(5):
        must([true])
    return stats([ms(must([true])) for _ in range(n)])


def probe_netloom_publish(nl_bin, tool):
    """Does netloom realise --publish yet? One untimed connect with a published
    port, then the ruleset is read back. Returns (ok, evidence)."""
    helptext = sh([nl_bin, "connect", "--help"], check=False)
    if "--publish" not in helptext:
        return False, "`netloom connect --help` does not mention --publish"
    netns_batch("add", ["probe-nl"])
    argv = tool.base + ["connect", "bnet", "probe-nl", "--publish", f"{tool.hostport}:80"]
    _, code, err = timed(argv)
    if code != 0:
        return False, f"netloom connect --publish failed: exit {code}: {err.strip()}"
    tables = nft_tables()
    nl = sorted(netloom_tables(tables))
    rs = "".join(netloom_tables(tables).values())
    sh(tool.base + ["disconnect", "bnet", "probe-nl"], check=False)
    netns_batch("delete", ["probe-nl"])
    if not nl:
        return False, ("`netloom connect --publish` exits 0 but `nft list ruleset` shows no netloom "
                       f"table afterwards (tables: {sorted(tables) or 'none'})")
    if str(tool.hostport) not in rs:
        return False, f"netloom table(s) {nl} exist but the host port {tool.hostport} is not in the ruleset"
    return True, f"nft table(s) {nl} hold host port {tool.hostport} after connect --publish"


def scenario_pair(name, cfg, out):
    publish = name == "publish"
    n, warm = cfg["n"], cfg["warmup"]
    res = {"scenario": name, "published_ports": 1 if publish else 0, "host": host_facts(),
           "n": n, "warmup": warm, "tools": {}}
    tools = []
    nl = Netloom(publish, 8080, cfg["netloom"])
    tools.append(nl)
    tools.append(NetloomServed(publish, 8080, cfg["netloom"]))
    if cfg.get("netavark"):
        tools.append(Netavark(publish, 8081, cfg["netavark"]))
    else:
        res["tools"]["netavark"] = {"label": Netavark.label, "status": "not run: " + cfg.get("netavark_why", "missing")}
    if cfg.get("cni"):
        tools.append(Cni(publish, 8082, cfg["cni"]))
    else:
        res["tools"]["cni"] = {"label": Cni.label, "status": "not run: " + cfg.get("cni_why", "missing")}
    tools.append(Floor(publish, 0))

    live = []
    for t in tools:
        try:
            t.setup()
            live.append(t)
        except Exception as e:  # noqa: BLE001 - a peer that fails is reported, the others go on
            t.status = f"failed in setup: {e}"
            print(f"  {t.key}: {t.status}", file=sys.stderr)
    if publish and nl in live:
        ok, why = probe_netloom_publish(cfg["netloom"], nl)
        res["netloom_publish_probe"] = why
        if not ok:
            nl.status = f"not yet measurable: {why}"
            live.remove(nl)
            print(f"  netloom: {nl.status}", file=sys.stderr)

    # sandboxes: one per iteration per tool, made before any timing
    names = {t.key: [f"{t.key}-{i}" for i in range(warm + n)] for t in live}
    netns_batch("add", [s for v in names.values() for s in v])

    # After each tool's disconnect the bench waits, untimed, until what the
    # tool left to the kernel or to its background (a veth deletion holds
    # the RTNL lock for its grace periods) is done; that wait is reported as
    # "settle", and no tool is timed while another one's deletion runs.
    baseline = host_links()
    services = {t.proc.pid for t in live if getattr(t, "proc", None)}
    rng = random.Random(42)
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
                    t.prepare(sb, i)
                    c = t.connect(sb, i)
                    if i == 0:
                        t.observe_firewall()
                        note = verify_sandbox(sb, t.subnet, t.gateway)
                        t.verified = note or True
                        if note:
                            t.notes.append("verify: " + note)
                    if hasattr(t, "before_disconnect"):
                        t.before_disconnect(sb)
                    d = t.disconnect(sb, i)
                    w = settle(baseline, services)
                    if i >= warm:
                        t.samples["connect"].append(ms(c))
                        t.samples["disconnect"].append(ms(d))
                        t.samples["settle"].append(ms(w))
                except Stopped:
                    raise
                except Exception as e:  # noqa: BLE001
                    t.status = f"failed at iteration {i}: {e}"
                    print(f"  {t.key}: {t.status}", file=sys.stderr)
            if (i + 1) % 50 == 0:
                print(f"  [{name}] {i + 1}/{warm + n} rounds", file=sys.stderr)
    except Stopped as e:
        for t in live:
            if t.status == "ok":
                t.status = f"stopped early: {e}"
    finally:
        gc.enable()
        for t in tools:
            try:
                if t in live:
                    t.finish()
            except Exception as e:  # noqa: BLE001
                t.notes.append(f"finish: {e}")
            entry = res["tools"].setdefault(t.key, {})
            entry.update(label=t.label, status=t.status, subnet=t.subnet, verified=t.verified,
                         firewall=t.firewall, notes=t.notes,
                         connect=stats(t.samples["connect"]), disconnect=stats(t.samples["disconnect"]),
                         settle=stats(t.samples["settle"]))
            if isinstance(t, Floor):
                entry["connect_host_side_batch"] = stats(t.split["host_side"][warm:])
                entry["connect_sandbox_side_batch"] = stats(t.split["sandbox_side"][warm:])
        res["spawn_floor"] = spawn_floor(min(n, 200))
        write(out, json.dumps(res, indent=1))


def growth(res, prefix, samples, m):
    """First-100 / last-100 medians and per-100 medians of a series."""
    res[f"{prefix}_all"] = stats(samples)
    res[f"{prefix}_first_100"] = stats(samples[:100])
    res[f"{prefix}_last_100"] = stats(samples[-100:]) if len(samples) >= m else None
    res[f"{prefix}_ms_by_100"] = [round(statistics.median(samples[j:j + 100]), 3)
                                  for j in range(0, len(samples), 100)]
    if res[f"{prefix}_last_100"]:
        res[f"{prefix}_ratio_last_first"] = round(res[f"{prefix}_last_100"]["median_ms"] /
                                                  res[f"{prefix}_first_100"]["median_ms"], 3)


def scenario_scale(cfg, out, tool):
    """M endpoints on one network, connected one after the other and then
    disconnected in the same order. tool "netloom" (two published ports each
    when netloom realises them) or "floor" (the kernel floor, in a throwaway
    host of its own, to tell growth in the kernel from growth in netloom)."""
    m = cfg["scale"]
    res = {"scenario": "scale" if tool == "netloom" else "scale-floor", "tool": tool,
           "host": host_facts(), "endpoints": m, "status": "ok"}
    conn, disc = [], []
    fl = None
    try:
        if tool == "netloom":
            nl = Netloom(True, 7999, cfg["netloom"])
            os.makedirs(nl.sd, exist_ok=True)
            sh(nl.base + ["network", "create", "bnet", "--subnet", "10.88.0.0/16"])
            ok, why = probe_netloom_publish(cfg["netloom"], nl)
            res["netloom_publish_probe"] = why
            ports = 2 if ok else 0
            res["published_ports_each"] = ports
            if not ok:
                res["status"] = ("not yet measurable as specified (two published ports each): " + why +
                                 "; measured with no published ports instead, for information")
        else:
            fl = Floor(False, 0)
            fl.setup()
            res["published_ports_each"] = 0
        names = [f"s{i}" for i in range(m)]
        netns_batch("add", names)
        # Control (netloom only): every CONTROL_EVERY endpoints, one connect +
        # disconnect on a second netloom network that stays empty, in the same
        # host. It grows with whatever is not per-network (the kernel's 1000
        # veths, the shared store, other load on the machine), so the
        # scale ratio over the control ratio is the network's own growth.
        ctl, ctl_at = [], []
        if not fl:
            sh(nl.base + ["network", "create", "ctl", "--subnet", "10.87.0.0/16"])
            netns_batch("add", ["ctl"])
        gc.disable()
        try:
            for i, sb in enumerate(names):
                if fl:
                    fl.prepare(sb, i)
                    conn.append(ms(fl.connect(sb, i)))
                else:
                    argv = nl.base + ["connect", "bnet", sb]
                    if ports:
                        argv += ["--publish", f"{10000 + i}:80", "--publish", f"{20000 + i}:81"]
                    conn.append(ms(must(argv)))
                    if i % CONTROL_EVERY == 0:
                        ctl.append(ms(must(nl.base + ["connect", "ctl", "ctl"])))
                        ctl_at.append(i)
                        must(nl.base + ["disconnect", "ctl", "ctl"])
                if (i + 1) % 250 == 0:
                    print(f"  [{res['scenario']}] {i + 1}/{m} connected", file=sys.stderr)
            res["veths"] = sh(["ip", "-o", "link", "show", "type", "veth"]).count("\n")
            if not fl:
                res["nft_ruleset_lines"] = nft_ruleset().count("\n")
                res["netloom_check"] = sh(nl.base + ["check"], check=False).strip()[:300]
            for i, sb in enumerate(names):
                disc.append(ms(fl.disconnect(sb, i) if fl else must(nl.base + ["disconnect", "bnet", sb])))
        except Stopped as e:
            res["status"] = f"stopped early: {e}"
        finally:
            gc.enable()
    except Exception as e:  # noqa: BLE001
        res["status"] = f"failed: {e}"
    growth(res, "connect", conn, m)
    growth(res, "disconnect", disc, m)
    if ctl:
        first = [c for c, i in zip(ctl, ctl_at) if i < 100]
        last = [c for c, i in zip(ctl, ctl_at) if i >= m - 100]
        res["control"] = {"what": f"netloom connect on a second, empty network every {CONTROL_EVERY} endpoints",
                          "while_1_100": stats(first), "while_last_100": stats(last)}
        if first and last and len(conn) >= m:
            r = statistics.median(last) / statistics.median(first)
            res["control"]["ratio_last_first"] = round(r, 3)
            res["connect_ratio_over_control"] = round(res["connect_ratio_last_first"] / r, 3)
    if fl:
        growth(res, "connect_host_side_batch", fl.split["host_side"], m)
        growth(res, "connect_sandbox_side_batch", fl.split["sandbox_side"], m)
    write(out, json.dumps(res, indent=1))


def worker(scenario, out):
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    os.makedirs(SCRATCH, exist_ok=True)
    become_subreaper()
    cfg = json.loads(os.environ["BENCH_CFG"])
    print(f"scenario {scenario} in throwaway host {os.readlink('/proc/self/ns/net')}", file=sys.stderr)
    if scenario == "scale":
        scenario_scale(cfg, out, "netloom")
    elif scenario == "scale-floor":
        scenario_scale(cfg, out, "floor")
    else:
        scenario_pair(scenario, cfg, out)
    # the machine is shared: record how busy it was while this scenario ran
    try:
        res = json.load(open(out))
        res["host"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        write(out, json.dumps(res, indent=1))
    except (OSError, ValueError, KeyError) as e:
        print(f"could not add the load average to {out}: {e}", file=sys.stderr)


# ---------------------------------------------------------------- report

def fmt(x, unit=""):
    return "-" if x is None else f"{x:.3f}{unit}" if isinstance(x, float) else str(x)


def ratio(a, b):
    if not a or not b:
        return None
    return round(a["median_ms"] / b["median_ms"], 1)


def report(outdir, jsonfile=None):
    meta = json.load(open(os.path.join(outdir, "meta.json")))
    scen = {}
    for name in ("plain", "publish", "scale", "scale-floor"):
        p = os.path.join(outdir, f"{name}.json")
        if name.startswith("scale") and not meta.get("scale_endpoints"):
            scen[name] = {"scenario": name, "status": "skipped (--scale 0)"}
        elif os.path.exists(p):
            scen[name] = json.load(open(p))
        else:
            why = open(os.path.join(outdir, f"{name}.err")).read().strip()[-600:] \
                if os.path.exists(os.path.join(outdir, f"{name}.err")) else "no result"
            scen[name] = {"scenario": name, "status": f"no result: {why}"}

    print()
    print(f"connect/disconnect, N={meta['n']} per tool and operation (after {meta['warmup']} warm-up rounds), "
          f"{meta['cpus']} CPUs, Linux {meta['kernel']}; times are whole processes, spawn to reap")
    hdr = (f"{'scenario':9} {'tool':34} {'op':10} {'n':>4} {'median ms':>10} {'p90 ms':>9} {'x netloom':>9} "
           f"{'x served':>8}")
    print(hdr)
    print("-" * len(hdr))
    ratios = {}
    for name in ("plain", "publish"):
        s = scen[name]
        tools = s.get("tools", {})
        base = tools.get("netloom", {})
        served = tools.get("netloom_served", {})
        for key in ("netloom", "netloom_served", "netavark", "cni", "floor"):
            t = tools.get(key)
            if not t:
                continue
            for op in ("connect", "disconnect", "settle"):
                st = t.get(op)
                if st and op == "settle":
                    print(f"{name:9} {t['label'][:34]:34} {op:10} {st['n']:>4} {st['median_ms']:>10.3f} "
                          f"{st['p90_ms']:>9.3f}")
                elif st:
                    r = ratio(st, base.get(op)) if key != "netloom" else None
                    rs = ratio(st, served.get(op)) if key not in ("netloom", "netloom_served") else None
                    print(f"{name:9} {t['label'][:34]:34} {op:10} {st['n']:>4} {st['median_ms']:>10.3f} "
                          f"{st['p90_ms']:>9.3f} {'-' if r is None else f'{r:.1f}':>9} "
                          f"{'-' if rs is None else f'{rs:.1f}':>8}")
            if t.get("status", "ok") != "ok":
                print(f"{name:9} {t['label'][:34]:34} {'':10} {'':>4} {t['status'][:140]}")
        if s.get("spawn_floor"):
            st = s["spawn_floor"]
            print(f"{name:9} {'process spawn floor (/bin/true)':34} {'spawn':10} {st['n']:>4} "
                  f"{st['median_ms']:>10.3f} {st['p90_ms']:>9.3f}")
        if "tools" not in s:
            print(f"{name:9} {s.get('status')}")
        ratios[name] = {}
        for peer in ("netavark", "cni"):
            for op in ("connect", "disconnect"):
                r = ratio((tools.get(peer) or {}).get(op), base.get(op))
                ratios[name][f"{peer}/netloom {op}"] = r
                r = ratio((tools.get(peer) or {}).get(op), served.get(op))
                ratios[name][f"{peer}/netloom served {op}"] = r
    fl = scen["plain"].get("tools", {}).get("floor", {})
    if fl.get("connect_host_side_batch"):
        print(f"kernel floor connect = `ip -batch` in the host (veth pair, peer made in the sandbox, master, up; "
              f"median {fl['connect_host_side_batch']['median_ms']:.3f} ms) + `ip -n SANDBOX -batch` (up, address, "
              f"default route; {fl['connect_sandbox_side_batch']['median_ms']:.3f} ms): iproute2 cannot address a "
              f"link in another namespace, so two processes; disconnect = one `ip -batch` (link del)")
    print("netloom disconnect returns once the endpoint is out of service (rules removed, sandbox end of the "
          "veth down and renamed); the veth's deletion, which blocks its sender 20-30 ms, is sent by a detached "
          "process (under `netloom serve`: a thread of the service) and finishes after")
    print("settle = the untimed wait after a tool's disconnect until what it left behind is done (processes "
          "it left exited, its links gone, the RTNL and nf_tables locks free with nothing queued), before the "
          "next tool is timed; part of no timed number")
    print("netloom (CLI process) runs every call with NETLOOM_SERVICE=off: the process does all the work. "
          "netloom (CLI process, serve running) runs the same command line while `netloom serve` runs on the same "
          "state, with NETLOOM_SERVICE=require: each call is still a whole process, spawn to reap, which hands "
          "the work to the resident one")
    print()
    for name in ("plain", "publish"):
        obs = []
        for key, t in scen[name].get("tools", {}).items():
            fw = t.get("firewall")
            if fw is not None:
                obs.append(f"{key}: masquerade {'yes' if fw.get('masquerade') else 'NO'}"
                           + (f", published port {'yes' if fw.get('published_port_in_ruleset') else 'NO'}"
                              if name == "publish" else ""))
        if obs:
            print(f"firewall work observed after a connect ({name}): " + "; ".join(obs))
    sc = scen["scale"]
    print()
    for key in ("scale", "scale-floor"):
        x = scen[key]
        c1, c2 = x.get("connect_first_100"), x.get("connect_last_100")
        if c1:
            who = ("netloom, one network, " + f"{x.get('published_ports_each')} published ports each"
                   if key == "scale" else "kernel floor (ip -batch), one bridge, own throwaway host")
            print(f"{key}: {x.get('endpoints')} endpoints, {who}: connect median 1-100 {c1['median_ms']:.3f} ms, "
                  f"last 100 {fmt((c2 or {}).get('median_ms'))} ms, ratio {fmt(x.get('connect_ratio_last_first'))}; "
                  f"medians per 100: {x.get('connect_ms_by_100')}")
            cl = x.get("control")
            if cl and cl.get("while_1_100"):
                print(f"{key}: control ({cl['what']}): {cl['while_1_100']['median_ms']:.3f} ms while 1-100, "
                      f"{fmt((cl.get('while_last_100') or {}).get('median_ms'))} ms while the last 100, ratio "
                      f"{fmt(cl.get('ratio_last_first'))}; scale ratio / control ratio "
                      f"{fmt(x.get('connect_ratio_over_control'))}")
            d1, d2 = x.get("disconnect_first_100"), x.get("disconnect_last_100")
            if d1:
                print(f"{key}: disconnects in connect order: first 100 (network full) {d1['median_ms']:.3f} ms, "
                      f"last 100 {fmt((d2 or {}).get('median_ms'))} ms")
            if key == "scale-floor" and x.get("connect_sandbox_side_batch_first_100"):
                print(f"{key}: of which `ip -batch` host side {x['connect_host_side_batch_ms_by_100']} and "
                      f"`ip -n SANDBOX -batch` {x['connect_sandbox_side_batch_ms_by_100']} ms per 100")
        if x.get("status") != "ok":
            print(f"{key}: {x.get('status')}")

    print()
    for name in ("plain", "publish"):
        rr = ratios.get(name, {})
        print(f"ratios ({name}): " + ", ".join(f"{k} " + ("-" if v is None else f"{v:.1f}x") for k, v in rr.items()))

    # targets, on the scenario the issue names: bridge, IPv4, masquerade, one published port
    pub = scen["publish"].get("tools", {})
    nlp = pub.get("netloom_served", {})
    nl_ok = nlp.get("status") == "ok" and nlp.get("connect")
    masq = (nlp.get("firewall") or {}).get("masquerade")
    why_not = nlp.get("status", scen["publish"].get("status", "no result"))
    targets = []

    def target(name, value, limit, cmp, measurable=True, note=None):
        met = None
        if measurable and value is not None:
            met = value <= limit if cmp == "<=" else value >= limit
        targets.append({"target": name, "value": value, "limit": f"{cmp} {limit}", "met": met,
                        **({"note": note} if note else {})})

    note = None if nl_ok else why_not
    if nl_ok and not masq:
        note = "netloom made no masquerade rule (nft shows none), so this is less firewall work than specified"
    c = nlp.get("connect") if nl_ok else None
    d = nlp.get("disconnect") if nl_ok else None
    target("netloom connect median (bridge, IPv4, masquerade, 1 published port; serve running) ms",
           c and c["median_ms"], 2, "<=", bool(nl_ok), note)
    target("netavark connect / netloom connect (serve running, same run)",
           ratios["publish"].get("netavark/netloom served connect"), 20, ">=", bool(nl_ok), note)
    target("CNI bridge connect / netloom connect (serve running, same run)",
           ratios["publish"].get("cni/netloom served connect"), 20, ">=", bool(nl_ok), note)
    target("netloom disconnect median (serve running) ms", d and d["median_ms"], 2, "<=", bool(nl_ok), note)
    scale_ok = sc.get("status") == "ok" and sc.get("connect_ratio_last_first") is not None
    scale_note = None if scale_ok else sc.get("status")
    if scale_ok and sc.get("endpoints", 0) < 1000:
        scale_ok, scale_note = False, f"the scale run had {sc.get('endpoints')} endpoints; the target is about 1000"
    target("scale: median connects 901-1000 / 1-100 (2 published ports each)", sc.get("connect_ratio_last_first"),
           1.25, "<=", scale_ok, scale_note)
    # informational: the same targets on the plain scenario
    pl = scen["plain"].get("tools", {}).get("netloom_served", {})
    direct = pub.get("netloom", {})
    info = {"plain_netloom_connect_median_ms": (pl.get("connect") or {}).get("median_ms"),
            "plain_netloom_disconnect_median_ms": (pl.get("disconnect") or {}).get("median_ms"),
            "plain_ratios": ratios.get("plain"),
            "publish_no_service_connect_median_ms": (direct.get("connect") or {}).get("median_ms"),
            "publish_no_service_disconnect_median_ms": (direct.get("disconnect") or {}).get("median_ms")}

    print()
    for t in targets:
        verdict = {True: "MET", False: "NOT MET", None: "NOT MEASURABLE"}[t["met"]]
        print(f"target {verdict:14} {t['target']}: {fmt(t['value'])} (want {t['limit']})"
              + (f" — {t['note'][:220]}" if t.get("note") else ""))
    print(f"(for information, plain scenario with serve running: netloom connect "
          f"{fmt(info['plain_netloom_connect_median_ms'])} ms, disconnect "
          f"{fmt(info['plain_netloom_disconnect_median_ms'])} ms; publish scenario without a service: connect "
          f"{fmt(info['publish_no_service_connect_median_ms'])} ms, disconnect "
          f"{fmt(info['publish_no_service_disconnect_median_ms'])} ms)")

    busy = [(k, v["host"].get("loadavg_at_start"), v["host"].get("loadavg_at_end")) for k, v in scen.items()
             if v.get("host")]
    print("load average (1, 5, 15 min) at start -> end of each scenario: " +
          "; ".join(f"{k} {a} -> {b}" for k, a, b in busy))
    if any(max((a or [0])[0], (b or [0])[0]) > 0.75 * meta["cpus"] for _, a, b in busy):
        print(f"WARNING: other work was running on this {meta['cpus']}-CPU machine during the run; absolute times "
              "and the scale run (early vs late blocks) are noisy. The per-round interleaving keeps the same-run "
              "ratios fair, not the absolute numbers.")

    doc = {"benchmark": "netloom connect/disconnect", "meta": meta, "scenarios": scen, "ratios": ratios,
           "targets": targets, "info": info}
    text = json.dumps(doc, indent=1, sort_keys=False)
    print()
    print(text)
    if jsonfile:
        write(jsonfile, text + "\n")
        print(f"\nJSON written to {jsonfile}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        sys.exit(f"usage: {sys.argv[0]} worker SCENARIO OUT | report DIR [JSON]")
