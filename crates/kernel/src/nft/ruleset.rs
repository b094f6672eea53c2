//! Rule skeletons: readable nft text applied atomically with `nft -f -`.
//!
//! This is the one place netloom spawns a process for nftables, once per
//! network; per-endpoint facts go through [`super::NftSocket`].

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::{setns, CloneFlags};

use super::error::NftError;
use super::TABLE_PREFIX;

/// Applies an nft ruleset (a rule skeleton) atomically: `nft -f -` with
/// `text` on stdin, inside the network namespace at `netns` (the caller's
/// own when `None`). nft applies the whole text as one transaction, so a
/// rejected ruleset changes nothing.
///
/// The text may only name netloom tables (names starting with `netloom`)
/// and may not say `flush ruleset`; anything else is refused before nft
/// runs. Errors include nft's own message.
pub fn apply_ruleset(netns: Option<&Path>, text: &str) -> Result<(), NftError> {
    RulesetJob::start(netns, text)?.finish()
}

/// An `nft -f -` run under way (see [`apply_ruleset`]): started with
/// [`RulesetJob::start`], so the caller can do other work while nft
/// parses and commits, and [`RulesetJob::finish`]ed for its outcome.
/// Dropping an unfinished job waits for nft and ignores what it said.
#[must_use = "a ruleset job's outcome is known only once it is finished"]
pub struct RulesetJob {
    child: Option<std::process::Child>,
    writer: Option<std::thread::JoinHandle<io::Result<()>>>,
    netns: Option<PathBuf>,
}

impl RulesetJob {
    /// Checks `text` as [`apply_ruleset`] does and starts nft on it.
    pub fn start(netns: Option<&Path>, text: &str) -> Result<RulesetJob, NftError> {
        check_scope(text)?;
        let nft = find_nft().ok_or(NftError::NftNotInstalled)?;
        let ns = netns
            .map(|path| {
                File::open(path).map_err(|source| NftError::Namespace {
                    path: path.to_path_buf(),
                    source,
                })
            })
            .transpose()?;
        let mut cmd = Command::new(&nft);
        cmd.args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(ns) = &ns {
            let fd = ns.as_raw_fd();
            // SAFETY: the child only makes the setns system call between fork
            // and exec; `ns` outlives the spawn, so `fd` is open in the child.
            unsafe {
                cmd.pre_exec(move || {
                    setns(BorrowedFd::borrow_raw(fd), CloneFlags::CLONE_NEWNET)
                        .map_err(io::Error::from)
                });
            }
        }
        let mut child = cmd.spawn().map_err(|e| match (e.kind(), netns) {
            (io::ErrorKind::NotFound, _) => NftError::NftNotInstalled,
            (_, Some(path)) if e.raw_os_error().is_some() => NftError::Namespace {
                path: path.to_path_buf(),
                source: e,
            },
            _ => NftError::io(format!("nft: run {}", nft.display()), e),
        })?;
        // Written from another thread so a chatty nft cannot block on a
        // full stderr pipe while this one blocks on its stdin.
        let writer = child.stdin.take().map(|mut stdin| {
            let text = text.to_owned();
            std::thread::spawn(move || stdin.write_all(text.as_bytes()))
        });
        Ok(RulesetJob {
            child: Some(child),
            writer,
            netns: netns.map(Path::to_path_buf),
        })
    }

    /// Waits for nft; an error carries nft's own message.
    pub fn finish(mut self) -> Result<(), NftError> {
        let child = self.child.take().expect("a job is finished once");
        let output = child.wait_with_output();
        let written = self.writer.take().map_or(Ok(()), |w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")))
        });
        let output = output.map_err(|e| NftError::io("nft -f -: wait for nft", e))?;
        if !output.status.success() {
            return Err(NftError::RulesetRejected {
                netns: self.netns.take(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        written.map_err(|e| NftError::io("nft -f -: write the ruleset to nft", e))
    }
}

impl Drop for RulesetJob {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = child.wait_with_output();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The nft binary: from PATH, else the usual sbin directories (which a
/// non-login PATH may lack).
fn find_nft() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|p| p.is_file())
}

const FAMILIES: [&str; 6] = ["ip", "ip6", "inet", "arp", "bridge", "netdev"];
const OBJECTS: [&str; 12] = [
    "table",
    "chain",
    "set",
    "map",
    "element",
    "rule",
    "counter",
    "quota",
    "limit",
    "flowtable",
    "ct",
    "secmark",
];
const COMMANDS: [&str; 10] = [
    "add", "create", "insert", "replace", "delete", "destroy", "flush", "list", "reset", "rename",
];

/// Refuses text that names a table that is not netloom's or flushes the
/// whole ruleset. Checks table declarations (`table FAMILY NAME {`) and
/// top-level commands (`add element FAMILY TABLE SET ...`).
fn check_scope(text: &str) -> Result<(), NftError> {
    let refuse = |reason: String| NftError::Refused {
        object: "nft ruleset".into(),
        reason,
    };
    for (no, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        for stmt in code.split(';') {
            let words: Vec<&str> = stmt
                .split(|c: char| c.is_whitespace() || c == '{' || c == '}')
                .filter(|w| !w.is_empty())
                .collect();
            let mut i = 0;
            if words.first().is_some_and(|w| COMMANDS.contains(w)) {
                i = 1;
                if words.get(1) == Some(&"ruleset") {
                    return Err(refuse(format!(
                        "line {}: `{} ruleset` would touch every table; netloom only touches its own",
                        no + 1,
                        words[0]
                    )));
                }
                if !words.get(1).is_some_and(|w| OBJECTS.contains(w)) {
                    continue;
                }
            } else if words.first() != Some(&"table") {
                continue;
            }
            // words[i] is the object keyword; then [family] table-name.
            let mut at = i + 1;
            if words.get(at).is_some_and(|w| FAMILIES.contains(w)) {
                at += 1;
            }
            if let Some(name) = words.get(at) {
                let name = name.trim_matches('"');
                if !name.starts_with(TABLE_PREFIX) {
                    return Err(refuse(format!(
                        "line {}: table {name:?} is not netloom's (names must start with {TABLE_PREFIX:?})",
                        no + 1
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_scope;

    #[test]
    fn netloom_tables_pass() {
        let text = "table inet netloom-web {\n  set blocked4 { type ipv4_addr; }\n  chain input {\n    type filter hook input priority 0; policy accept;\n    ip saddr @blocked4 drop # cut\n  }\n}\nadd element inet netloom-web blocked4 { 10.0.0.1 }\ndelete table ip netloom-old\n";
        check_scope(text).unwrap();
    }

    #[test]
    fn foreign_tables_and_flush_ruleset_are_refused() {
        let err = check_scope("table inet filter {\n}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1: table \"filter\" is not netloom's"),
            "{err}"
        );
        let err = check_scope("table ip netloom-a { }\nflush table inet nat")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: table \"nat\""), "{err}");
        let err = check_scope("add rule ip filter input drop")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"filter\""), "{err}");
        let err = check_scope("flush ruleset").unwrap_err().to_string();
        assert!(
            err.contains("`flush ruleset` would touch every table"),
            "{err}"
        );
    }
}
