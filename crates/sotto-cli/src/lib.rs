//! sotto-cli
