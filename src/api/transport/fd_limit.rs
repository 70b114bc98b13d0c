//! File descriptors: connections may use all but a reserve, so that the process can still open
//! what it needs (and accept() never fails for want of descriptors, which would stall every
//! client, `/health` included).

/// Descriptors kept for everything but client connections: the listener, model and tokenizer
/// files, logs, the runtime's own.
const RESERVED_FDS: u64 = 128;

/// The soft RLIMIT_NOFILE, after raising it to the hard limit (many systems start processes at
/// 1024 with a far higher hard limit).
pub fn raise_and_read() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap: `requested`, lowered to leave [`RESERVED_FDS`] descriptors (or half of
/// a very small limit) for the rest of the process.
pub fn connection_cap(requested: usize, nofile: Option<u64>) -> usize {
    let Some(limit) = nofile else {
        return requested.max(1);
    };
    let room = if limit > 2 * RESERVED_FDS {
        limit - RESERVED_FDS
    } else {
        limit / 2
    };
    requested
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_descriptors_for_the_process() {
        assert_eq!(connection_cap(4096, Some(1024)), 1024 - 128);
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(4096, Some(200)), 100);
        assert_eq!(connection_cap(4096, None), 4096);
        assert_eq!(connection_cap(4096, Some(1)), 1);
    }
}
