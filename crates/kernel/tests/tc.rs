//! Token bucket qdiscs over netlink in a throwaway host: installed, read
//! back (by netloom and by iproute2's `tc`), replaced and deleted.

mod common;

use netloom_kernel::{LinkSpec, Tbf};
use netloom_testhost::host_or_skip;

use common::{host_netlink, named_netns};

/// The root qdisc of `dev` as `tc -j qdisc show` reports it, if `tc` runs.
fn tc_show(host: &netloom_testhost::Host, dev: &str) -> Option<serde_json::Value> {
    let out = host
        .command("tc")
        .args(["-j", "qdisc", "show", "dev", dev, "root"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    all.as_array()?.first().cloned()
}

/// The link has no qdisc of netloom's: none, or the kernel's default
/// (handle 0, e.g. `noqueue` on a veth).
fn assert_default_qdisc(nl: &mut netloom_kernel::Netlink, index: u32) {
    if let Some(q) = nl.root_qdisc(index).unwrap() {
        assert_eq!(q.handle, 0, "{q:?}");
        assert_ne!(q.kind, "tbf", "{q:?}");
        assert_eq!(q.tbf, None);
    }
}

#[test]
fn tbf_is_set_read_back_replaced_and_deleted() {
    let host = host_or_skip!();
    let (_host_ns, mut nl) = host_netlink(&host);
    let sb = named_netns(&host, "sb");
    nl.create_veth(
        &LinkSpec::new("vhost").up(),
        &LinkSpec::new("eth0").netns(&sb),
    )
    .unwrap();
    let index = nl.link_index("vhost").unwrap();

    // A fresh veth has only its built-in default qdisc (handle 0), which
    // cannot be deleted.
    assert_default_qdisc(&mut nl, index);
    assert!(!nl.delete_root_qdisc(index).unwrap());

    // 1 Mbit/s = 125000 B/s, 20000 B bucket, 23125 B queue.
    nl.set_tbf(index, 125_000, 20_000, 23_125).unwrap();
    let q = nl.root_qdisc(index).unwrap().expect("a root qdisc");
    assert_eq!(q.kind, "tbf");
    assert_eq!(q.index, index);
    assert_ne!(q.handle, 0, "the kernel gives an installed qdisc a handle");
    let tbf = q.tbf.expect("tbf settings");
    assert_eq!(tbf.rate, 125_000);
    assert_eq!(tbf.limit, 23_125);
    assert!(
        (19_900..=20_100).contains(&tbf.burst),
        "burst read back as {}",
        tbf.burst
    );
    assert_eq!(nl.qdisc_kind(index).unwrap().as_deref(), Some("tbf"));

    // iproute2 reads the same qdisc.
    if let Some(shown) = tc_show(&host, "vhost") {
        assert_eq!(shown["kind"], "tbf", "{shown}");
        assert_eq!(shown["options"]["rate"], 125_000, "{shown}");
        assert_eq!(shown["options"]["burst"], 20_000, "{shown}");
    } else {
        netloom_testhost::skip("cross-check with `tc -j qdisc show`: tc is missing or old");
    }

    // Replacing changes the one root qdisc in place.
    nl.set_tbf(index, 1_250_000, 40_000, 71_250).unwrap();
    let tbf = nl.root_qdisc(index).unwrap().unwrap().tbf.unwrap();
    assert_eq!((tbf.rate, tbf.limit), (1_250_000, 71_250));

    // Rates of 2^32 B/s and more travel in TCA_TBF_RATE64.
    let fast = 5 * (u32::MAX as u64);
    nl.set_tbf(index, fast, 10_000_000, 20_000_000).unwrap();
    let tbf: Tbf = nl.root_qdisc(index).unwrap().unwrap().tbf.unwrap();
    assert_eq!(tbf.rate, fast);

    // Deleting returns the link to its default; a second delete is a no-op.
    assert!(nl.delete_root_qdisc(index).unwrap());
    assert_default_qdisc(&mut nl, index);
    assert!(!nl.delete_root_qdisc(index).unwrap());
}

#[test]
fn tbf_on_the_sandbox_side_and_on_missing_links() {
    let host = host_or_skip!();
    let (_host_ns, mut nl) = host_netlink(&host);
    let sb = named_netns(&host, "sb");
    nl.create_veth(&LinkSpec::new("vh").up(), &LinkSpec::new("eth0").netns(&sb))
        .unwrap();
    let mut inside = netloom_kernel::Netlink::open_in(&sb).unwrap();
    let eth0 = inside.link_index("eth0").unwrap();
    inside.set_tbf(eth0, 1_000_000, 15_000, 40_000).unwrap();
    assert_eq!(inside.qdisc_kind(eth0).unwrap().as_deref(), Some("tbf"));
    // The host side is untouched.
    let vh = nl.link_index("vh").unwrap();
    assert_default_qdisc(&mut nl, vh);

    // A link that does not exist: an error naming the link, not a panic.
    let err = nl.set_tbf(9999, 1_000_000, 15_000, 40_000).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("#9999"), "{err}");
    let err = nl.delete_root_qdisc(9999).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(nl.root_qdisc(9999).unwrap(), None);
    // Invalid settings are refused before the kernel sees them.
    let err = nl.set_tbf(vh, 1_000_000, 15_000, 0).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
}
