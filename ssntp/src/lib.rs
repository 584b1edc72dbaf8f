//! SSNTP, the control protocol of the Ciao cloud, wire compatible with the Go original.
//!
//! On the wire SSNTP is Go `encoding/gob` over mutual TLS, one gob stream per direction
//! (reference/ssntp.md §2), not the 8-byte header ciao's README describes.

pub mod certs;
pub mod client;
pub mod conn;
pub mod frame;
pub mod gob;
mod listener;
pub mod payloads;
pub mod ratelog;
pub mod server;
pub mod tls;
