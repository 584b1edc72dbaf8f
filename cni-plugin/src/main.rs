//! `ciao`: the CNI plugin of ciao networking (spec 1.1.0; 0.3.x, 0.4.0 and 1.0.0 configs too).
//!
//! Runtimes run it with CNI_* variables and the network configuration on stdin; it prints a
//! result or a CNI error JSON on stdout and exits non-zero on error.

mod auto;
mod commands;
mod conf;
mod error;
mod result;
mod version;

use std::io::{Read, Write};

use error::{CniError, Code};

/// The largest network configuration read from stdin. Real ones are a few KiB; a larger one
/// is refused before it is held in memory.
const MAX_STDIN: u64 = 1024 * 1024;

/// Reads stdin up to [`MAX_STDIN`] bytes (and one more, to notice a larger one).
fn read_stdin() -> Result<Vec<u8>, CniError> {
    let mut stdin = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut stdin)
        .map_err(|e| CniError::new(Code::Io, format!("read stdin: {e}")))?;
    if stdin.len() as u64 > MAX_STDIN {
        return Err(CniError::new(
            Code::Decode,
            format!(
                "network configuration on stdin is larger than {MAX_STDIN} bytes (1 MiB); \
                 refusing to read it"
            ),
        ));
    }
    Ok(stdin)
}

fn main() {
    let env = conf::Env::from_process();
    let outcome = read_stdin().and_then(|stdin| commands::run(&env, &stdin));
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(Some(value)) => {
            let _ = writeln!(stdout, "{value}");
        }
        Ok(None) => {}
        Err(err) => {
            let text = serde_json::to_string(&err).unwrap_or_else(|_| {
                format!("{{\"code\":{},\"msg\":\"unprintable error\"}}", err.code)
            });
            let _ = writeln!(stdout, "{text}");
            let _ = stdout.flush();
            std::process::exit(1);
        }
    }
}
