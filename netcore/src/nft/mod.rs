//! nf_tables over netlink, written by hand: tables, chains, sets, elements and rules in atomic
//! batches, and dumps to read them back.
//!
//! Why by hand: `rustables` is GPL-3.0 (this project is Apache-2.0), `nftnl` links the C
//! libnftnl (a user-space dependency the design avoids) and the `nftables` crate runs the `nft`
//! binary, several milliseconds a call, too slow for a port attach. The few messages needed
//! are small: [`attr`] writes and reads netlink attributes, [`expr`] encodes rule expressions,
//! [`objects`] the objects, [`batch`] sends transactions over a `netlink-sys` socket and maps
//! errors back to their message, [`dump`] reads objects back. The encodings are checked byte
//! for byte against what `nft --debug=mnl` sends for the same objects.
//!
//! A [`Socket`] stays bound to the network namespace it was opened in; open it inside another
//! one with [`crate::netns::run_in`].

pub mod attr;
pub mod batch;
pub mod dump;
pub mod expr;
pub mod objects;

pub use batch::Socket;

/// `NFPROTO_*`: the table families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet = 1,
    Ipv4 = 2,
    Arp = 3,
    Netdev = 5,
    Bridge = 7,
    Ipv6 = 10,
}

impl Family {
    /// The family as `nft` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ipv4 => "ip",
            Family::Arp => "arp",
            Family::Netdev => "netdev",
            Family::Bridge => "bridge",
            Family::Ipv6 => "ip6",
        }
    }
}

#[cfg(test)]
mod tests;

/// `nft ARGS` in the calling thread's namespace (a child inherits it), which must succeed; its
/// standard output. For tests that compare what netlink loaded with what `nft` lists.
#[cfg(test)]
pub(crate) fn cli(args: &[&str]) -> String {
    let out = std::process::Command::new("nft")
        .args(args)
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
