//! What pytrace knows about CPython versions: structure layouts, the 3.13+ debug offsets,
//! and line-number tables. Per-version knowledge lives here as data.
pub mod debug_offsets;
pub mod gil;
pub mod layout;
pub mod linetable;
