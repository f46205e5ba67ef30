//! A directory of a test's own, removed when dropped (for servers' certificates and state).

use std::path::PathBuf;

/// A fresh directory under the system's temporary one, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// `switchboard-NAME-RANDOM`, created.
    pub(crate) fn new(name: &str) -> Self {
        let mut bytes = [0; 8];
        getrandom::fill(&mut bytes).unwrap();
        let suffix = u64::from_le_bytes(bytes);
        let dir = std::env::temp_dir().join(format!("switchboard-{name}-{suffix:x}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
