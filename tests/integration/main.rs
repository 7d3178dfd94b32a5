//! Integration tests: the real `piigate` binary on real files.

mod access;
mod process;
mod vectors;
mod workdir;
