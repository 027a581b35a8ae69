//! Standard output for commands: a reader that goes away (`metaloop ledger show --json |
//! head -c 100`) ends the command quietly with status 0, as it does for `cat` or `ls`,
//! instead of a panic.

use std::io::Write;

/// Writes `args` (and a newline when `newline`) to standard output. A closed pipe exits the
/// process with status 0; any other write error exits with status 1 and says why.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let r = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = r {
        exit_on_write_error(&e);
    }
}

/// Flushes standard output with the same rules as [`write`].
pub fn flush() {
    if let Err(e) = std::io::stdout().lock().flush() {
        exit_on_write_error(&e);
    }
}

/// Ends the process after a failed write to standard output: quietly for a closed pipe.
pub fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to standard output: {e}");
    std::process::exit(1);
}

/// `println!` for command output (see [`write`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::cli::output::write(format_args!(""), true) };
    ($($t:tt)*) => { $crate::cli::output::write(format_args!($($t)*), true) };
}

/// `print!` for command output (see [`write`]).
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::output::write(format_args!($($t)*), false) };
}
