//! The controller's SSNTP UUID, chosen once and kept in its state directory: the scheduler
//! ranks controllers by connection order per UUID, and logs name it.

use std::io::Write;
use std::path::Path;

use uuid::Uuid;

/// The file holding the UUID inside the state directory.
pub const UUID_FILE: &str = "controller.uuid";

/// Why the UUID could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} does not hold a UUID ({text:?}); remove it to choose a new one")]
    Corrupt { path: String, text: String },
}

/// The UUID in `state_dir`, or a new one written there first (atomically: temporary file,
/// fsync, rename), so a crash never leaves a half-written identity.
pub fn load_or_create(state_dir: &Path) -> Result<Uuid, IdentityError> {
    let path = state_dir.join(UUID_FILE);
    let shown = path.display().to_string();
    let io = |source| IdentityError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return Uuid::parse_str(text.trim()).map_err(|_| IdentityError::Corrupt {
                path: shown.clone(),
                text,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let uuid = Uuid::new_v4();
    let tmp = state_dir.join(format!("{UUID_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    writeln!(file, "{uuid}").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(state_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io)?;
    Ok(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uuid_is_kept_and_a_corrupt_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path()).expect("created");
        assert_eq!(load_or_create(dir.path()).expect("read"), first);
        std::fs::write(dir.path().join(UUID_FILE), "not a uuid").expect("write");
        let err = load_or_create(dir.path()).expect_err("refused");
        assert!(err.to_string().contains("does not hold a UUID"), "{err}");
    }
}
