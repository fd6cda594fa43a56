//! In-memory counter store (to be written).
