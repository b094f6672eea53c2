//! `netloom lab serve --port N`: answers every TCP connection with the
//! node's name and lab (`NODE.LAB`) and a newline, then closes it. The demo's nodes run it.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

use netloom_engine::model::ModelError;
use netloom_engine::EngineError;

pub fn serve(port: u16) -> Result<ExitCode, EngineError> {
    let name = std::env::var("NETLOOM_NODE")
        .ok()
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
        .unwrap_or_else(|| "?".into());
    // Dual-stack where IPv6 is on, IPv4 only otherwise.
    let listener = TcpListener::bind(("::", port))
        .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
        .map_err(|e| ModelError::Invalid {
            object: format!("lab serve on port {port}"),
            why: format!("cannot listen ({e})"),
            fix: "choose a free port".into(),
        })?;
    let answer = match std::env::var("NETLOOM_LAB") {
        Ok(lab) => format!("{name}.{lab}\n"),
        Err(_) => format!("{name}\n"),
    };
    for conn in listener.incoming() {
        match conn {
            Ok(mut conn) => {
                let _ = conn.write_all(answer.as_bytes());
            }
            // A failed accept (a peer that gave up) ends nothing.
            Err(_) => continue,
        }
    }
    Ok(ExitCode::SUCCESS)
}
