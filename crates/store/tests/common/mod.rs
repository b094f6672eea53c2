//! A temporary directory removed on drop (on tmpfs when there is one, or
//! on a disk when asked), and the network requests the tests store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            TempDir::under(shm, tag)
        } else {
            TempDir::under(&std::env::temp_dir(), tag)
        }
    }

    /// One under the build's scratch directory, which is on a disk unless
    /// the whole build is in memory.
    #[allow(dead_code)] // not every test file needs a disk
    pub fn on_disk(tag: &str) -> TempDir {
        TempDir::under(Path::new(env!("CARGO_TARGET_TMPDIR")), tag)
    }

    /// A new directory under `base`, named for the tag, this process and a
    /// count.
    fn under(base: &Path, tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = base.join(format!(
            "netloom-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The size of the state database's write-ahead log here (0 if none).
    #[allow(dead_code)] // not every test file looks at the log
    pub fn wal_len(&self) -> u64 {
        std::fs::metadata(self.0.join("state.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A shared-mode network of the `null` driver (nothing in the kernel) on
/// `subnets`, every other setting at its default.
#[allow(dead_code)] // not every test file makes networks this way
pub fn null_net(name: &str, subnets: &[&str]) -> netloom_model::NetworkRequest {
    netloom_model::NetworkRequest {
        name: name.into(),
        driver: "null".into(),
        subnets: subnets.iter().map(|s| s.to_string()).collect(),
        mode: netloom_model::Mode::Shared,
        ..Default::default()
    }
}
