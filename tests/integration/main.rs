//! Integration tests: the real `piigate` binary on real files.

mod access;
mod audit;
mod clevertap;
mod job;
mod parts;
mod pgp;
mod process;
mod sftp;
mod sshd;
mod vectors;
mod workdir;
