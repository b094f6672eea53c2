//! Requests from the bare entry (crates/bare): a served command's raw
//! arguments, environment and stdin, sent before the command's C library
//! and runtime started.
//!
//! The service reads them with the program's own code (`quick::read`,
//! [`crate::cni::to_service`], [`super::client::gate`]) and serves exactly
//! what the program would have handed it. Anything else is refused, and
//! the command then starts as usual.
//!
//! The request, after the 4 magic bytes (all numbers little-endian):
//! the body's length (u32); the build ID's length (u8) and bytes; the
//! network namespace cookie (u64); the root mount's id (u64); the state
//! directory the command asks at; the arguments after the program name
//! (a count, u32, then each); the `CNI_*` and `NETLOOM_*` environment
//! entries, `NAME=VALUE` (likewise); stdin. Each string is a u32 length
//! and its bytes. The reply: the magic, a kind byte (served or refused),
//! the exit code (u8), the lengths of stdout and stderr (u32 each), then
//! stdout and stderr.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

use netloom_bare::{MAGIC, REPLY_DONE, REPLY_REFUSED};

use super::client::{gate, Gate, Mode};
use super::identity::{Exe, Mounts, Netns};
use super::{Identity, Job, Reply, MODE_ENV};

/// A bare request, read.
pub struct Request {
    pub identity: Identity,
    /// The state directory whose socket the command connected to.
    state_dir: Vec<u8>,
    args: Vec<Vec<u8>>,
    /// Environment entries whose name and value are UTF-8 (as
    /// `std::env::var` reads them).
    env: BTreeMap<String, String>,
    /// Whether `CNI_COMMAND` is set at all (the program is then a plugin).
    cni: bool,
    stdin: Vec<u8>,
}

/// Reads the rest of a bare request, its magic bytes already read.
pub fn read(r: &mut impl Read) -> io::Result<Request> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let body = super::read_body(len, r)?;
    parse(&body).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a bare request that does not parse",
        )
    })
}

/// Reads through a request's body.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn parse(body: &[u8]) -> Option<Request> {
    let mut c = Cursor(body);
    let id_len = c.take(1)?[0] as usize;
    let id = c.take(id_len)?;
    let cookie = c.u64()?;
    let mount = c.u64()?;
    let state_dir = c.string()?.to_vec();
    let mut args = Vec::new();
    for _ in 0..c.u32()? {
        args.push(c.string()?.to_vec());
    }
    let mut env = BTreeMap::new();
    let mut cni = false;
    for _ in 0..c.u32()? {
        let entry = c.string()?;
        // An entry without `=` (execve allows one) is no variable.
        let Some(at) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&entry[..at], &entry[at + 1..]);
        cni |= name == b"CNI_COMMAND";
        if let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
            // The first entry of a name counts, as for `getenv`.
            env.entry(name.to_string())
                .or_insert_with(|| value.to_string());
        }
    }
    let stdin = c.string()?.to_vec();
    if !c.0.is_empty() {
        return None;
    }
    Some(Request {
        identity: Identity {
            exe: Exe::BuildId(id.iter().map(|b| format!("{b:02x}")).collect()),
            netns: Netns::Cookie(cookie),
            mounts: Mounts::Root(mount),
        },
        state_dir,
        args,
        env,
        cni,
        stdin,
    })
}

/// The job a bare request asks for, or why the service does not take it
/// from the bare entry.
pub fn job(req: &Request) -> Result<Job, String> {
    let other_dir = |dir: &std::path::Path| {
        format!(
            "the command asked at the socket of {}, but its state directory is {}",
            String::from_utf8_lossy(&req.state_dir),
            dir.display()
        )
    };
    if req.cni {
        let (_, to) = crate::cni::to_service(&req.env, &req.stdin);
        return match to {
            crate::cni::ToService::Ask { job, state_dir, .. } => {
                if state_dir.as_os_str().as_bytes() == req.state_dir.as_slice() {
                    Ok(job)
                } else {
                    Err(other_dir(&state_dir))
                }
            }
            crate::cni::ToService::Cannot { why, .. } => Err(why),
            crate::cni::ToService::No => Err("not a plugin call the service takes".into()),
        };
    }
    let args = req
        .args
        .iter()
        .map(|a| String::from_utf8(a.clone()).ok())
        .collect::<Option<Vec<String>>>()
        .ok_or("the arguments are not all UTF-8")?;
    let mode = Mode::parse(req.env.get(MODE_ENV).map(String::as_str))?;
    let env_state_dir = req.env.get("NETLOOM_STATE_DIR").map(String::as_str);
    let line = super::quick::read(&args, env_state_dir)
        .ok_or("a command line for the full parser, not one the service takes as it is")?;
    if line.state_dir.as_os_str().as_bytes() != req.state_dir.as_slice() {
        return Err(other_dir(&line.state_dir));
    }
    match gate(mode, 0, req.env.contains_key("NETLOOM_LOG"), &line.job) {
        Gate::Ask => Ok(line.job),
        Gate::No => Err("not in this mode".into()),
        Gate::Cannot(why) => Err(why),
    }
}

