//! CNI spec versions this plugin speaks.

/// Newest spec version, used for replies when the request names none.
pub const LATEST: &str = "1.1.0";

/// Every version accepted in a configuration; results are formatted per version.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A parsed spec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u8, pub u8, pub u8);

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        if !SUPPORTED.contains(&text) {
            return None;
        }
        let mut parts = text.split('.').map(|p| p.parse::<u8>().ok());
        Some(Version(parts.next()??, parts.next()??, parts.next()??))
    }

    /// CHECK exists from 0.4.0 on.
    pub fn has_check(self) -> bool {
        self >= Version(0, 4, 0)
    }

    /// STATUS and GC exist from 1.1.0 on.
    pub fn has_status_and_gc(self) -> bool {
        self >= Version(1, 1, 0)
    }

    /// Results before 1.0.0 carry `"version": "4"` in each IP entry.
    pub fn ip_has_version_field(self) -> bool {
        self < Version(1, 0, 0)
    }

    /// Interface MTU in results exists from 1.1.0 on.
    pub fn interface_has_mtu(self) -> bool {
        self >= Version(1, 1, 0)
    }
}
