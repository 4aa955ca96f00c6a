//! The server's data folder: private to the server's user, and held by one
//! server process at a time.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What can go wrong with the data folder.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another server process holds the folder.
    #[error("another sotto-server is running on {}{}; stop it first, or give this one its own --data folder",
        .dir.display(), .pid.as_ref().map(|p| format!(" (process {p})")).unwrap_or_default())]
    Busy {
        /// The folder.
        dir: PathBuf,
        /// The running server's process id, when it wrote one.
        pid: Option<String>,
    },
    /// The file system refused.
    #[error("{}: {source}", .path.display())]
    Io {
        /// What was being touched.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io { path: path.to_owned(), source }
}

/// Makes a path readable by its owner only: the data folder holds the TLS
/// key and who talks to whom.
pub fn private(path: &Path, mode: u32) -> Result<(), DataDirError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
    }
    let _ = mode;
    Ok(())
}

/// Holds the data folder for this process: a second server on the same
/// folder would share the database and take over (then delete) the first
/// one's operator socket. The lock goes with the process, also on a crash.
pub fn lock(data: &Path) -> Result<std::fs::File, DataDirError> {
    std::fs::create_dir_all(data).map_err(io(data))?;
    let path = data.join("server.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).ok().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
            return Err(DataDirError::Busy { dir: data.to_owned(), pid });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    file.set_len(0).map_err(io(&path))?;
    write!(file, "{}", std::process::id()).map_err(io(&path))?;
    Ok(file)
}
