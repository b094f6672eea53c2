//! [`probe`]: reachability as measured, by TCP connects between nodes.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netloom_kernel::Netns;
use netloom_model::ModelError;

use super::matrix::Reachability;
use crate::lab::LabView;
use crate::EngineError;

/// At most this many connects are in flight at once.
const MAX_CONNECTS: usize = 256;
/// One node's probe results, indexed by target node.
type Row = Result<Vec<bool>, EngineError>;

/// Pause before retrying a connect that failed at once.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// At most this many nodes probe at once.
const MAX_NODES: usize = 64;

/// Measures reachability: from every node's network namespace, a TCP
/// connect to every other node's IPv4 address on `port`, all in parallel.
///
/// `node_netns[i]` is the network namespace file of `view.nodes[i]`. A
/// connect counts as reaching when it succeeds or is refused (the refusal
/// proves the path works both ways) within `timeout`; quick failures are
/// retried until then. Use a timeout above the kernel's ARP retransmission
/// time (1 s), so a neighbour that is being resolved again after a heal
/// counts as reachable. Sockets are made on threads that entered the
/// node's namespace and do nothing else. `loss` of the result is empty:
/// loss shows as the pairs that failed.
pub fn probe(
    view: &LabView,
    node_netns: &[PathBuf],
    port: u16,
    timeout: Duration,
) -> Result<Reachability, EngineError> {
    let n = view.nodes.len();
    if node_netns.len() != n {
        return Err(ModelError::Invalid {
            object: format!("probe of lab {:?}", view.name),
            why: format!("got {} namespace paths for {n} nodes", node_netns.len()),
            fix: "pass one namespace path per node, in the lab's node order".into(),
        }
        .into());
    }
    let mut reach = Reachability::full_mesh(view.nodes.iter().map(|n| n.name.clone()).collect());
    if n < 2 {
        return Ok(reach);
    }
    let targets: Vec<SocketAddr> = view
        .nodes
        .iter()
        .map(|node| SocketAddr::from((node.ipv4, port)))
        .collect();
    let probers = n.min(MAX_NODES);
    let per_node = (MAX_CONNECTS / probers).clamp(1, n - 1);
    let next_node = AtomicUsize::new(0);
    let rows: Mutex<Vec<Option<Row>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..probers {
            s.spawn(|| loop {
                let i = next_node.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let row = probe_from(view, i, &node_netns[i], &targets, per_node, timeout);
                rows.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(row);
            });
        }
    });
    let rows = rows.into_inner().unwrap_or_else(|p| p.into_inner());
    for (i, row) in rows.into_iter().enumerate() {
        reach.allowed[i] = row.expect("every node was probed")?;
    }
    Ok(reach)
}

/// Connects from node `from` to every other target with `workers`
/// threads, all inside the node's namespace (threads spawned by a thread
/// inside a namespace start in it).
fn probe_from(
    view: &LabView,
    from: usize,
    netns: &PathBuf,
    targets: &[SocketAddr],
    workers: usize,
    timeout: Duration,
) -> Result<Vec<bool>, EngineError> {
    let node = &view.nodes[from].name;
    let action = format!(
        "probe lab {:?} from node {node:?}: enter its namespace {}",
        view.name,
        netns.display()
    );
    let ns = Netns::open_path(netns).map_err(|e| EngineError::kernel(&action, e))?;
    ns.run(|| {
        let row: Vec<Mutex<bool>> = (0..targets.len()).map(|j| Mutex::new(j == from)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= targets.len() {
                        break;
                    }
                    if j != from {
                        *row[j].lock().unwrap_or_else(|p| p.into_inner()) =
                            reaches(&targets[j], timeout);
                    }
                });
            }
        });
        row.into_iter()
            .map(|cell| cell.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect()
    })
    .map_err(|e| EngineError::kernel(&action, e))
}

/// Whether a TCP connect to `target` succeeds (or is refused) within
/// `timeout`. A quick failure (e.g. "no route to host" while a neighbour
/// entry is still marked failed from before a heal) is retried until the
/// time is up: the question is whether the path works now.
fn reaches(target: &SocketAddr, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return false;
        }
        match TcpStream::connect_timeout(target, left) {
            Ok(_) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            Err(_) => std::thread::sleep(RETRY_PAUSE.min(left)),
        }
    }
}
