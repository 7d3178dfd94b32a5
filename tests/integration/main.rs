//! Integration tests: the real `piigate` binary on real files.

mod workdir;
