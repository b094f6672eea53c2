//! The bare entry (crates/bare) runs before the C library is set up, so
//! its code may not call anything outside itself: in a static release
//! binary the C library's string functions are not yet resolved, and
//! neither thread-local storage nor the panic machinery works. This reads
//! the `netloom` binary's machine code and fails on any call or jump out of
//! the entry's functions but the one to the C library's `_start`.
//!
//! The crate is built optimised in every profile (the workspace's
//! Cargo.toml), so the code checked here is the code a release runs.
//! `NETLOOM_BARE_CHECK=PATH` checks another binary instead, such as the
//! one `scripts/build-release.sh` makes.

use std::collections::BTreeSet;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_netloom");

/// The function a disassembly line `... <name+0x12>` names.
fn target(line: &str) -> Option<&str> {
    let start = line.rfind('<')? + 1;
    let end = start + line[start..].find('>')?;
    let name = &line[start..end];
    Some(name.split_once('+').map_or(name, |(n, _)| n))
}

fn is_entry_code(name: &str) -> bool {
    name == "netloom_bare_start" || name.starts_with("netloom_bare::")
}

#[test]
fn the_bare_entry_calls_nothing_outside_itself() {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        eprintln!("SKIP: the bare entry exists on x86-64 Linux only");
        return;
    }
    let bin = std::env::var("NETLOOM_BARE_CHECK").unwrap_or_else(|_| BIN.to_string());
    let out = match Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", "-C", &bin])
        .output()
    {
        Ok(out) if out.status.success() => out,
        Ok(out) => panic!(
            "objdump failed on {bin}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!("SKIP: cannot run objdump ({e}); install binutils");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // Functions: "0000000000401000 <name>:" then instruction lines.
    let mut functions: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if line.ends_with(">:") && !line.starts_with(' ') {
            let name = target(line).unwrap_or_default().to_string();
            functions.push((name, Vec::new()));
        } else if let Some((_, body)) = functions.last_mut() {
            if line.starts_with(' ') {
                body.push(line);
            }
        }
    }
    let entry: BTreeSet<&str> = functions
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| is_entry_code(n))
        .collect();
    assert!(
        entry.contains("netloom_bare_start"),
        "{bin} has no netloom_bare_start"
    );
    assert!(
        entry.iter().any(|n| n.contains("bare_main")),
        "the entry's main function is not in {bin}: {entry:?}"
    );
    let mut wrong = Vec::new();
    for (name, body) in functions.iter().filter(|(n, _)| is_entry_code(n)) {
        for line in body {
            let Some(insn) = line.split('\t').nth(1) else {
                continue;
            };
            let mnemonic = insn.split_whitespace().next().unwrap_or_default();
            let branch = mnemonic.starts_with("call") || mnemonic.starts_with('j');
            if !branch {
                continue;
            }
            if insn.contains('*') {
                wrong.push(format!("{name}: an indirect branch: {insn}"));
                continue;
            }
            match target(insn) {
                Some(t) if is_entry_code(t) => {}
                Some("_start") if name == "netloom_bare_start" => {}
                _ => wrong.push(format!("{name}: {insn}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the bare entry branches out of itself (a C library call, a panic, \
         or code the compiler put elsewhere):\n{}",
        wrong.join("\n")
    );
}
