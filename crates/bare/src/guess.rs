//! Which state directory's service to ask: a first guess, made without
//! a JSON parser or the command-line grammar. The service reads the
//! request properly and refuses it when the guess was wrong.

use crate::bytes::Bytes;
use crate::entry::Start;

/// The default state directory (`netloom_engine::DEFAULT_STATE_DIR`).
const DEFAULT_STATE_DIR: &[u8] = b"/var/lib/netloom";

/// The state directory a CNI config names (`stateDir`, one value where
/// it appears), else `NETLOOM_STATE_DIR`, else the default. The service
/// reads the config properly and refuses when this guess is wrong.
pub(crate) fn cni_state_dir(conf: Bytes, env: Option<Bytes>) -> Option<Bytes> {
    let key = Bytes::of(b"\"stateDir\"");
    let mut found: Option<Bytes> = None;
    let mut at = 0;
    while let Some(k) = conf.find(key, at) {
        at = k + key.len;
        let mut i = skip_space(conf, at);
        if i >= conf.len || conf.at(i) != b':' {
            continue;
        }
        i = skip_space(conf, i + 1);
        if i >= conf.len || conf.at(i) != b'"' {
            continue;
        }
        let value = conf.from(i + 1);
        let mut n = 0;
        while n < value.len && value.at(n) != b'"' {
            if value.at(n) == b'\\' {
                return None;
            }
            n += 1;
        }
        if n == value.len {
            return None;
        }
        let value = value.take(n);
        match found {
            Some(f) if !f.is(value) => return None,
            _ => found = Some(value),
        }
    }
    found
        .or(env.filter(|e| e.len > 0))
        .or(Some(Bytes::of(DEFAULT_STATE_DIR)))
}

pub(crate) fn skip_space(b: Bytes, mut i: usize) -> usize {
    while i < b.len && matches!(b.at(i), b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// For a command line with `connect` or `disconnect` in it: the state
/// directory its first `--state-dir` names, else `NETLOOM_STATE_DIR`,
/// else the default. The service reads the line properly and refuses
/// what it would not serve.
pub(crate) fn cli_state_dir(start: &Start, env: Option<Bytes>) -> Option<Bytes> {
    let option = Bytes::of(b"--state-dir");
    let inline = Bytes::of(b"--state-dir=");
    let mut command = false;
    let mut given = None;
    let mut i = 1;
    while i < start.argc {
        let a = start.arg(i);
        if a.is(Bytes::of(b"connect")) || a.is(Bytes::of(b"disconnect")) {
            command = true;
        } else if given.is_none() && a.is(option) && i + 1 < start.argc {
            given = Some(start.arg(i + 1));
        } else if given.is_none() {
            given = a.value_of(inline);
        }
        i += 1;
    }
    if !command {
        return None;
    }
    match (given, env) {
        (Some(d), _) => Some(d),
        // An empty variable: the full parser's rules apply.
        (None, Some(e)) if e.len == 0 => None,
        (None, Some(e)) => Some(e),
        (None, None) => Some(Bytes::of(DEFAULT_STATE_DIR)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: Option<Bytes>) -> Option<String> {
        b.map(|b| String::from_utf8((0..b.len).map(|i| b.at(i)).collect()).unwrap())
    }

    fn cni(conf: &'static str, env: Option<&'static str>) -> Option<String> {
        text(cni_state_dir(
            Bytes::of(conf.as_bytes()),
            env.map(|e| Bytes::of(e.as_bytes())),
        ))
    }

    #[test]
    fn a_cni_config_names_its_state_directory_or_the_variable_or_default_does() {
        let one = r#"{"name":"web","stateDir" :  "/srv/nl","ipam":{}}"#;
        assert_eq!(cni(one, Some("/env")).as_deref(), Some("/srv/nl"));
        let agreeing = r#"{"stateDir":"/a","ipam":{"type":"netloom","stateDir":"/a"}}"#;
        assert_eq!(cni(agreeing, None).as_deref(), Some("/a"));
        // Two values, or one the scan cannot read plainly: no guess.
        let two = r#"{"stateDir":"/a","ipam":{"stateDir":"/b"}}"#;
        assert_eq!(cni(two, None), None);
        assert_eq!(cni(r#"{"stateDir":"/a\u0041"}"#, None), None);
        assert_eq!(cni(r#"{"stateDir":"/a"#, None), None);
        // Not a key with a string value: passed over.
        let other = r#"{"args":["stateDir"],"stateDir":7}"#;
        assert_eq!(cni(other, Some("/env")).as_deref(), Some("/env"));
        assert_eq!(cni("{}", Some("")).as_deref(), Some("/var/lib/netloom"));
        assert_eq!(cni("{}", None).as_deref(), Some("/var/lib/netloom"));
    }

    fn cli(args: &[&'static std::ffi::CStr], env: Option<&'static str>) -> Option<String> {
        let argv: Vec<*const u8> = args.iter().map(|a| a.as_ptr().cast()).collect();
        text(cli_state_dir(
            &Start::of_args(Vec::leak(argv)),
            env.map(|e| Bytes::of(e.as_bytes())),
        ))
    }

    #[test]
    fn a_command_line_names_its_state_directory_or_the_variable_or_default_does() {
        let split = [c"netloom", c"--state-dir", c"/s", c"connect", c"web"];
        assert_eq!(cli(&split, Some("/env")).as_deref(), Some("/s"));
        let joined = [c"netloom", c"disconnect", c"--state-dir=/t", c"web"];
        assert_eq!(cli(&joined, None).as_deref(), Some("/t"));
        let plain = [c"netloom", c"connect", c"web", c"a"];
        assert_eq!(cli(&plain, Some("/env")).as_deref(), Some("/env"));
        assert_eq!(cli(&plain, None).as_deref(), Some("/var/lib/netloom"));
        assert_eq!(cli(&plain, Some("")), None);
        assert_eq!(cli(&[c"netloom", c"network", c"ls"], None), None);
    }
}
