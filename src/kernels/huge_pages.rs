//! Large buffers the CPU streams every step — packed weights, the KV pool — asked to be backed
//! by 2 MiB pages where the kernel has transparent huge pages in `madvise` mode (the common
//! default). With 4 KiB pages a decode step that streams the weights crosses a page every 4 KiB:
//! a TLB miss each time, and the hardware prefetchers, which stop at page boundaries, start over.
//! A hint only: without THP, or off Linux, nothing changes.

/// 2 MiB: the huge-page size on x86-64.
const HUGE_PAGE: usize = 2 << 20;

/// Asks for huge pages under the 2 MiB-aligned part of `buffer`. Call it before the buffer is
/// first written: pages already faulted in stay small until the kernel collapses them.
fn advise<T>(buffer: &[T]) {
    #[cfg(target_os = "linux")]
    {
        let start = buffer.as_ptr() as usize;
        let end = start + std::mem::size_of_val(buffer);
        let (first, last) = (
            start.next_multiple_of(HUGE_PAGE),
            end / HUGE_PAGE * HUGE_PAGE,
        );
        if first < last {
            // SAFETY: the range lies inside a live allocation; MADV_HUGEPAGE changes how it is
            // backed, never its contents.
            let rc = unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                )
            };
            if rc != 0 {
                tracing::debug!(
                    "madvise(MADV_HUGEPAGE) refused: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

/// `n` copies of `value`, the buffer asked for huge pages before the copies are written (so
/// each is written into its final page).
pub fn filled<T: Clone>(n: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    advise(v.spare_capacity_mut());
    v.resize(n, value);
    v
}
