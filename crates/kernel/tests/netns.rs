//! Named namespaces, running code inside namespaces, and sysctls.

mod common;

use std::path::Path;

use netloom_kernel::{LinkSpec, Netlink, Netns};
use netloom_testhost::host_or_skip;

use common::{host_netlink, named_netns};

fn ip_netns_list(host: &netloom_testhost::Host) -> String {
    let out = host.command("ip").args(["netns", "list"]).output().unwrap();
    assert!(out.status.success(), "ip netns list: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn named_netns_is_seen_by_ip_netns_inside_the_host_only() {
    let host = host_or_skip!();
    let name = "nl-named-1";
    let ns = named_netns(&host, name);

    assert!(ip_netns_list(&host)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name)));
    let exec = host
        .command("ip")
        .args(["netns", "exec", name, "ip", "-o", "link", "show"])
        .output()
        .unwrap();
    assert!(exec.status.success(), "ip netns exec: {exec:?}");
    // A fresh namespace: only loopback.
    assert_eq!(String::from_utf8_lossy(&exec.stdout).lines().count(), 1);
    assert!(
        !Path::new("/run/netns").join(name).exists(),
        "leaked onto the machine"
    );
    assert_eq!(
        host.enter(Netns::list_named).unwrap(),
        vec![name.to_string()]
    );

    // The handle and a fresh open refer to the same namespace, which is
    // neither the host's nor the test process's.
    let reopened = host.enter(|| Netns::open_named(name)).unwrap();
    assert_eq!(ns.inode().unwrap(), reopened.inode().unwrap());
    let host_ns = Netns::open_path(host.netns_path()).unwrap();
    assert_ne!(ns.inode().unwrap(), host_ns.inode().unwrap());
    assert_ne!(
        ns.inode().unwrap(),
        Netns::current().unwrap().inode().unwrap()
    );

    // A link made through the named namespace shows up under `ip netns exec`.
    let mut nl = Netlink::open_in(&ns).unwrap();
    nl.create_bridge(&LinkSpec::new("inner0")).unwrap();
    let exec = host
        .command("ip")
        .args(["netns", "exec", name, "ip", "link", "show", "inner0"])
        .output()
        .unwrap();
    assert!(
        exec.status.success(),
        "inner0 not visible via ip netns exec: {exec:?}"
    );

    // Taken names are refused with a clear error.
    let err = host.enter(|| Netns::create_named(name)).unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert!(
        err.to_string()
            .starts_with("create netns \"nl-named-1\": File exists (EEXIST)"),
        "{err}"
    );

    host.enter(|| Netns::remove_named(name)).unwrap();
    assert!(!ip_netns_list(&host).contains(name));
    let err = host.enter(|| Netns::remove_named(name)).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = host.enter(|| Netns::open_named(name)).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // The handle still works: the namespace lives while it is held.
    assert!(nl.get_link("inner0").unwrap().is_some());
}

#[test]
fn namespaces_made_by_ip_netns_can_be_opened() {
    let host = host_or_skip!();
    assert!(host
        .command("ip")
        .args(["netns", "add", "by-ip"])
        .status()
        .unwrap()
        .success());
    let ns = host.enter(|| Netns::open_named("by-ip")).unwrap();
    let mut nl = Netlink::open_in(&ns).unwrap();
    let links = nl.list_links().unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].name, "lo");
    host.enter(|| Netns::remove_named("by-ip")).unwrap();
    assert!(!ip_netns_list(&host).contains("by-ip"));
}

#[test]
fn bad_names_and_paths_are_refused() {
    let host = host_or_skip!();
    for bad in ["", "..", "a/b"] {
        let err = host.enter(|| Netns::create_named(bad)).unwrap_err();
        assert!(
            matches!(err.kind(), netloom_kernel::ErrorKind::InvalidInput(_)),
            "{err}"
        );
    }
    // A file that is not a namespace is refused before anyone enters it.
    let err = Netns::open_path("/proc/self/status").unwrap_err();
    assert!(
        matches!(err.kind(), netloom_kernel::ErrorKind::InvalidInput(_)),
        "{err}"
    );
    let err = Netns::open_path(host.mntns_path()).unwrap_err();
    assert!(err.to_string().contains("not a network namespace"), "{err}");
}

