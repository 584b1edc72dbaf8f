//! Typed SSNTP payloads (YAML), in progress.
