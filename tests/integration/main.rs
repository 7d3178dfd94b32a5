//! Integration tests: the real `piigate` binary on real files.

mod access;
mod audit;
mod clevertap;
mod deterministic;
mod job;
mod keys;
mod parts;
mod persons;
mod pgp;
mod process;
mod sftp;
mod sshd;
mod vectors;
mod workdir;