#[test]
fn run_executes_inside_and_leaves_the_caller_alone() {
    let host = host_or_skip!();
    let (host_ns, _nl) = host_netlink(&host);
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let inside = host_ns
        .run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
        .unwrap();
    assert_eq!(
        inside,
        std::fs::read_link(host.netns_path()).unwrap(),
        "closure did not run in the namespace"
    );
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before
    );

    let anon = Netns::create_anonymous().unwrap();
    let mut nl = Netlink::open_in(&anon).unwrap();
    assert_eq!(nl.list_links().unwrap().len(), 1);
    let pid = Netns::open_pid(host.pid()).unwrap();
    assert_eq!(pid.inode().unwrap(), host_ns.inode().unwrap());
}

#[test]
fn sysctls_are_per_namespace() {
    let host = host_or_skip!();
    let a = named_netns(&host, "sa");
    let b = named_netns(&host, "sb");
    let machine = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();

    assert_eq!(a.read_sysctl("net.ipv4.ip_forward").unwrap(), "0");
    a.write_sysctls(&[
        ("net.ipv4.ip_forward", "1"),
        ("net/ipv6/conf/all/forwarding", "1"),
    ])
    .unwrap();
    assert_eq!(a.read_sysctl("net/ipv4/ip_forward").unwrap(), "1");
    assert_eq!(a.read_sysctl("net.ipv6.conf.all.forwarding").unwrap(), "1");
    assert_eq!(b.read_sysctl("net.ipv4.ip_forward").unwrap(), "0");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        machine
    );

    // Per-interface keys of a link that only exists in `a`.
    let mut nl = Netlink::open_in(&a).unwrap();
    nl.create_bridge(&LinkSpec::new("br.s")).unwrap();
    a.write_sysctl("net/ipv6/conf/br.s/accept_dad", "0")
        .unwrap();
    assert_eq!(a.read_sysctl("net/ipv6/conf/br.s/accept_dad").unwrap(), "0");
    let err = b.read_sysctl("net/ipv6/conf/br.s/accept_dad").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("netns \"sb\""), "{err}");

    let err = a.write_sysctl("kernel.hostname", "x").unwrap_err();
    assert!(
        matches!(err.kind(), netloom_kernel::ErrorKind::InvalidInput(_)),
        "{err}"
    );
}

#[test]
fn a_socket_opened_with_sysctls_writes_them_in_its_namespace_only() {
    let host = host_or_skip!();
    let a = named_netns(&host, "wa");
    let b = named_netns(&host, "wb");
    let key = "net.ipv6.conf.default.accept_ra";
    let before = b.read_sysctl(key).unwrap();
    assert_ne!(
        before, "0",
        "a fresh namespace accepts router advertisements"
    );

    let home = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let mut nl = Netlink::open_in_with_sysctls(&a, &[(key, "0")]).unwrap();
    // The calling thread went in for the writes and the socket, and is back.
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        home
    );
    assert_eq!(a.read_sysctl(key).unwrap(), "0");
    assert_eq!(b.read_sysctl(key).unwrap(), before);
    // The socket is in `a`: a link made through it shows up there only.
    nl.create_bridge(&LinkSpec::new("brw")).unwrap();
    assert!(Netlink::open_in(&a).unwrap().link_index("brw").is_ok());
    assert!(Netlink::open_in(&b).unwrap().link_index("brw").is_err());

    // A key outside net/ is refused before anything is written or opened.
    let err =
        Netlink::open_in_with_sysctls(&b, &[(key, "0"), ("kernel.hostname", "x")]).unwrap_err();
    assert!(
        matches!(err.kind(), netloom_kernel::ErrorKind::InvalidInput(_)),
        "{err}"
    );
    assert_eq!(b.read_sysctl(key).unwrap(), before);
    // A key that does not exist there is an error naming it and the namespace.
    let err =
        Netlink::open_in_with_sysctls(&b, &[("net/ipv6/conf/nosuch/accept_ra", "0")]).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().contains("nosuch") && err.to_string().contains("netns \"wb\""),
        "{err}"
    );
    // Also after a failed write.
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        home
    );
}
