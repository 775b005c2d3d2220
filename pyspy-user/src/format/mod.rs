//! Output formats. Every format reads symbolized [`crate::model::Dump`]s.
pub mod faulthandler;
