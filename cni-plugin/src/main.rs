//! `ciao`: the CNI plugin of ciao networking (spec 1.1.0; 0.3.x, 0.4.0 and 1.0.0 configs too).
//!
//! Runtimes run it with CNI_* variables and the network configuration on stdin; it prints a
//! result or a CNI error JSON on stdout and exits non-zero on error.

mod commands;
mod conf;
mod error;
mod result;
mod version;

use std::io::{Read, Write};

use error::{CniError, Code};

fn main() {
    let env = conf::Env::from_process();
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => commands::run(&env, &stdin),
        Err(e) => Err(CniError::new(Code::Io, format!("read stdin: {e}"))),
    };
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
