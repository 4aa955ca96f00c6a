//! sotto-server
