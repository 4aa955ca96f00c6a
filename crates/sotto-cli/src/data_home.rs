//! Where sotto keeps its named profiles and the unlock agent's socket.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// sotto's data directory: `$XDG_DATA_HOME/sotto` or the platform's
/// equivalent. Named profiles are folders in it.
pub fn data_dir() -> Result<PathBuf> {
    let dirs =
        directories::ProjectDirs::from("", "", "sotto").context("cannot find a home directory; pass --profile DIR")?;
    Ok(dirs.data_dir().to_owned())
}