/// Writes the reply to a bare request.
pub fn write_reply(w: &mut impl Write, reply: &Reply) -> io::Result<()> {
    let mut frame = MAGIC.to_vec();
    match reply {
        Reply::Done(output) => {
            frame.push(REPLY_DONE);
            frame.push(output.code);
            frame.extend_from_slice(&(output.stdout.len() as u32).to_le_bytes());
            frame.extend_from_slice(&(output.stderr.len() as u32).to_le_bytes());
            frame.extend_from_slice(output.stdout.as_bytes());
            frame.extend_from_slice(output.stderr.as_bytes());
        }
        Reply::Refused(_) => {
            frame.push(REPLY_REFUSED);
            frame.extend_from_slice(&[0; 9]);
        }
    }
    w.write_all(&frame)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request body as the bare entry writes it.
    fn body(state_dir: &str, args: &[&str], env: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut b = vec![3, 0xab, 0xcd, 0xef];
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&9u64.to_le_bytes());
        let string = |b: &mut Vec<u8>, s: &[u8]| {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s);
        };
        string(&mut b, state_dir.as_bytes());
        b.extend_from_slice(&(args.len() as u32).to_le_bytes());
        for a in args {
            string(&mut b, a.as_bytes());
        }
        b.extend_from_slice(&(env.len() as u32).to_le_bytes());
        for e in env {
            string(&mut b, e.as_bytes());
        }
        string(&mut b, stdin);
        b
    }

    #[test]
    fn a_request_parses_whole_or_not_at_all() {
        let b = body(
            "/run/st",
            &["connect", "web", "a"],
            &[
                "NETLOOM_SERVICE=require",
                "CNI_ARGS=a=b=c",
                "CNI_ODD",
                "CNI_ARGS=later",
            ],
            b"",
        );
        let req = parse(&b).unwrap();
        assert_eq!(req.identity.exe, Exe::BuildId("abcdef".into()));
        assert_eq!(req.identity.netns, Netns::Cookie(7));
        assert_eq!(req.identity.mounts, Mounts::Root(9));
        assert_eq!(req.args.len(), 3);
        assert_eq!(req.env["CNI_ARGS"], "a=b=c");
        assert_eq!(req.env.len(), 2, "{:?}", req.env);
        assert!(!req.cni);
        // Cut anywhere, or with bytes left over: refused.
        for n in 0..b.len() {
            assert!(parse(&b[..n]).is_none(), "cut at {n}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(parse(&longer).is_none());
    }

    fn job_of(state_dir: &str, args: &[&str], env: &[&str]) -> Result<Job, String> {
        job(&parse(&body(state_dir, args, env, b"")).unwrap())
    }

    #[test]
    fn the_service_takes_what_the_command_would_have_handed_it() {
        let env = ["NETLOOM_STATE_DIR=/run/st"];
        let ok = job_of("/run/st", &["connect", "web", "a", "-p", "80:80"], &env);
        assert!(matches!(ok, Ok(Job::Connect { .. })), "{ok:?}");
        let ok = job_of("/run/st", &["--json", "disconnect", "web", "a"], &env);
        assert!(
            matches!(ok, Ok(Job::Disconnect { json: true, .. })),
            "{ok:?}"
        );
        // Asked at another state directory's socket than the line names.
        let e = job_of("/run/other", &["connect", "web", "a"], &env).unwrap_err();
        assert!(e.contains("/run/other") && e.contains("/run/st"), "{e}");
        // What the full parser reads, or what the command does itself.
        assert!(job_of("/run/st", &["-v", "connect", "web", "a"], &env).is_err());
        assert!(job_of("/run/st", &["exec", "a", "--", "connect"], &env).is_err());
        let logging = ["NETLOOM_STATE_DIR=/run/st", "NETLOOM_LOG=debug"];
        assert!(job_of("/run/st", &["connect", "web", "a"], &logging).is_err());
        let required = [
            "NETLOOM_STATE_DIR=/run/st",
            "NETLOOM_LOG=debug",
            "NETLOOM_SERVICE=require",
        ];
        assert!(job_of("/run/st", &["connect", "web", "a"], &required).is_ok());
        let e = job_of("/run/st", &["connect", "web", "ns/a"], &env).unwrap_err();
        assert!(e.contains("relative"), "{e}");
    }
}
