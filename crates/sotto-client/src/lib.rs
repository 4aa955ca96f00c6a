//! sotto-client
