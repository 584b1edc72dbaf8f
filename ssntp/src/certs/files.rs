//! Writing certificate files: a file holding a private key is its owner's alone (0600) from the
//! moment it exists, whatever the umask, and never seen half-written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Who may read a certificate file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// A certificate only (the CA file): 0644.
    Public,
    /// Holds a private key: 0600.
    PrivateKey,
}

impl Secrecy {
    /// The file mode.
    pub fn mode(self) -> u32 {
        match self {
            Secrecy::Public => 0o644,
            Secrecy::PrivateKey => 0o600,
        }
    }
}

/// Writes `text` to `dir/name` (creating `dir`) atomically and durably: a temporary file in
/// `dir`, created 0600 and then set to the final mode explicitly (so no umask matters), written,
/// synced, renamed over the target, and the directory synced. Returns the path written.
pub fn write_pem(dir: &Path, name: &str, text: &str, secrecy: Secrecy) -> io::Result<PathBuf> {
    let context =
        |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    fs::create_dir_all(dir).map_err(context(format!("create {}", dir.display())))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(secrecy.mode()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        context(format!("write {}", path.display()))(e)
    })?;
    Ok(path)
}
