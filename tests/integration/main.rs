//! Integration tests: the real `piigate` binary on real files.

mod access;
mod audit;
mod deterministic;
mod job;
mod keys;
mod process;
mod sftp;
mod sshd;
mod vectors;
mod workdir;
