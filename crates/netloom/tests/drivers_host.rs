//! The host driver end to end, through the CLI, in throwaway hosts:
//! connecting makes nothing in the kernel, neither in the sandbox nor on
//! the host; options that need an interface are refused.

mod support;
use serde_json::Value;
use support::World;

/// Every address in a namespace (the sandbox's, or the host's with None),
/// as ADDR/LEN.
fn all_addrs(w: &World, sandbox: Option<&str>) -> Vec<String> {
    w.ip_json(sandbox, "addr show")
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn routes(w: &World, sandbox: Option<&str>) -> Value {
    w.ip_json(sandbox, "route show")
}

#[test]
fn host_networks_make_nothing_in_the_kernel() {
    let Some(w) = World::new() else { return };
    let links_before = w.host_links();
    let addrs_before = all_addrs(&w, None);
    let net = w.json(&[
        "network",
        "create",
        "hostnet",
        "--driver",
        "host",
        "--subnet",
        "10.73.0.0/24",
    ]);
    assert_eq!(net["driver"], "host");
    assert_eq!(w.host_links(), links_before, "no link for the network");

    // A sandbox with a namespace of its own gets nothing.
    w.ok(&["sandbox", "create", "a"]);
    let sandbox_routes = routes(&w, Some("a"));
    let ep = w.json(&["connect", "hostnet", "a"]);
    assert_eq!(ep["state"], "ready");
    assert!(
        w.ip_json(Some("a"), "link show")
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] == "lo"),
        "no interface in the sandbox"
    );
    assert_eq!(all_addrs(&w, Some("a")), ["127.0.0.1/8", "::1/128"]);
    assert_eq!(routes(&w, Some("a")), sandbox_routes, "no route either");
    let info = w.json(&["endpoint", "inspect", ep["id"].as_str().unwrap()]);
    assert_eq!(info["driver_info"]["interface"], "none (host network)");
    assert_eq!(info["driver_info"]["in_host_namespace"], "false");

    // The host's own namespace (as for a container run there): it keeps
    // its interfaces, addresses and routes as they are.
    let host_ns = format!("pid:{}", w.host.pid());
    let host_routes = routes(&w, None);
    let ep = w.json(&["connect", "hostnet", &host_ns]);
    let info = w.json(&["endpoint", "inspect", ep["id"].as_str().unwrap()]);
    assert_eq!(info["driver_info"]["in_host_namespace"], "true");
    assert_eq!(w.host_links(), links_before);
    assert_eq!(all_addrs(&w, None), addrs_before);
    assert_eq!(routes(&w, None), host_routes);
    assert_eq!(
        w.json(&["endpoint", "ls", "--network", "hostnet"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Disconnecting is only forgetting, and may be repeated safely
    // through network rm --force.
    w.ok(&["disconnect", "hostnet", &host_ns]);
    w.ok(&["network", "rm", "hostnet", "--force"]);
    assert_eq!(w.json(&["endpoint", "ls"]), serde_json::json!([]));
    assert_eq!(w.host_links(), links_before);
    w.assert_clean();
}

#[test]
fn host_networks_refuse_what_needs_an_interface() {
    let Some(w) = World::new() else { return };
    let base = [
        "network",
        "create",
        "h",
        "--driver",
        "host",
        "--subnet",
        "10.73.0.0/24",
    ];
    let with = |extra: &[&str]| -> String {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        w.fails(&args)
    };
    let err = with(&["--mtu", "1400"]);
    assert!(
        err.contains("network \"h\": the host driver makes no interface")
            && err.contains("drop --mtu"),
        "{err}"
    );
    let err = with(&["-o", "parent=eth0"]);
    assert!(
        err.contains("no option \"parent\"") && err.contains("takes no -o options"),
        "{err}"
    );
    let err = with(&["--internal"]);
    assert!(err.contains("cannot be internal"), "{err}");
    let err = with(&["--mode", "pooled"]);
    assert!(err.contains("no routed (pooled) mode"), "{err}");
    assert_eq!(w.json(&["network", "ls"]), serde_json::json!([]));
    // The host's ports are the container's: nothing to publish.
    w.ok(&base);
    w.ok(&["sandbox", "create", "a"]);
    let err = w.fails(&["connect", "h", "a", "--publish", "8080:80"]);
    assert!(
        err.contains("network \"h\": sandbox a: a host network uses the host's own ports"),
        "{err}"
    );
    assert_eq!(w.json(&["endpoint", "ls"]), serde_json::json!([]));
    w.ok(&["network", "rm", "h"]);
    w.assert_clean();
}
