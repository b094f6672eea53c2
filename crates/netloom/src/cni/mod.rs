//! CNI plugin mode: entered when `CNI_COMMAND` is set.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    println!(
        "{}",
        serde_json::json!({"cniVersion": "1.1.0", "code": 4, "msg": "CNI mode is not built yet"})
    );
    ExitCode::FAILURE
}
