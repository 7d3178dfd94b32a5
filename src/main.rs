use clap::Parser;

/// glibc's `malloc` hands allocations above its mmap threshold (128 KiB at
/// first, raised as such blocks are freed) to `mmap`, and gives free memory
/// at the top of a heap above its trim threshold (twice the mmap threshold)
/// back to the kernel. The engine's chunk buffers (about 0.2 MiB of input
/// and 0.6 MiB of output per 1,000 records) are made and dropped on the
/// reader, worker and writer threads, each with its own heap, so with the
/// defaults the heaps kept shrinking and growing: on the 1M-row benchmark
/// file, 51,000 minor page faults and 0.5–0.6 s of system time, against
/// 6,500 and 0.15–0.23 s with fixed thresholds (peak RSS 31–33 MB against
/// 35–36 MB; measured with a 64 MiB trim threshold, which 8 MiB matched).
/// The trim threshold is kept low because it holds per heap, and glibc
/// gives each busy thread its own.
/// When `GLIBC_TUNABLES` sets either threshold, the operator's settings
/// stand and neither is changed. On 32-bit glibc (mmap threshold at most
/// 512 KiB) the defaults stay.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn keep_freed_memory() {
    if std::env::var_os("GLIBC_TUNABLES").is_some_and(|t| sets_malloc_thresholds(&t.to_string_lossy())) {
        return;
    }
    /// Allocations up to this size come from the heap (glibc's ceiling
    /// for its own dynamic threshold), bytes.
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    /// Free memory kept at the top of a heap, bytes.
    const TRIM_THRESHOLD: libc::c_int = 8 << 20;
    // SAFETY: mallopt only changes malloc's parameters; it is called first
    // thing in main, before any other thread exists. The trim threshold is
    // set only when the mmap threshold was accepted (setting either fixes
    // both), so a refusal leaves glibc's defaults.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
fn keep_freed_memory() {}

/// Whether a `GLIBC_TUNABLES` value (colon-separated `name=value` pairs,
/// glibc manual "Tunables") sets malloc's mmap or trim threshold.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")), allow(dead_code))]
fn sets_malloc_thresholds(tunables: &str) -> bool {
    tunables
        .split(':')
        .filter_map(|pair| pair.split_once('='))
        .any(|(name, _)| matches!(name.trim(), "glibc.malloc.mmap_threshold" | "glibc.malloc.trim_threshold"))
}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    let cli = piigate::cli::Cli::parse();
    let status = piigate::commands::run(cli);
    std::process::ExitCode::from(status as u8)
}

#[cfg(test)]
mod tests {
    use super::sets_malloc_thresholds;

    #[test]
    fn glibc_tunables_that_set_a_threshold_are_recognized() {
        assert!(sets_malloc_thresholds("glibc.malloc.trim_threshold=67108864"));
        assert!(sets_malloc_thresholds("glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4194304"));
        assert!(!sets_malloc_thresholds("glibc.malloc.hugetlb=1"));
        assert!(!sets_malloc_thresholds("glibc.malloc.mmap_threshold"));
        assert!(!sets_malloc_thresholds(""));
    }
}
