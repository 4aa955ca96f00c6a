//! sotto-core
